"""The actor layer's errors::

WasmActorsError
└── ActorError
    ├── MailboxFullError      tell_nowait found the mailbox full (also anyio.WouldBlock)
    ├── AskTimeoutError       no reply within the ask's timeout (also TimeoutError)
    ├── ActorAppError         the handler returned err; ``.message`` has its text
    ├── ActorCrashedError     the handler crashed on this message; ``.kind`` says how
    ├── ActorStoppedError     the actor stopped before it answered (also anyio.ClosedResourceError)
    ├── UnknownActorError     no actor has that address (also LookupError)
    ├── DurableError          an actor cannot be durable here: no cluster, no SQLite (also ValueError)
    └── SystemFailedError     the root supervisor gave up; the system stopped
"""

from __future__ import annotations

import anyio

from ..runtime import CrashKind, WasmActorsError

__all__ = [
    "ActorAppError",
    "ActorCrashedError",
    "ActorError",
    "ActorStoppedError",
    "AskTimeoutError",
    "DurableError",
    "MailboxFullError",
    "SystemFailedError",
    "UnknownActorError",
]


class ActorError(WasmActorsError):
    """Base class of the actor layer's errors."""


class MailboxFullError(ActorError, anyio.WouldBlock):
    """The mailbox is at capacity; ``tell`` would wait for room."""


class AskTimeoutError(ActorError, TimeoutError):
    """No reply arrived within the ask's timeout."""


class ActorAppError(ActorError):
    """The handler returned an application error (``err``); the actor goes on."""

    def __init__(self, address: str, message: str) -> None:
        super().__init__(f"{address}: {message}")
        #: The actor that answered.
        self.address = address
        #: The guest's message.
        self.message = message


class ActorCrashedError(ActorError):
    """The actor crashed while handling this message; its supervisor decides what next."""

    def __init__(self, address: str, kind: CrashKind | str, detail: str = "") -> None:
        super().__init__(f"{address} crashed ({kind}){': ' + detail if detail else ''}")
        self.address = address
        #: How it crashed.
        self.kind = CrashKind(kind)
        self.detail = detail


class ActorStoppedError(ActorError, anyio.ClosedResourceError):
    """The actor stopped (or was stopped) before answering."""


class UnknownActorError(ActorError, LookupError):
    """No actor is registered at the address."""


class SystemFailedError(ActorError):
    """The root supervisor exceeded its restart intensity: the system stopped."""


class DurableError(ActorError, ValueError):
    """An actor cannot be durable here: the system has no cluster (durable
    messages travel through JetStream) or no SQLite storage (the handler's
    state, processed ids and outbox commit in one SQLite transaction)."""
