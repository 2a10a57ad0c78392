"""wasmactors: an anyio actor framework in which every actor is a sandboxed
WebAssembly component.

The package is layered: :mod:`wasmactors.runtime` hosts components with
wasmtime, :mod:`wasmactors.messaging` carries typed payloads, and
:mod:`wasmactors.actors` runs them as supervised actors. The names most
programs need are re-exported here.
"""

from pathlib import Path as _Path

# In a checkout the subpackages are folders beside this one (pyproject.toml
# maps them); the install links them in. When the checkout's root itself is
# on sys.path (``python -m`` run from there), find them beside it as well.
_HERE = _Path(__file__).resolve().parent
if not (_HERE / "runtime").is_dir() and (_HERE.parent / "runtime" / "__init__.py").is_file():
    __path__.append(str(_HERE.parent))

from .actors import ActorRef, ActorSystem, Supervisor
from .messaging import Cluster, Codec, PayloadDecodeError
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
    "Cluster",
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
