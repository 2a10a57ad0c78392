"""The runtime layer's errors.

Every exception the runtime raises derives from :class:`WasmActorsError`::

    WasmActorsError
    ├── ComponentError            a component could not be loaded
    │   ├── NotWasmError          the bytes are not WebAssembly at all
    │   ├── CoreModuleError       a core module where a component was expected
    │   ├── CompileError          wasmtime rejected the component
    │   ├── WorldMismatchError    the exports do not fit the `actor` world
    │   ├── MissingImportsError   imports the host does not provide
    │   └── ImportMismatchError   imports a host function with another type
    ├── ManifestError             a malformed `component.toml` (also ValueError)
    ├── InstantiationError        a component could not be instantiated
    ├── InvalidMessageError       a message's sender or headers are unencodable or too large (also ValueError)
    │   └── PayloadTooLargeError  a payload over the limit
    ├── InstanceBrokenError       the instance crashed earlier (also anyio.BrokenResourceError)
    ├── InstanceBusyError         another thread is in a call (also anyio.BusyResourceError)
    ├── InstanceClosedError       the instance was closed (also anyio.ClosedResourceError)
    └── StorageError              a storage backend failed

Errors wrapping a wasmtime error keep it as ``__cause__``. A guest that traps
does not raise: calls return a :class:`~wasmactors.runtime.Crash` outcome,
because a crash is an expected event the actor layer supervises.
"""

from __future__ import annotations

import anyio

from .._errors import WasmActorsError

__all__ = [
    "CompileError",
    "ComponentError",
    "CoreModuleError",
    "ImportMismatchError",
    "InstanceBrokenError",
    "InstanceBusyError",
    "InstanceClosedError",
    "InstantiationError",
    "InvalidMessageError",
    "ManifestError",
    "MissingImportsError",
    "NotWasmError",
    "PayloadTooLargeError",
    "StorageError",
    "WasmActorsError",
    "WorldMismatchError",
]


class ComponentError(WasmActorsError):
    """A component could not be loaded; the message says why and what to do."""


class NotWasmError(ComponentError):
    """The input is neither a WebAssembly binary nor WAT text."""


class CoreModuleError(ComponentError):
    """The input is a core WebAssembly module, not a component."""


class CompileError(ComponentError):
    """wasmtime could not validate or compile the component."""


class WorldMismatchError(ComponentError):
    """The component's exports do not match the `actor` world."""


class MissingImportsError(ComponentError):
    """The component imports functions or interfaces the host does not provide."""

    def __init__(self, message: str, missing: list[str]) -> None:
        super().__init__(message)
        #: The import names the host cannot satisfy.
        self.missing = missing


class ImportMismatchError(ComponentError):
    """The component imports a function the host provides, but with another
    type. Such a component is refused at load: the host would read its
    arguments as values they are not."""

    def __init__(self, message: str, mismatched: list[str]) -> None:
        super().__init__(message)
        #: The mismatched imports, ``interface#function`` (or the interface
        #: alone when wasmtime reports it).
        self.mismatched = mismatched


class ManifestError(WasmActorsError, ValueError):
    """A component manifest is malformed: missing field, wrong type, unknown key."""


class InstantiationError(WasmActorsError):
    """A compiled component could not be instantiated (for example, its initial
    memory exceeds the memory limit)."""


class InvalidMessageError(WasmActorsError, ValueError):
    """A message handed to the host is malformed: its sender or a header is
    not valid Unicode (a lone surrogate), or its metadata is over the
    limits. Raised before anything is queued or called."""


class PayloadTooLargeError(InvalidMessageError):
    """A payload is larger than the instance's ``max_payload`` limit."""


class InstanceBrokenError(WasmActorsError, anyio.BrokenResourceError):
    """The instance crashed on an earlier call and cannot be entered again;
    build a new one from the same component."""


class InstanceBusyError(WasmActorsError, anyio.BusyResourceError):
    """Another thread is already calling this instance. A wasmtime Store is
    single-threaded; concurrent calls are refused instead of corrupting it."""

    def __init__(self) -> None:
        super().__init__("calling")


class InstanceClosedError(WasmActorsError, anyio.ClosedResourceError):
    """The instance was closed by its owner."""


class StorageError(WasmActorsError):
    """A storage backend failed (disk full, corrupt database, closed backend)."""
