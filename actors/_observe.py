"""What the system lets you watch: per-actor statistics, the event stream and
dead letters."""

from __future__ import annotations

import enum
import math
from collections import Counter, deque
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Generic, TypeVar

import anyio
import msgspec

from ..messaging import DeliveryFailure, Envelope

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

__all__ = ["ActorStats", "DeadLetter", "DeadLetterReason", "Event", "EventKind", "StatsRecorder"]

T = TypeVar("T")


#: Why a message was not (or could not be) handled: the messaging layer's one
#: failure enum, under the name the actor layer has always used.
DeadLetterReason = DeliveryFailure


class DeadLetter(msgspec.Struct, frozen=True):
    """An undeliverable or unhandled message, with the reason."""

    envelope: Envelope
    reason: DeadLetterReason
    #: More about the reason (the crash kind, the mailbox size).
    detail: str = ""


class EventKind(enum.StrEnum):
    """What happened to an actor or supervisor."""

    #: Spawned and running.
    STARTED = "started"
    #: A handler crashed; the incarnation ended (the message is a dead letter).
    CRASHED = "crashed"
    #: Stopped by its supervisor, mailbox kept: the stop half of a restart of
    #: a sibling (one-for-all, rest-for-one), or its supervisor gave up.
    HALTED = "halted"
    #: A new incarnation started (after a crash, a halt, or a normal exit of a permanent child).
    RESTARTED = "restarted"
    #: A supervisor exceeded its restart intensity.
    GAVE_UP = "gave-up"
    #: Stopped for good: removed from the tree, queued messages accounted for.
    STOPPED = "stopped"


class Event(msgspec.Struct, frozen=True):
    """A lifecycle event of an actor or supervisor."""

    kind: EventKind
    address: str
    #: For crashes: the crash kind; for gave-up: the intensity exceeded.
    detail: str = ""
    #: For crashes: the wasm backtrace.
    backtrace: tuple[str, ...] = ()
    #: When it happened (``time.time()``, seconds since the epoch).
    time: float = 0.0
    #: For crashes: why (the guest's own last error line when it printed one).
    message: str = ""


class ActorStats(msgspec.Struct, frozen=True):
    """A snapshot of one actor's counters."""

    address: str
    handled: int
    app_errors: int
    crashes: dict[str, int]
    restarts: int
    fuel: int
    mailbox_depth: int
    mailbox_high_water: int
    #: Handler latency percentiles over the recent window, in seconds.
    latency_p50: float
    latency_p99: float


class StatsRecorder:
    """Mutable counters behind :class:`ActorStats`."""

    __slots__ = ("app_errors", "crashes", "fuel", "handled", "latencies", "restarts")

    def __init__(self) -> None:
        self.handled = 0
        self.app_errors = 0
        self.crashes: Counter[str] = Counter()
        self.restarts = 0
        self.fuel = 0
        self.latencies: deque[float] = deque(maxlen=1024)

    def snapshot(self, address: str, depth: int, high_water: int) -> ActorStats:
        ordered = sorted(self.latencies)
        return ActorStats(
            address=address,
            handled=self.handled,
            app_errors=self.app_errors,
            crashes=dict(self.crashes),
            restarts=self.restarts,
            fuel=self.fuel,
            mailbox_depth=depth,
            mailbox_high_water=high_water,
            latency_p50=_percentile(ordered, 0.50),
            latency_p99=_percentile(ordered, 0.99),
        )


def _percentile(ordered: list[float], q: float) -> float:
    if not ordered:
        return 0.0
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


class Broadcast(Generic[T]):
    """Fan-out to subscribers; a slow subscriber loses items rather than
    slowing the system (its counter of ``missed`` items says so)."""

    def __init__(self, buffer: int = 1024) -> None:
        self._buffer = buffer
        self._subscribers: list[MemoryObjectSendStream[T]] = []
        #: Items dropped because a subscriber's buffer was full.
        self.missed = 0

    def publish(self, item: T) -> None:
        for send in list(self._subscribers):
            try:
                send.send_nowait(item)
            except anyio.WouldBlock:
                self.missed += 1
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._subscribers.remove(send)

    @asynccontextmanager
    async def subscribe(self, buffer: float | None = None) -> AsyncIterator[MemoryObjectReceiveStream[T]]:
        """A stream of what is published from now on; ``buffer`` items at most
        (``math.inf``: unbounded) before this subscriber starts missing some."""
        send, receive = anyio.create_memory_object_stream[T](self._buffer if buffer is None else buffer)
        self._subscribers.append(send)
        try:
            async with receive:
                yield receive
        finally:
            if send in self._subscribers:
                self._subscribers.remove(send)
            send.close()

    def close(self) -> None:
        for send in self._subscribers:
            send.close()
        self._subscribers.clear()
