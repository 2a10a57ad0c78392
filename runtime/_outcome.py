"""What a handler call produced: one result type for every outcome."""

from __future__ import annotations

import enum

import msgspec

from ..messaging import Outgoing

__all__ = ["AppError", "CallResult", "Crash", "CrashKind", "Outcome", "Success"]


class CrashKind(enum.StrEnum):
    """Why an instance crashed. After any crash the instance cannot be entered
    again; a supervisor builds a new one from the compiled component."""

    #: The call used up its fuel budget (``Limits.fuel``).
    FUEL_EXHAUSTED = "fuel-exhausted"
    #: The call ran past its wall-clock budget (``Limits.timeout``).
    TIMEOUT = "timeout"
    #: The guest failed after the store refused to grow its memory
    #: (``Limits.memory``), or could not even be instantiated within it.
    MEMORY_LIMIT = "memory-limit"
    #: Any other trap: ``unreachable``, an out-of-bounds access, stack
    #: overflow, an uncaught exception in a Python guest, a malformed value.
    TRAP = "trap"
    #: A host function failed in a way that is the host's fault (a storage
    #: backend error, a bug); the guest is not to blame but the call is lost.
    HOST_FAULT = "host-fault"


class Success(msgspec.Struct, frozen=True, tag="success"):
    """The handler returned ``ok``."""

    #: The reply bytes; ``None`` when the handler returned ``none``.
    reply: bytes | None = None


class AppError(msgspec.Struct, frozen=True, tag="app-error"):
    """The handler returned ``err``: an application failure, not a crash."""

    #: The guest's message.
    message: str


class Crash(msgspec.Struct, frozen=True, tag="crash"):
    """The call trapped; the instance is now unusable."""

    #: The classification supervisors and stats use.
    kind: CrashKind
    #: wasmtime's message (first line), or the host fault's description.
    message: str
    #: wasm frames, innermost first, as ``"module!function"`` or ``"0x1a2b"``.
    backtrace: tuple[str, ...] = ()
    #: The full text wasmtime reported, backtrace included.
    detail: str = ""


Outcome = Success | AppError | Crash


class CallResult(msgspec.Struct, frozen=True):
    """Everything one ``handle-message`` or ``handle-callback`` call produced."""

    #: Success, application error or crash.
    outcome: Outcome
    #: Fuel the call consumed.
    fuel: int
    #: Wall-clock duration of the call in seconds.
    elapsed: float
    #: Messages queued by the call, in order; always empty after a crash.
    outbox: tuple[Outgoing, ...] = ()
    #: The guest called ``lifecycle.stop``: it asks to exit normally once
    #: this call's results are processed. Always false after a crash.
    stop: bool = False

    @property
    def ok(self) -> bool:
        """True when the handler returned ``ok``."""
        return type(self.outcome) is Success

    @property
    def crashed(self) -> bool:
        """True when the call trapped and the instance is unusable."""
        return type(self.outcome) is Crash
