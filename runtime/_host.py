"""Host functions: the `messaging`, `services`, `storage` and `lifecycle` imports.

They are registered on the engine's shared component linker through one
ctypes trampoline of our own rather than wasmtime-py's ``add_func``, for two
reasons. wasmtime-py hands a Python exception back to wasmtime through a
process-wide slot and catches only ``Exception``; our trampoline catches
everything itself, turns expected failures into WIT error values and anything
else into a *host fault* recorded on the call. And it reads arguments in
place, without a per-call type lookup.

The linker is shared by every store of an engine, so a host function finds
the actor it serves through the :class:`CallState` the instance installs in a
thread-local for the duration of each call (a Store runs on one thread).
"""

from __future__ import annotations

import ctypes
import logging
import re
import threading
import time
from collections.abc import Callable
from ctypes import CFUNCTYPE, c_char_p, c_size_t, c_void_p
from typing import TYPE_CHECKING, Protocol

import msgspec
from wasmtime import _ffi as ffi
from wasmtime import component

from ..messaging import Send, SendRequest
from . import _abi as abi
from ._errors import StorageError
from ._storage import ROW_OVERHEAD, StorageBackend, Transaction

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._limits import Limits

__all__ = ["WIT_PACKAGE", "CallState", "HostCall", "HostContext", "Journal", "define_host_functions"]

WIT_PACKAGE = "wasmactors:actor"
WIT_VERSION = "0.1.0"

_ADDRESS = re.compile(r"^[A-Za-z0-9_.\-]+(/[A-Za-z0-9_.\-]+)*$")
MAX_ADDRESS = 255
MAX_KEY = 1024
#: What a log record, an output line or a stored row costs a call's budget
#: on top of its bytes: the host's own bookkeeping for it is not free.
RECORD_OVERHEAD = ROW_OVERHEAD

_LEVELS = {
    b"trace": 5,
    b"debug": logging.DEBUG,
    b"info": logging.INFO,
    b"warn": logging.WARNING,
    b"error": logging.ERROR,
}


def valid_address(address: str) -> bool:
    """Addresses are ``/``-separated names of letters, digits, ``_ . -``."""
    return len(address) <= MAX_ADDRESS and _ADDRESS.match(address) is not None


class HostCall(msgspec.Struct, frozen=True):
    """One host function call, as an audit hook sees it."""

    #: ``interface.function``, e.g. ``storage.set``.
    function: str
    #: The arguments, summarised (payloads by size, not content).
    arguments: str
    #: What the guest got back: ``ok``, ``ok <value>`` or ``err <case>(<detail>)``.
    result: str


class HostContext:
    """What the host functions of one actor need from its embedder.

    The actor layer passes one to each instance; for direct use of the
    runtime the defaults are enough.
    """

    __slots__ = (
        "address",
        "audit",
        "journal",
        "logger",
        "next_request_id",
        "pending_requests",
        "resolve",
        "storage",
    )

    def __init__(
        self,
        address: str = "anonymous",
        *,
        storage: StorageBackend | None = None,
        resolve: Callable[[str], bool] | None = None,
        next_request_id: Callable[[], int] | None = None,
        logger: logging.Logger | logging.LoggerAdapter[logging.Logger] | None = None,
        audit: Callable[[HostCall], None] | None = None,
        pending_requests: Callable[[], int] | None = None,
        journal: Journal | None = None,
    ) -> None:
        if not valid_address(address):
            raise ValueError(f"invalid actor address {address!r}")
        #: This actor's address, returned by ``self-address``.
        self.address = address
        #: Where ``storage`` calls go; ``None`` makes them fail with ``backend``.
        self.storage = storage
        #: Whether an address names a live actor; ``None`` accepts every valid one.
        self.resolve = resolve
        counter = iter(range(1, 2**64))
        #: Allocates request ids; must not repeat for the actor's lifetime.
        self.next_request_id = next_request_id or (lambda: next(counter))
        #: Receives the guest's ``log`` records and its stdout/stderr lines.
        self.logger = logger or logging.LoggerAdapter(
            logging.getLogger("wasmactors.guest"), {"actor": address}
        )
        #: Called after every host function call with what was asked and
        #: answered (``wasmactors call`` prints these); ``None``: no audit.
        #: It runs inside the guest's call: if it raises, the call crashes
        #: with ``host-fault``.
        self.audit = audit
        #: How many of this actor's requests wait for their reply (not
        #: counting the current call's); ``None``: none are tracked.
        self.pending_requests = pending_requests
        #: Durable mode: commits each successful call's writes together with
        #: its own rows (the message id, the outbox); ``None``: a plain commit.
        self.journal = journal


class Journal(Protocol):
    """Extends a handler call's storage commit (the actor layer's durable mode)."""

    def commit(
        self, txn: Transaction | None, outbox: Sequence[Send | SendRequest]
    ) -> Sequence[Send | SendRequest]:
        """Commit a successful call's writes (``txn``, ``None`` if it touched no
        storage) and whatever the journal adds, atomically; return the sends
        still to be delivered the usual way. Raises :class:`StorageError`
        (the call crashes with ``host-fault``, nothing is committed)."""
        ...


class CallState:
    """Per-call scratch space shared between an instance and its host functions."""

    __slots__ = (
        "context",
        "fault",
        "limits",
        "log_bytes",
        "log_dropped",
        "outbox",
        "outbox_bytes",
        "requests",
        "stop",
        "storage_bytes",
        "txn",
    )

    def __init__(self, context: HostContext, limits: Limits) -> None:
        self.context = context
        self.limits = limits
        self.begin()

    def begin(self) -> None:
        """Reset for a new call."""
        self.outbox: list[Send | SendRequest] = []
        self.txn: Transaction | None = None
        self.fault: BaseException | None = None
        #: What this call has cost the host so far, against its budgets.
        self.outbox_bytes = 0
        self.requests = 0
        self.storage_bytes = 0
        self.log_bytes = 0
        self.log_dropped = 0
        #: The guest called ``lifecycle.stop``: exit normally after this call.
        self.stop = False

    def transaction(self) -> Transaction:
        if self.txn is None:
            if self.context.storage is None:
                raise StorageError("this actor has no storage backend")
            self.txn = Transaction(self.context.storage, self.context.address)
        return self.txn


_current = threading.local()


def install(state: CallState | None) -> None:
    """Make ``state`` the target of host calls made on this thread."""
    _current.state = state


def current() -> CallState | None:
    """The call state installed on this thread, if a call is under way."""
    state: CallState | None = getattr(_current, "state", None)
    return state


# --- argument decoding ------------------------------------------------------


def _arg(args: int, i: int) -> int:
    return args + i * abi.VAL_SIZE


def _text(args: int, i: int) -> str:
    return abi.read_string(_arg(args, i)).decode()


def _preview(args: int, i: int) -> str:
    """A string argument as the audit shows it: its first characters only."""
    size = abi.string_size(_arg(args, i))
    text = abi.read_string(_arg(args, i), 4 * _ECHO).decode(errors="replace")
    return _echo(text) if size <= 4 * _ECHO else f"{text[:_ECHO]}... ({size} bytes)"


def _payload(args: int, i: int) -> bytes | None:
    """A payload argument as bytes; ``None`` if it is not a byte string."""
    return abi.from_guest(abi.read_string(_arg(args, i)))


_ECHO = 64


def _echo(text: str) -> str:
    """Guest input quoted back in an error value, cut so that an error never
    costs more than the input's first few characters."""
    return text if len(text) <= _ECHO else f"{text[:_ECHO]}... ({len(text)} characters)"


def _err(case: str, detail: str | int | None = None) -> abi.Spec:
    if detail is None:
        return ("err", ("case", case, None))
    inner: abi.Spec = ("u32", detail) if isinstance(detail, int) else ("str", detail.encode())
    return ("err", ("case", case, inner))


# --- messaging ---------------------------------------------------------------


def _enqueue(s: CallState, args: int, *, request: bool) -> abi.Spec:
    limits = s.limits
    size = abi.string_size(_arg(args, 0))
    if size > MAX_ADDRESS:  # checked before reading: it may be megabytes
        return _err("invalid-address", f"addresses are at most {MAX_ADDRESS} bytes, got {size}")
    to = _text(args, 0)
    if not valid_address(to):
        return _err("invalid-address", _echo(to))
    payload = _payload(args, 1)
    if payload is None:
        return _err("invalid-payload", "a payload character is above U+00FF")
    if len(payload) > limits.max_payload:
        return _err("payload-too-large", limits.max_payload)
    if len(s.outbox) >= limits.max_outbox:
        return _err("outbox-full", limits.max_outbox)
    if s.outbox_bytes + len(payload) > limits.outbox_bytes:
        return _err("quota-exceeded", f"one call may queue {limits.outbox_bytes} payload bytes")
    timeout = None
    if request:
        timeout_ms = abi.Val.from_address(_arg(args, 2)).of.u32
        if timeout_ms > limits.max_request_timeout * 1000:
            return _err("quota-exceeded", f"timeout-ms is at most {round(limits.max_request_timeout * 1000)}")
        pending = s.context.pending_requests
        if s.requests + (pending() if pending is not None else 0) >= limits.max_pending_requests:
            return _err(
                "quota-exceeded", f"at most {limits.max_pending_requests} requests may wait for a reply"
            )
        timeout = timeout_ms / 1000 if timeout_ms else None
    resolve = s.context.resolve
    if resolve is not None and not resolve(to):
        return _err("unknown-recipient", to)
    s.outbox_bytes += len(payload)
    if not request:
        s.outbox.append(Send(to, payload))
        return ("ok", None)
    request_id = s.context.next_request_id()
    s.requests += 1
    s.outbox.append(SendRequest(to, payload, request_id, timeout))
    return ("ok", ("u64", request_id))


def _send(s: CallState, args: int) -> abi.Spec:
    return _enqueue(s, args, request=False)


def _request(s: CallState, args: int) -> abi.Spec:
    return _enqueue(s, args, request=True)


def _self_address(s: CallState, args: int) -> abi.Spec:
    return ("str", s.context.address.encode())


# --- services ----------------------------------------------------------------


def _log(s: CallState, args: int) -> None:
    limits = s.limits
    size = abi.string_size(_arg(args, 1))
    raw = abi.read_string(_arg(args, 1), limits.max_log_record)
    cost = len(raw) + RECORD_OVERHEAD  # so that empty records are not free
    if s.log_bytes + cost > limits.max_log_bytes:
        s.log_dropped += 1
        return
    s.log_bytes += cost
    text = raw.decode(errors="ignore")  # a cut may split a character
    if size > len(raw):
        text += f"... ({size} bytes, cut to {limits.max_log_record})"
    level = _LEVELS.get(abi.read_string(_arg(args, 0)), logging.INFO)
    s.context.logger.log(level, "%s", text)


def _now(s: CallState, args: int) -> abi.Spec:
    return ("u64", time.time_ns())


def _monotonic(s: CallState, args: int) -> abi.Spec:
    return ("u64", time.monotonic_ns())


# --- storage -----------------------------------------------------------------


def _key(args: int) -> str | abi.Spec:
    if not 0 < abi.string_size(_arg(args, 0)) <= MAX_KEY:
        return _err("invalid-key", f"keys are 1 to {MAX_KEY} bytes")
    return _text(args, 0)


def _charge(s: CallState, size: int) -> abi.Spec | None:
    """Count a write of ``size`` bytes against the call's storage budget
    (each write costs ``RECORD_OVERHEAD`` more: a row is not free)."""
    size += RECORD_OVERHEAD
    if s.storage_bytes + size > s.limits.storage_bytes:
        return _err("quota-exceeded", f"one call may write {s.limits.storage_bytes} bytes")
    s.storage_bytes += size
    return None


def _backend_failed(s: CallState, exc: StorageError) -> abi.Spec:
    # The detail (a file path, the database's words) is the host's business.
    s.context.logger.error("storage failed: %s", exc)
    return _err("backend", "the storage backend failed; the host logged why")


def _storage_op(op: Callable[[CallState, int, str], abi.Spec]) -> Callable[[CallState, int], abi.Spec]:
    def run(s: CallState, args: int) -> abi.Spec:
        key = _key(args)
        if not isinstance(key, str):
            return key
        try:
            return op(s, args, key)
        except StorageError as exc:
            return _backend_failed(s, exc)

    return run


@_storage_op
def _get(s: CallState, args: int, key: str) -> abi.Spec:
    value = s.transaction().get(key)
    return ("ok", ("option", None if value is None else ("str", abi.to_guest(value))))


@_storage_op
def _set(s: CallState, args: int, key: str) -> abi.Spec:
    value = _payload(args, 1)
    if value is None:
        return _err("invalid-value", "a value character is above U+00FF")
    if len(value) > s.limits.max_payload:
        return _err("value-too-large", s.limits.max_payload)
    over = _charge(s, len(key.encode()) + len(value))
    if over is not None:
        return over
    txn = s.transaction()
    # The actor's whole state is bounded too, not only one call's writes; a
    # write that does not grow it (an overwrite with less) is always allowed.
    after = txn.usage_after(key, len(value))
    if after > s.limits.max_stored_bytes and after > txn.usage():
        return _err("quota-exceeded", f"the actor may keep {s.limits.max_stored_bytes} bytes in storage")
    txn.set(key, value)
    return ("ok", None)


@_storage_op
def _delete(s: CallState, args: int, key: str) -> abi.Spec:
    over = _charge(s, len(key.encode()))
    if over is not None:
        return over
    return ("ok", ("bool", s.transaction().delete(key)))


def _keys(s: CallState, args: int) -> abi.Spec:
    limit = s.limits.max_keys
    if abi.string_size(_arg(args, 0)) > MAX_KEY:
        return ("ok", ("strings", []))  # no key is that long
    try:
        keys = s.transaction().keys(_text(args, 0), limit)
    except StorageError as exc:
        return _backend_failed(s, exc)
    if len(keys) > limit:
        return _err("quota-exceeded", f"more than {limit} keys match; ask with a longer prefix")
    return ("ok", ("strings", [k.encode() for k in keys]))


# --- lifecycle ---------------------------------------------------------------


def _stop(s: CallState, args: int) -> None:
    # A flag, not a queue: calling it again in the same call changes nothing
    # and costs the host nothing more.
    s.stop = True


HostFunc = Callable[[CallState, int], "abi.Spec | None"]

#: interface name -> function name -> implementation.
HOST_FUNCTIONS: dict[str, dict[str, HostFunc]] = {
    "messaging": {"send": _send, "request": _request, "self-address": _self_address},
    "services": {"log": _log, "now-ns": _now, "monotonic-ns": _monotonic},
    "storage": {"get": _get, "set": _set, "delete": _delete, "keys": _keys},
    "lifecycle": {"stop": _stop},
}

_TABLE: list[HostFunc] = [fn for funcs in HOST_FUNCTIONS.values() for fn in funcs.values()]
_NAMES: list[str] = [f"{iface}.{fn}" for iface, funcs in HOST_FUNCTIONS.items() for fn in funcs]

_S, _U32, _ENUM = abi.STRING, abi.U32, abi.ENUM
#: Per host function (in table order): the kinds of its arguments, one byte
#: each, and its number of results. Imports are type-checked at load; the
#: trampoline checks this shape again before it reads anything, so a
#: component that slipped past validation gets a host fault, not a misread.
_SHAPES: list[tuple[bytes, int]] = [
    (bytes([_S, _S]), 1),  # messaging.send
    (bytes([_S, _S, _U32]), 1),  # messaging.request
    (b"", 1),  # messaging.self-address
    (bytes([_ENUM, _S]), 0),  # services.log
    (b"", 1),  # services.now-ns
    (b"", 1),  # services.monotonic-ns
    (bytes([_S]), 1),  # storage.get
    (bytes([_S, _S]), 1),  # storage.set
    (bytes([_S]), 1),  # storage.delete
    (bytes([_S]), 1),  # storage.keys
    (b"", 0),  # lifecycle.stop
]
assert len(_SHAPES) == len(_TABLE)


def _shape_ok(index: int, args: int, nargs: int, nresults: int) -> bool:
    kinds, results = _SHAPES[index]
    if nargs != len(kinds) or nresults != results:
        return False
    return not nargs or ctypes.string_at(args, nargs * abi.VAL_SIZE)[:: abi.VAL_SIZE] == kinds


def _describe_args(name: str, args: int) -> str:
    """A host call's arguments for the audit: addresses and keys in full,
    payloads by length (they may be large or binary)."""
    match name:
        case "messaging.send" | "storage.set":  # (address or key, payload)
            return f"{_preview(args, 0)!r}, {abi.string_size(_arg(args, 1))} B"
        case "messaging.request":
            timeout_ms = abi.Val.from_address(_arg(args, 2)).of.u32
            return f"{_preview(args, 0)!r}, {abi.string_size(_arg(args, 1))} B, timeout {timeout_ms} ms"
        case "services.log":
            return f"{_text(args, 0)}, {_preview(args, 1)!r}"
        case "storage.get" | "storage.delete" | "storage.keys":
            return repr(_preview(args, 0))
    return ""


def _describe_result(spec: abi.Spec | None) -> str:
    match spec:
        case None:
            return ""
        case ("ok", None):
            return "ok"
        case ("err", ("case", case, None)):
            return f"err {case}"
        case ("err", ("case", case, (_, detail))):
            text = detail.decode(errors="replace") if isinstance(detail, bytes) else detail
            return f"err {case}({text})"
        case ("ok", ("option", None)):
            return "ok none"
        case ("ok", ("option", ("str", value))):
            return f"ok {len(value)} B"
        case ("ok", ("strings", keys)):
            return f"ok {len(keys)} keys"
        case ("ok", (_, value)) | (_, value):
            return f"ok {value.decode(errors='replace') if isinstance(value, bytes) else value}"
    return str(spec)


def _audit_record(index: int, args: int, spec: abi.Spec | None) -> HostCall:
    name = _NAMES[index]
    return HostCall(name, _describe_args(name, args), _describe_result(spec))


def _fault(message: str) -> int:
    return int(abi.error_new(c_char_p(message.encode())))


def _trampoline(  # noqa: PLR0917 - the C callback signature fixes the arguments
    env: int | None,
    ctx: int | None,
    ty: int | None,
    args: int | None,
    nargs: int,
    results: int | None,
    nresults: int,
) -> int:
    # Runs on the thread executing wasm, with the GIL re-acquired. Nothing may
    # escape: an exception here would be printed by ctypes and lost.
    state: CallState | None = getattr(_current, "state", None)
    try:
        if state is None:
            return _fault("host function called outside a wasmactors call")
        index = (env or 1) - 1
        if not _shape_ok(index, args or 0, nargs, nresults):
            state.fault = TypeError(f"{_NAMES[index]} called with values of the wrong type")
            return _fault(f"host fault: {state.fault}")
        spec = _TABLE[index](state, args or 0)
        if state.context.audit is not None:
            state.context.audit(_audit_record(index, args or 0, spec))
        if nresults:
            assert results is not None
            assert spec is not None
            abi.lower(results, spec)
        return 0
    except BaseException as exc:  # noqa: BLE001 - see above: record, never raise
        if state is not None and state.fault is None:
            state.fault = exc
        try:
            return _fault(f"host fault: {type(exc).__name__}: {exc}")
        except BaseException:  # noqa: BLE001 - allocation failure; still must not raise
            return 0


def _no_finalizer(data: int | None) -> None:
    return None


# wasmtime_component_func_callback_t, with pointers as plain integers.
_CALLBACK = CFUNCTYPE(c_size_t, c_void_p, c_void_p, c_void_p, c_void_p, c_size_t, c_void_p, c_size_t)
_trampoline_c = _CALLBACK(_trampoline)
_no_finalizer_c = CFUNCTYPE(None, c_void_p)(_no_finalizer)


_add_func = abi._raw("wasmtime_component_linker_instance_add_func", c_void_p)


def define_host_functions(linker: component.Linker) -> None:
    """Define the `types` instance and one instance per interface of :data:`HOST_FUNCTIONS`."""
    index = 1
    with linker.root() as root:
        with root.add_instance(f"{WIT_PACKAGE}/types@{WIT_VERSION}"):
            pass
        for iface, funcs in HOST_FUNCTIONS.items():
            with root.add_instance(f"{WIT_PACKAGE}/{iface}@{WIT_VERSION}") as inst:
                for name in funcs:
                    raw = name.encode()
                    err = _add_func(
                        c_void_p(ctypes.cast(inst.ptr(), c_void_p).value),
                        c_char_p(raw),
                        c_size_t(len(raw)),
                        _trampoline_c,
                        c_void_p(index),
                        _no_finalizer_c,
                    )
                    if err:
                        raise ffi_error(err)
                    index += 1


def ffi_error(ptr: int) -> Exception:
    """A wasmtime error pointer as wasmtime-py's ``WasmtimeError`` (owning it)."""
    from wasmtime import WasmtimeError

    return WasmtimeError._from_ptr(ctypes.cast(c_void_p(ptr), ctypes.POINTER(ffi.wasmtime_error_t)))
