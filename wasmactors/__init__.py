"""wasmactors: an anyio actor framework in which every actor is a sandboxed
WebAssembly component.

The package is layered: :mod:`wasmactors.runtime` hosts components with
wasmtime, :mod:`wasmactors.messaging` carries typed payloads, and
:mod:`wasmactors.actors` runs them as supervised actors. The names most
programs need are re-exported here.
"""

from .actors import ActorRef, ActorSystem, Supervisor
from .messaging import Codec, PayloadDecodeError
from .runtime import (
    AppError,
    CallResult,
    Component,
    ComponentError,
    Crash,
    CrashKind,
    Engine,
    HostContext,
    Instance,
    Limits,
    Manifest,
    MemoryStorage,
    MiB,
    SQLiteStorage,
    Success,
    WasmActorsError,
)

__all__ = [
    "ActorRef",
    "ActorSystem",
    "AppError",
    "CallResult",
    "Codec",
    "Component",
    "ComponentError",
    "Crash",
    "CrashKind",
    "Engine",
    "HostContext",
    "Instance",
    "Limits",
    "Manifest",
    "MemoryStorage",
    "MiB",
    "PayloadDecodeError",
    "SQLiteStorage",
    "Success",
    "Supervisor",
    "WasmActorsError",
]
