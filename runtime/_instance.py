"""One running actor component: its Store, its instance and the call path."""

from __future__ import annotations

import ctypes
import math
import struct
import threading
from ctypes import c_size_t, c_uint64, c_void_p
from time import perf_counter
from typing import TYPE_CHECKING

import wasmtime
from wasmtime import WasmtimeError

from ..messaging import RequestError
from . import _abi as abi
from ._component import error_chain
from ._errors import (
    InstanceBrokenError,
    InstanceBusyError,
    InstanceClosedError,
    InstantiationError,
    InvalidMessageError,
    PayloadTooLargeError,
    StorageError,
)
from ._host import CallState, HostContext, current, ffi_error, install
from ._limits import encode_metadata
from ._outcome import AppError, CallResult, Crash, CrashKind, Outcome, Success
from ._stdio import GuestOutput
from ._traps import classify

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from types import TracebackType

    from ..messaging import Send, SendRequest
    from ._component import Component
    from ._limits import Limits

__all__ = ["Batch", "Instance"]

_TELL = b"tell"
_REQUEST = b"request"
_ONE = c_size_t(1)
_TWO = c_size_t(2)
#: Longest application error message passed on (longer ones are cut).
_MAX_ERROR = 4096
_MEMORY = abi.MEMORY
_RESULT = abi.RESULT_LAYOUT
_OPTION = abi.OPTION_LAYOUT
_NO_REPLY = Success(None)
_PTR = struct.Struct("<Q")
_PAIR = struct.Struct("<QQ")
# Offsets in handle-message's record entries (abi.Entry: a 16-byte name, then
# the value, whose union starts abi.OF bytes in) of the fields a call rewrites.
_SENDER_AT = 0 * abi.ENTRY_SIZE + 16 + abi.OF  # option: the pointer
_KIND_AT = 1 * abi.ENTRY_SIZE + 16 + abi.OF  # enum: the case name (size, data)
_HEADERS_AT = 3 * abi.ENTRY_SIZE + 16 + abi.OF  # list: (size, data)
assert abi.Entry.val.offset == 16
assert abi.Val.of.offset == abi.OF
_NOT_BYTES = "the reply holds a character above U+00FF, so it is not a byte string"


class Instance:
    """A component instantiated in its own wasmtime Store, under ``limits``.

    Calls are synchronous and run wasm on the calling thread (the actor layer
    calls from worker threads). One call at a time: a Store is single-threaded.
    A call never raises because of the guest: it returns a :class:`CallResult`
    whose outcome is :class:`Success`, :class:`AppError` or :class:`Crash`.
    After a crash the instance refuses further calls with
    :class:`InstanceBrokenError`; build a new one from the same component.

    Close it (or use ``with``) to free the Store deterministically.
    """

    def __init__(self, component: Component, limits: Limits, context: HostContext | None = None) -> None:
        engine = component.engine
        if engine.closed:
            raise InstanceClosedError("the engine is closed")
        self.component = component
        self.limits = limits
        self.context = context or HostContext()
        #: Why the instance is unusable, once it crashed.
        self.crash: Crash | None = None
        self._closed = False
        # Held for the duration of a call and by close(): a Store must never
        # be entered from two threads at once.
        self._lock = threading.Lock()
        self._ticks = c_uint64(math.ceil(limits.timeout / engine.epoch_tick) + 1)
        self._fuel = c_uint64(limits.fuel)
        self._state = CallState(self.context, limits)
        self._output = GuestOutput(self.context.logger, limits.max_log_bytes)

        store = wasmtime.Store(engine.raw)
        self._store = store
        try:
            # wasmtime caps each memory and table, not their sum: admit exactly
            # the memories and tables the component defines, each with an
            # equal share of its budget.
            memories = min(component.memories, limits.max_memories)
            tables = min(component.tables, limits.max_tables)
            store.set_limits(
                memory_size=limits.memory // max(1, memories),
                table_elements=limits.max_table_elements // max(1, tables),
                instances=limits.max_instances,
                tables=tables,
                memories=memories,
            )
            wasi = wasmtime.WasiConfig()  # no args, env, preopens; stdin is empty
            wasi.stdout_custom = self._output.stdout
            wasi.stderr_custom = self._output.stderr
            store.set_wasi(wasi)
            self._ctx = c_void_p(ctypes.cast(store._context(), c_void_p).value)
            self._instance = self._instantiate(engine.linker)
            self._bind_exports()
        except BaseException:
            store.close()
            raise
        self._build_templates()

    # -- set-up ---------------------------------------------------------------

    def _instantiate(self, linker: wasmtime.component.Linker) -> wasmtime.component.Instance:
        abi.set_fuel(self._ctx, self._fuel)
        abi.set_epoch_deadline(self._ctx, self._ticks)
        outer = current()
        install(self._state)
        try:
            return linker.instantiate(self._store, self.component.raw)
        except WasmtimeError as exc:
            text = str(exc)
            hint = ""
            if "memory" in text and (
                "limit" in text or "exceeds" in text or "grow" in text or "count" in text
            ):
                share = (
                    ""
                    if self.component.memories <= 1
                    else f", shared by its {self.component.memories} memories"
                )
                hint = f" (memory limit is {self.limits.memory} bytes{share}; a Python guest needs ~13 MiB)"
            raise InstantiationError(
                f"cannot instantiate {self.component.name}{hint}: {error_chain(exc)}"
            ) from exc
        finally:
            install(outer)
            self._state.fault = None

    def _bind_exports(self) -> None:
        funcs = []
        for index in self.component.export_indices:
            func = self._instance.get_func(self._store, index) if index is not None else None
            if func is None:  # validated at load time; this would be a wasmtime bug
                raise InstantiationError(f"{self.component.name}: a handler export vanished")
            funcs.append(func)
        self._funcs = funcs  # keep the wasmtime objects alive
        self._hm = c_void_p(ctypes.addressof(funcs[0]._func))
        self._hc = c_void_p(ctypes.addressof(funcs[1]._func))

    def _build_templates(self) -> None:
        # handle-message(msg: envelope): one record value whose four entries
        # are rewritten in place on each call; wasmtime only borrows them.
        self._entries = entries = (abi.Entry * 4)()
        for entry, field in zip(entries, (b"sender", b"kind", b"payload", b"headers"), strict=True):
            entry.name.size = len(field)
            entry.name.data = field
        entries[0].val.kind = abi.OPTION
        entries[1].val.kind = abi.ENUM
        entries[2].val.kind = abi.STRING
        entries[3].val.kind = abi.LIST
        self._no_headers = (abi.Val * 1)()  # a non-null pointer for empty lists
        self._sender_val = abi.Val()
        self._sender_val.kind = abi.STRING
        self._hm_arg = abi.Val()
        self._hm_arg.kind = abi.RECORD
        self._hm_arg.of.vec.size = 4
        self._hm_arg.of.vec.data = ctypes.addressof(entries)
        self._sender_opt = entries[0].val.of
        self._kind_str = entries[1].val.of.str
        self._payload_str = entries[2].val.of.str
        self._headers_vec = entries[3].val.of.vec
        # handle-callback(id: u64, outcome: result<payload, request-error>)
        self._hc_args = (abi.Val * 2)()
        self._hc_args[0].kind = abi.U64
        self._hc_args[1].kind = abi.RESULT
        self._hc_inner = abi.Val()
        self._hc_detail = abi.Val()
        self._hc_detail.kind = abi.STRING
        self._result = abi.Val()
        self._result_addr = ctypes.addressof(self._result)
        # Ready-made ctypes arguments: a call converts nothing.
        self._hm_args_ref = c_void_p(ctypes.addressof(self._hm_arg))
        self._hc_args_ref = c_void_p(ctypes.addressof(self._hc_args))
        self._result_ref = c_void_p(self._result_addr)
        self._no_headers_addr = ctypes.addressof(self._no_headers)
        self._sender_addr = ctypes.addressof(self._sender_val)
        self._remaining = c_uint64()
        self._remaining_ref = c_void_p(ctypes.addressof(self._remaining))
        # The record's entries as bytes, for plain-integer fields written with
        # struct.pack_into (a ctypes field write builds objects on each call).
        raw_entries = (ctypes.c_char * ctypes.sizeof(entries)).from_buffer(entries)
        self._entries_mem = memoryview(raw_entries).cast("B")
        self._kinds = ctypes.create_string_buffer(_TELL + b"\0" + _REQUEST)
        base = ctypes.addressof(self._kinds)
        self._kind_values = {False: (len(_TELL), base), True: (len(_REQUEST), base + len(_TELL) + 1)}

    # -- calls ----------------------------------------------------------------

    def handle_message(
        self,
        payload: bytes,
        *,
        sender: str | None = None,
        request: bool = False,
        headers: Sequence[tuple[str, str]] = (),
    ) -> CallResult:
        """Call the guest's ``handle-message`` with one message.

        Raises :class:`InvalidMessageError` (or its subclass
        :class:`PayloadTooLargeError`) for a message over the limits or with
        an unencodable sender or header, before anything is called.
        """
        # Checked before the lock: a refused message must not cost a busy error.
        raw_sender, raw_headers = encode_metadata(self.limits, payload, sender, headers)
        with Batch(self) as batch:
            return batch._message(payload, raw_sender, raw_headers, request)

    def handle_callback(self, request_id: int, outcome: bytes | RequestError) -> CallResult:
        """Deliver the outcome of the guest's earlier ``request`` with ``request_id``."""
        with Batch(self) as batch:
            return batch.handle_callback(request_id, outcome)

    def batch(self) -> Batch:
        """Several calls under one lock and one set-up (the actor layer's turn)::

            with instance.batch() as batch:
                for payload in payloads:
                    result = batch.handle_message(payload)

        Each call is checked and budgeted exactly as a single call is; only
        the lock and the host functions' routing are taken once. Raises
        :class:`InstanceBusyError` when another thread is calling."""
        return Batch(self)

    def _set_message(
        self,
        payload: bytes,
        raw_sender: bytes | None,
        raw_headers: list[tuple[bytes, bytes]],
        request: bool,
    ) -> object:
        """Write one message into the shared argument block (the lock is held);
        returns what must stay alive until the call returns."""
        data = abi.to_guest(payload)
        pstr = self._payload_str
        pstr.size = len(data)
        pstr.data = data  # a c_char_p field: it keeps ``data`` alive too
        mem = self._entries_mem
        if raw_sender is None:
            _PTR.pack_into(mem, _SENDER_AT, 0)
        else:
            self._sender_val.of.str.size = len(raw_sender)
            self._sender_val.of.str.data = raw_sender
            _PTR.pack_into(mem, _SENDER_AT, self._sender_addr)
        _PAIR.pack_into(mem, _KIND_AT, *self._kind_values[request])
        if not raw_headers:
            _PAIR.pack_into(mem, _HEADERS_AT, 0, self._no_headers_addr)
            return None
        return self._set_headers(raw_headers)

    def _set_callback(self, request_id: int, outcome: bytes | RequestError) -> None:
        if not isinstance(outcome, RequestError):
            if type(outcome) is not bytes:
                raise InvalidMessageError(f"a reply is bytes, not {type(outcome).__name__}")
            if len(outcome) > self.limits.max_payload:
                raise PayloadTooLargeError(
                    f"reply of {len(outcome)} bytes exceeds the limit of {self.limits.max_payload}"
                )
        args = self._hc_args
        args[0].of.u64 = request_id
        res = args[1].of.result
        inner = self._hc_inner
        if isinstance(outcome, RequestError):
            res.is_ok = False
            inner.kind = abi.VARIANT
            name = outcome.reason.value.encode()
            inner.of.variant.discriminant.size = len(name)
            inner.of.variant.discriminant.data = name
            if outcome.reason == "timeout":
                inner.of.variant.val = None
            else:
                detail = outcome.detail.encode(errors="replace")
                self._hc_detail.of.str.size = len(detail)
                self._hc_detail.of.str.data = detail
                inner.of.variant.val = ctypes.addressof(self._hc_detail)
        else:
            data = abi.to_guest(outcome)
            res.is_ok = True
            inner.kind = abi.STRING
            inner.of.str.size = len(data)
            inner.of.str.data = data
        res.val = ctypes.addressof(inner)

    def _set_headers(self, headers: list[tuple[bytes, bytes]]) -> object:
        vec = self._headers_vec
        if not headers:
            vec.size = 0
            vec.data = self._no_headers_addr
            return None
        tuples = (abi.Val * len(headers))()
        pairs = (abi.Val * (2 * len(headers)))()
        for i, pair in enumerate(headers):
            for j, raw in enumerate(pair):
                slot = pairs[2 * i + j]
                slot.kind = abi.STRING
                slot.of.str.size = len(raw)
                slot.of.str.data = raw
            tuples[i].kind = abi.TUPLE
            tuples[i].of.vec.size = 2
            tuples[i].of.vec.data = ctypes.addressof(pairs) + 2 * i * abi.VAL_SIZE
        vec.size = len(headers)
        vec.data = ctypes.addressof(tuples)
        return (tuples, pairs, headers)

    def _call(
        self, func: c_void_p, args: c_void_p, nargs: c_size_t, decode: Callable[[int], Outcome]
    ) -> CallResult:
        # The lock is held and the call state installed (a Batch). Only
        # func_call releases the GIL: the bookkeeping calls around it keep it.
        if self.crash is not None:
            raise InstanceBrokenError(
                f"{self.component.name} crashed earlier ({self.crash.kind}); instantiate the component again"
            )
        if self._closed:
            raise InstanceClosedError(f"instance of {self.component.name} is closed")
        ctx = self._ctx
        state = self._state
        state.begin()
        abi.set_fuel(ctx, self._fuel)
        abi.set_epoch_deadline(ctx, self._ticks)
        self._output.mark()
        start = perf_counter()
        err = abi.func_call(func, ctx, args, nargs, self._result_ref, _ONE)
        elapsed = perf_counter() - start
        if err:
            return self._crashed(classify(ffi_error(err), state.fault, self._output), elapsed)
        # post-return ran inside func_call (wasmtime >= 43): the result is ours.
        try:
            outcome = decode(self._result_addr)
        finally:
            abi.val_delete(self._result_ref)
            self._result.kind = abi.BOOL  # wasmtime drops the old result on the next call
        if state.log_dropped:
            self._settle_logs()
        abi.get_fuel(ctx, self._remaining_ref)
        fuel = self.limits.fuel - self._remaining.value
        outbox: Sequence[Send | SendRequest] = state.outbox
        journal = self.context.journal
        if journal is not None or state.txn is not None:
            try:
                if journal is not None:  # durable mode: its own rows join the transaction
                    outbox = journal.commit(state.txn, outbox)
                elif state.txn is not None:
                    state.txn.commit()
            except StorageError as exc:
                crash = Crash(CrashKind.HOST_FAULT, f"storage commit failed: {exc}")
                return self._crashed(crash, elapsed)
        return CallResult(outcome, fuel, elapsed, tuple(outbox) if outbox else (), state.stop)

    def _crashed(self, crash: Crash, elapsed: float) -> CallResult:
        state = self._state
        fault = state.fault
        self._settle_logs()
        state.begin()
        self.crash = crash
        # What the call burnt before it crashed (all of it for fuel exhaustion).
        abi.get_fuel(self._ctx, self._remaining_ref)
        fuel = self.limits.fuel - self._remaining.value
        if fault is not None and not isinstance(fault, Exception):
            raise fault  # KeyboardInterrupt, SystemExit...: the crash is recorded, don't swallow
        return CallResult(crash, fuel, elapsed)

    def _settle_logs(self) -> None:
        state = self._state
        if state.log_dropped:
            self.context.logger.warning(
                "dropped %d log records: one call may log %d bytes",
                state.log_dropped,
                self.limits.max_log_bytes,
            )
            state.log_dropped = 0

    # -- result decoding (wasmtime-owned memory, read in place) ----------------

    def _decode_message(self, addr: int) -> Outcome:
        # result<option<payload>, app-error>, read in place (abi.MEMORY).
        _, is_ok, inner = _RESULT.unpack_from(_MEMORY, addr)
        if not is_ok:
            return self._app_error(inner)
        _, some = _OPTION.unpack_from(_MEMORY, inner)
        if not some:
            return _NO_REPLY
        reply = abi.from_guest(abi.read_string(some))
        if reply is None:
            return AppError(_NOT_BYTES)
        if len(reply) > self.limits.max_payload:
            return AppError(f"the reply of {len(reply)} bytes exceeds the limit of {self.limits.max_payload}")
        return Success(reply)

    def _decode_unit(self, addr: int) -> Outcome:
        # result<_, app-error>
        _, is_ok, inner = _RESULT.unpack_from(_MEMORY, addr)
        return _NO_REPLY if is_ok else self._app_error(inner)

    @staticmethod
    def _app_error(record_addr: int) -> AppError:
        # record app-error { message: string }: one entry; its value follows the name.
        message = abi.read_pointer(record_addr, abi.OF + 8) + 16
        size = abi.string_size(message)
        if size > _MAX_ERROR:  # it travels to askers, dead letters and logs: read only what is kept
            cut = abi.read_string(message, _MAX_ERROR).decode(errors="ignore")
            return AppError(f"{cut}... ({size} bytes)")
        return AppError(abi.read_string(message).decode())

    # -- lifetime -------------------------------------------------------------

    @property
    def usable(self) -> bool:
        """False once the instance crashed or was closed."""
        return self.crash is None and not self._closed

    def fuel_remaining(self) -> int:
        """Fuel left after the last call (0 after fuel exhaustion)."""
        return self._remaining.value

    def close(self) -> None:
        """Free the Store and everything in it; waits for a call in progress
        on another thread. Idempotent."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._funcs = []
            self._store.close()
            self._output.flush()

    def __enter__(self) -> Instance:
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class Batch:
    """Calls into one instance under one lock: see :meth:`Instance.batch`.

    Entering takes the instance's lock (or raises :class:`InstanceBusyError`)
    and routes host functions on this thread to the instance; leaving undoes
    both. The calls are those of :class:`Instance`, with the same checks."""

    __slots__ = ("_instance", "_open", "_outer")

    def __init__(self, instance: Instance) -> None:
        self._instance = instance
        self._open = False
        self._outer: CallState | None = None

    def __enter__(self) -> Batch:
        instance = self._instance
        if not instance._lock.acquire(blocking=False):
            raise InstanceBusyError
        # A call made from inside another's host function (a logger, an
        # audit hook) restores the outer call's state when it ends.
        self._outer = current()
        install(instance._state)
        self._open = True
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._open = False
        install(self._outer)
        self._instance._lock.release()

    def handle_message(
        self,
        payload: bytes,
        *,
        sender: str | None = None,
        request: bool = False,
        headers: Sequence[tuple[str, str]] = (),
    ) -> CallResult:
        """As :meth:`Instance.handle_message`."""
        raw_sender, raw_headers = encode_metadata(self._instance.limits, payload, sender, headers)
        return self._message(payload, raw_sender, raw_headers, request)

    def handle_callback(self, request_id: int, outcome: bytes | RequestError) -> CallResult:
        """As :meth:`Instance.handle_callback`."""
        if not self._open:
            raise InstanceClosedError("this batch is closed; open another with Instance.batch()")
        instance = self._instance
        instance._set_callback(request_id, outcome)
        return instance._call(instance._hc, instance._hc_args_ref, _TWO, instance._decode_unit)

    def _message(
        self, payload: bytes, raw_sender: bytes | None, raw_headers: list[tuple[bytes, bytes]], request: bool
    ) -> CallResult:
        if not self._open:
            raise InstanceClosedError("this batch is closed; open another with Instance.batch()")
        instance = self._instance
        keep = instance._set_message(payload, raw_sender, raw_headers, request)
        result = instance._call(instance._hm, instance._hm_args_ref, _ONE, instance._decode_message)
        del keep  # the header values stayed alive for the call
        return result
