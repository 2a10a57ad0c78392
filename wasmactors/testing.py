"""Unit-test your own components: a throwaway actor system that records guest
logs, dead letters and lifecycle events for you to assert on.

::

    from wasmactors import Manifest
    from wasmactors.testing import open_test_system

    async def test_counter_keeps_its_total() -> None:
        async with open_test_system() as kit:
            counter = await kit.spawn("counter", Manifest.load("examples/counter/component.toml"))
            await counter.tell(b"add 5")
            assert await counter.ask(b"get", timeout=5) == b"5"
            assert "total is now 5" in kit.log_messages("counter")
            assert kit.dead_letters == []

Everything runs for real: the components are compiled (and cached) by a real
engine and run under their limits on worker threads. See docs/testing.md.
"""

from __future__ import annotations

import logging
import math
from contextlib import AsyncExitStack, asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import msgspec

from .actors import ActorSystem, DeadLetter, Event, EventKind, Reject
from .runtime import MemoryStorage

if TYPE_CHECKING:
    import os
    from collections.abc import AsyncIterator, Callable

    from anyio.streams.memory import MemoryObjectReceiveStream

    from .actors import NativeContext
    from .messaging import Envelope
    from .runtime import Engine, StorageBackend

__all__ = ["ActorTestKit", "EventKind", "GuestLog", "Probe", "Reject", "open_test_system"]

_GUEST_LOGGER = "wasmactors.guest"


class GuestLog(msgspec.Struct, frozen=True):
    """One record a guest logged (``log``, or a line it printed)."""

    actor: str
    #: A `logging` level; the guest's ``trace`` is 5.
    level: int
    message: str


class _Capture(logging.Handler):
    """Collects the guest logger's records (they arrive from worker threads)."""

    def __init__(self) -> None:
        super().__init__(level=1)
        self.records: list[GuestLog] = []

    def emit(self, record: logging.LogRecord) -> None:
        actor = getattr(record, "actor", "")
        self.records.append(GuestLog(actor, record.levelno, record.getMessage()))


class Probe:
    """A native actor that records what it receives, for asserting on what a
    component sends. Answers requests with ``reply`` (bytes, or a function of
    the envelope; raise :class:`~wasmactors.actors.Reject` in it for an app error)."""

    def __init__(self, reply: bytes | Callable[[Envelope], bytes] = b"") -> None:
        self.reply = reply
        #: Every envelope received, in order.
        self.received: list[Envelope] = []
        self._arrived = anyio.Event()
        self._taken = 0

    async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None:
        self.received.append(envelope)
        self._arrived.set()
        return self.reply(envelope) if callable(self.reply) else self.reply

    async def receive(self, *, timeout: float = 5.0) -> Envelope:
        """The next envelope not yet returned by ``receive`` (waiting up to ``timeout``)."""
        with anyio.fail_after(timeout):
            while self._taken >= len(self.received):
                self._arrived = anyio.Event()
                await self._arrived.wait()
        self._taken += 1
        return self.received[self._taken - 1]

    @property
    def payloads(self) -> list[bytes]:
        """The payloads received so far."""
        return [envelope.payload for envelope in self.received]


class ActorTestKit:
    """The system under test and what it recorded. Made by :func:`open_test_system`."""

    def __init__(
        self,
        system: ActorSystem,
        capture: _Capture,
        events: MemoryObjectReceiveStream[Event],
        dead: MemoryObjectReceiveStream[DeadLetter],
    ) -> None:
        #: The running system: spawn supervisors, stop actors, read stats.
        self.system = system
        self._capture = capture
        self._events_stream = events
        self._dead_stream = dead
        self._events: list[Event] = []
        self._dead: list[DeadLetter] = []
        self._consumed: set[int] = set()
        #: Spawn a component actor under the root: :meth:`ActorSystem.spawn`.
        self.spawn = system.spawn

    # -- spawning -----------------------------------------------------------------

    async def probe(self, name: str, reply: bytes | Callable[[Envelope], bytes] = b"") -> Probe:
        """Spawn a :class:`Probe` at ``name`` and return it."""
        probe = Probe(reply)
        await self.system.spawn_native(name, probe)
        return probe

    async def settle(self) -> None:
        """Wait until every mailbox is empty and no handler is running."""
        await self.system.wait_idle()

    # -- what happened ------------------------------------------------------------

    def logs(self, actor: str | None = None) -> list[GuestLog]:
        """What guests logged or printed, oldest first; only ``actor``'s if given."""
        return [r for r in self._capture.records if actor is None or r.actor == actor]

    def log_messages(self, actor: str | None = None) -> list[str]:
        """Just the text of :meth:`logs`."""
        return [r.message for r in self.logs(actor)]

    @property
    def dead_letters(self) -> list[DeadLetter]:
        """Every dead letter so far."""
        while True:
            try:
                self._dead.append(self._dead_stream.receive_nowait())
            except anyio.WouldBlock:
                return list(self._dead)

    @property
    def events(self) -> list[Event]:
        """Every lifecycle event so far (started, crashed, halted, restarted, gave-up, stopped)."""
        self._drain_events()
        return list(self._events)

    def _drain_events(self) -> None:
        while True:
            try:
                self._events.append(self._events_stream.receive_nowait())
            except anyio.WouldBlock:
                return

    async def wait_for_event(self, kind: EventKind, address: str, *, timeout: float = 5.0) -> Event:
        """The first ``kind`` event of ``address`` not yet returned by this method,
        waiting up to ``timeout`` seconds for it (call twice to wait for two)."""
        with anyio.fail_after(timeout):
            while True:
                self._drain_events()
                for i, event in enumerate(self._events):
                    if i not in self._consumed and event.kind is kind and event.address == address:
                        self._consumed.add(i)
                        return event
                self._events.append(await self._events_stream.receive())


@asynccontextmanager
async def open_test_system(
    *,
    storage: str | os.PathLike[str] | StorageBackend | None = None,
    engine: Engine | None = None,
    **options: Any,
) -> AsyncIterator[ActorTestKit]:
    """A running :class:`ActorSystem` for one test, with recording switched on.

    ``storage`` defaults to a fresh in-memory store; pass a path for SQLite.
    ``engine`` lets tests share one engine (compiled components are cached on
    disk either way). Other keyword arguments go to :class:`ActorSystem`
    (``push_timeout``, ``request_timeout``, ``max_restarts``...). Guest log
    records at every level are captured while the block runs.
    """
    logger = logging.getLogger(_GUEST_LOGGER)
    capture = _Capture()
    level = logger.level
    logger.setLevel(1)
    logger.addHandler(capture)
    try:
        system = ActorSystem(
            storage=storage if storage is not None else MemoryStorage(), engine=engine, **options
        )
        async with system, AsyncExitStack() as stack:
            events = await stack.enter_async_context(system.events(buffer=math.inf))
            dead = await stack.enter_async_context(system.dead_letters(buffer=math.inf))
            yield ActorTestKit(system, capture, events, dead)
    finally:
        logger.removeHandler(capture)
        logger.setLevel(level)
