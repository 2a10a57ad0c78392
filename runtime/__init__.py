"""The wasmtime host: components, instances, limits, host functions, storage.

This layer knows WebAssembly and nothing about actors (it uses
:mod:`wasmactors.messaging`'s types for what a handler sends and why a
request failed)::

    with Engine() as engine:
        component = engine.load("examples/echo/build/echo.wasm")
        limits = Limits(memory=64 * MiB, fuel=50_000_000, timeout=1.0)
        with Instance(component, limits) as instance:
            result = instance.handle_message(b"hi", request=True)
"""

from ._component import Component, ComponentInfo
from ._engine import Engine, default_cache_dir
from ._errors import (
    CompileError,
    ComponentError,
    CoreModuleError,
    ImportMismatchError,
    InstanceBrokenError,
    InstanceBusyError,
    InstanceClosedError,
    InstantiationError,
    InvalidMessageError,
    ManifestError,
    MissingImportsError,
    NotWasmError,
    PayloadTooLargeError,
    StorageError,
    WasmActorsError,
    WorldMismatchError,
)
from ._host import HostCall, HostContext, Journal
from ._instance import Batch, Instance
from ._limits import GiB, GuestBuild, KiB, Limits, Manifest, MiB, encode_metadata, parse_size
from ._outcome import AppError, CallResult, Crash, CrashKind, Outcome, Success
from ._storage import (
    ROW_OVERHEAD,
    MemoryStorage,
    OutboxRow,
    SQLiteStorage,
    StorageBackend,
    Transaction,
    row_size,
)

__all__ = [
    "ROW_OVERHEAD",
    "AppError",
    "Batch",
    "CallResult",
    "CompileError",
    "Component",
    "ComponentError",
    "ComponentInfo",
    "CoreModuleError",
    "Crash",
    "CrashKind",
    "Engine",
    "GiB",
    "GuestBuild",
    "HostCall",
    "HostContext",
    "ImportMismatchError",
    "Instance",
    "InstanceBrokenError",
    "InstanceBusyError",
    "InstanceClosedError",
    "InstantiationError",
    "InvalidMessageError",
    "Journal",
    "KiB",
    "Limits",
    "Manifest",
    "ManifestError",
    "MemoryStorage",
    "MiB",
    "MissingImportsError",
    "NotWasmError",
    "OutboxRow",
    "Outcome",
    "PayloadTooLargeError",
    "SQLiteStorage",
    "StorageBackend",
    "StorageError",
    "Success",
    "Transaction",
    "WasmActorsError",
    "WorldMismatchError",
    "default_cache_dir",
    "encode_metadata",
    "parse_size",
    "row_size",
]
