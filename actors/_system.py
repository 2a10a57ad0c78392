"""The actor system: the task group, the engine, the registry and the root supervisor."""

from __future__ import annotations

import itertools
import logging
import math
import os
import time
from collections import Counter, OrderedDict
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import anyio

from ..messaging import (
    Cluster,
    ClusterTransport,
    Envelope,
    InProcessTransport,
    NameTakenError,
    Registry,
    Transport,
)
from ..runtime import (
    Component,
    Engine,
    Limits,
    Manifest,
    SQLiteStorage,
    StorageBackend,
)
from ._cell import Cell, ExitKind, RestartType
from ._cluster import ActorSink
from ._deadlines import Deadlines
from ._env import CellEnv
from ._errors import ActorStoppedError, SystemFailedError, UnknownActorError
from ._monitor import Monitor
from ._observe import ActorStats, Broadcast, DeadLetter, DeadLetterReason, Event, EventKind
from ._ref import ActorRef
from ._supervisor import Backoff, Strategy, Supervisor
from ._workers import Workers

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from types import TracebackType

    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream

    from ._native import NativeSource

__all__ = ["ActorSystem"]

log = logging.getLogger("wasmactors.actors")

#: How many stopped actors' final stats an :class:`ActorSystem` keeps.
KEEP_STOPPED = 10_000


class ActorSystem:
    """Runs actors under supervision, on asyncio or trio::

        async with ActorSystem(storage="state.db") as system:
            sup = await system.spawn_supervisor("workers", strategy=ONE_FOR_ONE, max_restarts=5, within=10.0)
            counter = await sup.spawn("counter", Manifest.load("examples/counter/component.toml"))
            await counter.tell(b"add 5")
            reply = await counter.ask(b"get", timeout=1.0)

    Leaving the block stops every actor gracefully, last started first: intake
    stops, the mailbox drains, and an actor still running after its shutdown
    time (``shutdown_timeout`` unless its spawn said otherwise) is cancelled.
    Every message still queued becomes a dead letter and every request still
    queued is answered ``stopped``. No task, thread or Store outlives the block.
    """

    def __init__(
        self,
        *,
        storage: str | os.PathLike[str] | StorageBackend | None = None,
        engine: Engine | None = None,
        workers: int | None = None,
        turn_size: int = 64,
        turn_time: float = 0.01,
        mailbox_size: int = 1024,
        push_timeout: float = 1.0,
        request_timeout: float = 5.0,
        shutdown_timeout: float = 5.0,
        max_restarts: int = 3,
        within: float = 5.0,
        transport: Transport | None = None,
        cluster: Cluster | None = None,
    ) -> None:
        if turn_size < 1 or not turn_time > 0:
            raise ValueError("turn_size must be >= 1 and turn_time > 0")
        if cluster is not None and transport is not None:
            raise ValueError("give a cluster or a transport, not both")
        self._storage_arg = storage
        self._engine_arg = engine
        #: Worker threads running wasm at once (default: CPU count).
        self.workers = workers or os.cpu_count() or 2
        #: Messages one worker-thread hop may handle for one actor.
        self.turn_size = turn_size
        #: Seconds after which a turn ends at the next message boundary, so a
        #: slow actor gives its worker thread back (fair turns).
        self.turn_time = turn_time
        self.mailbox_size = mailbox_size
        #: How long actor-to-actor delivery waits for mailbox space before the
        #: message becomes a dead letter.
        self.push_timeout = push_timeout
        #: Timeout of a guest `request` that asked for the default (0).
        self.request_timeout = request_timeout
        #: Default shutdown time of an actor (seconds before a stop cancels it).
        self.shutdown_timeout = shutdown_timeout
        self.registry = Registry()
        #: This node's cluster transport, when the system joins a cluster.
        self.cluster: ClusterTransport | None = None
        self._monitors: dict[str, list[Monitor]] = {}
        if cluster is not None:
            self.cluster = transport = ClusterTransport(
                cluster, self.registry, ActorSink(self.registry, self._dead_letter)
            )
            transport.names_changed = self._check_monitors
        self.transport: Transport = transport or InProcessTransport(self.registry)
        #: Refs deliver straight to the registry's endpoints (no custom transport).
        self._direct = transport is None
        self._ask_ids = itertools.count(1)
        self._root_intensity = (max_restarts, within)
        self._names: set[str] = set()
        self._cells: dict[str, Cell] = {}
        self._components: dict[Path, Component] = {}
        self._events: Broadcast[Event] = Broadcast()
        self._dead: Broadcast[DeadLetter] = Broadcast()
        #: Dead letters so far, by reason.
        self.dead_letter_counts: Counter[str] = Counter()
        #: The last stats of actors that stopped, by address, oldest first
        #: (at most :data:`KEEP_STOPPED`), for reports made after shutdown.
        self.stopped_stats: OrderedDict[str, ActorStats] = OrderedDict()
        self._failure: SystemFailedError | None = None
        self._tg: TaskGroup | None = None

    # -- lifetime -------------------------------------------------------------

    async def __aenter__(self) -> ActorSystem:
        self.engine = self._engine_arg or Engine()
        self._own_engine = self._engine_arg is None
        storage = self._storage_arg
        if isinstance(storage, str | os.PathLike):
            self.storage: StorageBackend | None = SQLiteStorage(Path(storage))
            self._own_storage = True
        else:
            self.storage = storage
            self._own_storage = False
        self._workers = Workers(self.workers).__enter__()
        self._deadlines = Deadlines()
        self._env = CellEnv(
            transport=self.transport,
            registry=self.registry,
            workers=self._workers,
            storage=self.storage,
            turn_size=self.turn_size,
            turn_time=self.turn_time,
            push_timeout=self.push_timeout,
            request_timeout=self.request_timeout,
            dead_letter=self._dead_letter,
            emit=self._emit,
            deadlines=self._deadlines,
            ref=self.ref,
            stopped=self._stopped,
        )
        max_restarts, within = self._root_intensity
        self.root = Supervisor(self, None, None, max_restarts=max_restarts, within=within)
        self._root_done = anyio.Event()
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        self._tg.start_soon(self._deadlines.run)
        try:
            if self.cluster is not None:
                outbox = self.storage if isinstance(self.storage, SQLiteStorage) else None
                await self.cluster.start(self._tg, outbox=outbox)
        except BaseException:
            self._tg.cancel_scope.cancel()
            try:
                await self._tg.__aexit__(None, None, None)
            finally:
                self._close_resources()
            raise
        await self._tg.start(self._run_root)
        return self

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        try:
            with anyio.CancelScope(shield=True):
                if not self._root_done.is_set():
                    self.root._request_stop(drain=True)
                    await self._root_done.wait()
                self.root._close()
                if self.cluster is not None:
                    await self.cluster.aclose()
            self._tg.cancel_scope.cancel()
            try:
                await self._tg.__aexit__(typ, exc, tb)
            except BaseExceptionGroup as group:
                # The task group wraps the block's own error (a failed spawn):
                # let it propagate alone, as Python would without us.
                if exc is None or group.subgroup(lambda e: _other(e, exc)) is not None:
                    raise
        finally:
            self._close_resources()
        if self._failure is not None and (exc is None or isinstance(exc, anyio.get_cancelled_exc_class())):
            raise self._failure
        return None

    def _close_resources(self) -> None:
        self._workers.close()
        self._events.close()
        self._dead.close()
        if self._own_storage and self.storage is not None:
            self.storage.close()
        if self._own_engine:
            self.engine.close()

    async def _run_root(self, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        try:
            exit = await self.root._run(task_status=task_status)
        finally:
            self._root_done.set()
        if exit.kind is ExitKind.GAVE_UP:
            # Everything is halted: account for what is queued, then end the block.
            self.root._close()
            self._failure = SystemFailedError(f"the root supervisor gave up: {exit.detail}")
            log.error("%s", self._failure)
            assert self._tg is not None
            self._tg.cancel_scope.cancel()

    # -- spawning ---------------------------------------------------------------

    def _reserve(self, address: str) -> None:
        if address in self._names or address in self.registry:
            raise NameTakenError(f"an actor named {address!r} already exists")
        self._names.add(address)

    def _release_name(self, address: str) -> None:
        self._names.discard(address)
        if self.cluster is not None:
            self.cluster.release(address)

    async def _claim(self, address: str) -> None:
        """Own an actor's name in the cluster (no-op without one)."""
        if self.cluster is not None:
            await self.cluster.claim(address)

    async def _announce(self, address: str) -> None:
        """Receive for a registered actor from the cluster (no-op without one)."""
        if self.cluster is not None:
            await self.cluster.announce(address)

    def _register(self, cell: Cell) -> None:
        self.registry.register(cell.address, cell)
        self._cells[cell.address] = cell

    def _stopped(self, address: str, stats: ActorStats) -> None:
        self._cells.pop(address, None)
        for monitor in self._monitors.pop(address, ()):
            monitor._fire("stopped")
        self._release_name(address)
        self.stopped_stats[address] = stats
        self.stopped_stats.move_to_end(address)
        if len(self.stopped_stats) > KEEP_STOPPED:
            self.stopped_stats.popitem(last=False)

    def monitor(self, address: str) -> Monitor:
        """Watch ``address``: the monitor is down once no live actor has the name,
        here or on any node of the cluster (stopped for good, released at its
        node's stop, its node's lease lapsed, or no such actor: ``noproc``)."""
        monitor = Monitor(address)
        local = address in self._cells
        remote = not local and self.cluster is not None and self.cluster.leases.owner(address) is not None
        if not (local or remote):
            monitor._fire("noproc")
            return monitor
        self._monitors.setdefault(address, []).append(monitor)
        return monitor

    def _check_monitors(self) -> None:
        """After a change in the cluster's names (and once a second): remote names
        that no live lease holds any more."""
        cluster = self.cluster
        if cluster is None:
            return
        for address in [a for a in self._monitors if a not in self._cells]:
            owner = cluster.leases.owner(address)
            if owner is None:
                for monitor in self._monitors.pop(address):
                    monitor._fire("its node released it or its lease lapsed")

    async def load(
        self, source: Manifest | Component | str | os.PathLike[str]
    ) -> tuple[Component, Limits | None]:
        """A compiled component (cached per path for this system) and the manifest's limits."""
        if isinstance(source, Component):
            return source, None
        manifest = source if isinstance(source, Manifest) else None
        path = Path(await anyio.Path(source.component if isinstance(source, Manifest) else source).resolve())
        component = self._components.get(path)
        if component is None:
            component = await anyio.to_thread.run_sync(self.engine.load, path)
            self._components[path] = component
        return component, manifest.limits if manifest else None

    async def spawn(
        self,
        name: str,
        source: Manifest | Component | str | os.PathLike[str],
        *,
        limits: Limits | None = None,
        mailbox_size: int | None = None,
        restart: RestartType = RestartType.PERMANENT,
        shutdown: float | None = None,
        durable: bool = False,
    ) -> ActorRef:
        """Start a component actor under the root supervisor (see :meth:`Supervisor.spawn`)."""
        return await self.root.spawn(
            name,
            source,
            limits=limits,
            mailbox_size=mailbox_size,
            restart=restart,
            shutdown=shutdown,
            durable=durable,
        )

    async def spawn_native(
        self,
        name: str,
        behaviour: NativeSource,
        *,
        mailbox_size: int | None = None,
        restart: RestartType = RestartType.PERMANENT,
        shutdown: float | None = None,
    ) -> ActorRef:
        """Start a host-native actor under the root: an object with ``async handle_message``
        (its state survives restarts) or a factory such as its class (a fresh object per restart)."""
        return await self.root.spawn_native(
            name, behaviour, mailbox_size=mailbox_size, restart=restart, shutdown=shutdown
        )

    async def spawn_supervisor(
        self,
        name: str,
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: Backoff | None = None,
        restart: RestartType = RestartType.PERMANENT,
        shutdown: float = math.inf,
    ) -> Supervisor:
        """A supervisor under the root."""
        return await self.root.spawn_supervisor(
            name,
            strategy=strategy,
            max_restarts=max_restarts,
            within=within,
            backoff=backoff,
            restart=restart,
            shutdown=shutdown,
        )

    def supervisor(self, address: str) -> Supervisor:
        """The supervisor at ``address`` (``""``: the root), to spawn under it later."""
        node = self.root
        for name in filter(None, address.split("/")):
            found = next(
                (
                    c
                    for c in node.children
                    if isinstance(c, Supervisor) and c.address == node._child_address(name)
                ),
                None,
            )
            if found is None:
                raise UnknownActorError(f"no supervisor at {address!r}")
            node = found
        return node

    def ref(self, address: str) -> ActorRef:
        """A reference by address (it may name no actor yet: calls then raise UnknownActorError)."""
        return ActorRef(self, address)

    async def stop(self, ref: ActorRef | str) -> None:
        """Stop an actor normally (drained within its shutdown time, then cancelled)
        and remove it from its supervisor: it is not restarted, whatever its restart type."""
        address = ref.address if isinstance(ref, ActorRef) else ref
        cell = self._cells.get(address)
        if cell is None:
            raise UnknownActorError(f"no actor at {address!r}")
        parent = self.supervisor(address.rpartition("/")[0])
        if cell not in parent.children:
            raise ActorStoppedError(f"{address} is stopping")
        await parent._remove(cell)

    # -- observability ----------------------------------------------------------

    def _dead_letter(self, envelope: Envelope, reason: DeadLetterReason, detail: str) -> None:
        """Record a dead letter: never a silent drop."""
        self.dead_letter_counts[reason.value] += 1
        self._dead.publish(DeadLetter(envelope, reason, detail))
        log.debug("dead letter to %s (%s): %s", envelope.recipient, reason, detail)

    def _emit(
        self,
        kind: EventKind,
        address: str,
        detail: str = "",
        backtrace: tuple[str, ...] = (),
        message: str = "",
    ) -> None:
        self._events.publish(Event(kind, address, detail, backtrace, time.time(), message))
        log.info("%s %s%s", address, kind, f": {detail}" if detail else "", extra={"actor": address})

    @asynccontextmanager
    async def events(self, buffer: float = 1024) -> AsyncIterator[MemoryObjectReceiveStream[Event]]:
        """Subscribe to lifecycle events (started, crashed, halted, restarted,
        gave-up, stopped), each with its time. A subscriber ``buffer`` items
        behind misses the next ones rather than slowing the system."""
        async with self._events.subscribe(buffer) as stream:
            yield stream

    @asynccontextmanager
    async def dead_letters(
        self, buffer: float = 1024
    ) -> AsyncIterator[MemoryObjectReceiveStream[DeadLetter]]:
        """Subscribe to dead letters (the counters in :attr:`dead_letter_counts` miss none)."""
        async with self._dead.subscribe(buffer) as stream:
            yield stream

    def stats(self, address: str) -> ActorStats:
        cell = self._cells.get(address)
        if cell is None:
            raise UnknownActorError(f"no actor at {address!r}")
        return cell.stats.snapshot(address, len(cell.mailbox), cell.mailbox.high_water)

    def statistics(self) -> dict[str, ActorStats]:
        """Every live actor's stats, by address."""
        return {address: self.stats(address) for address in sorted(self._cells)}

    def busy(self) -> list[str]:
        """Addresses of actors with work in hand: queued messages, a running
        turn, or a request of their own still waiting for its answer."""
        return [address for address, cell in self._cells.items() if cell.busy]

    async def wait_idle(self) -> None:
        """Wait until every actor's mailbox is empty and no turn is running."""
        while True:
            busy = [c for c in self._cells.values() if c.working]
            if not busy:
                return
            await busy[0].wait_idle()
            await anyio.lowlevel.checkpoint()


def _other(error: BaseException, own: BaseException) -> bool:
    """A leaf of a task group's error that is neither the block's own nor a cancellation."""
    if isinstance(error, BaseExceptionGroup):
        return False
    return error is not own and not isinstance(error, anyio.get_cancelled_exc_class())
