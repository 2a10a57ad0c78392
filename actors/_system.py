"""The actor system: the task group, the engine, the registry and the root supervisor."""

from __future__ import annotations

import itertools
import logging
import os
from collections import Counter, OrderedDict
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

from ..messaging import (
    Codec,
    DeliveryFailure,
    Envelope,
    InProcessTransport,
    Kind,
    NameTakenError,
    PayloadDecodeError,
    Registry,
    Transport,
)
from ..runtime import (
    Component,
    Engine,
    InvalidMessageError,
    Limits,
    Manifest,
    Outgoing,
    RequestError,
    RequestFailure,
    SQLiteStorage,
    StorageBackend,
    encode_metadata,
)
from ._cell import Cell, ComponentCell, NativeSource, RestartType
from ._errors import (
    ActorAppError,
    ActorCrashedError,
    ActorStoppedError,
    AskTimeoutError,
    MailboxFullError,
    SystemFailedError,
    UnknownActorError,
)
from ._observe import ActorStats, Broadcast, DeadLetter, DeadLetterReason, Event, EventKind
from ._supervisor import Backoff, Strategy, Supervisor

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Coroutine, Sequence
    from types import TracebackType

    from anyio.abc import TaskGroup
    from anyio.streams.memory import MemoryObjectReceiveStream

__all__ = ["ActorRef", "ActorSystem", "TypedRef"]

#: Native actors take payloads of any size; their senders and headers are
#: still checked (they may leave the process one day).
_ANY_PAYLOAD = Limits(memory=1, fuel=1, timeout=1, max_payload=2**62)

Req = TypeVar("Req")
Resp = TypeVar("Resp")

log = logging.getLogger("wasmactors.actors")

#: How many stopped actors' final stats an :class:`ActorSystem` keeps.
KEEP_STOPPED = 10_000


class _AskSlot:
    """A temporary endpoint that receives the one reply to an ask."""

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.reply: Envelope | None = None

    def deliver_nowait(self, envelope: Envelope) -> DeliveryFailure | None:
        if self.reply is None:
            self.reply = envelope
            self.event.set()
        return None

    async def deliver(self, envelope: Envelope) -> DeliveryFailure | None:
        return self.deliver_nowait(envelope)


class ActorRef:
    """A handle to an actor by address. Cheap; valid across restarts."""

    __slots__ = ("address", "system")

    def __init__(self, system: ActorSystem, address: str) -> None:
        self.system = system
        #: The actor's address.
        self.address = address

    def __repr__(self) -> str:
        return f"ActorRef({self.address!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other.address == self.address and other.system is self.system

    def __hash__(self) -> int:
        return hash(self.address)

    def _envelope(
        self,
        payload: bytes,
        kind: Kind,
        sender: str | None,
        headers: Sequence[tuple[str, str]],
        correlation_id: int | None = None,
    ) -> Envelope:
        cell = self.system.registry.lookup(self.address)
        # Untrusted input: checked here, in the caller, before anything is queued.
        limits = cell.limits if isinstance(cell, ComponentCell) else _ANY_PAYLOAD
        try:
            encode_metadata(limits, payload, sender, headers)
        except InvalidMessageError as exc:
            raise type(exc)(f"message to {self.address}: {exc}") from None
        return Envelope(
            recipient=self.address,
            payload=payload,
            kind=kind,
            sender=sender,
            correlation_id=correlation_id,
            headers=tuple(headers),
        )

    async def tell(
        self, payload: bytes, *, sender: str | None = None, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Queue a message, waiting for mailbox space (backpressure)."""
        envelope = self._envelope(payload, Kind.TELL, sender, headers)
        _raise_for(self.address, await self.system.transport.send(envelope, timeout=None))

    def tell_nowait(
        self, payload: bytes, *, sender: str | None = None, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Queue a message now, or raise :class:`MailboxFullError`."""
        envelope = self._envelope(payload, Kind.TELL, sender, headers)
        _raise_for(self.address, self.system.transport.send_nowait(envelope))

    async def ask(self, payload: bytes, *, timeout: float, headers: Sequence[tuple[str, str]] = ()) -> bytes:
        """Send a request and wait for the reply bytes (``b""`` when the handler
        returned none). Raises :class:`AskTimeoutError`, :class:`ActorAppError`,
        :class:`ActorCrashedError`, :class:`ActorStoppedError` or
        :class:`UnknownActorError`."""
        system = self.system
        ask_id = next(system.ask_ids)
        reply_to = f"$ask/{ask_id}"
        slot = _AskSlot()
        envelope = self._envelope(payload, Kind.REQUEST, reply_to, headers, ask_id)
        system.registry.register(reply_to, slot)
        try:
            with anyio.fail_after(timeout):
                _raise_for(self.address, await system.transport.send(envelope, timeout=None))
                await slot.event.wait()
        except TimeoutError:
            raise AskTimeoutError(f"{self.address} did not answer within {timeout:g} s") from None
        finally:
            system.registry.unregister(reply_to)
        reply = slot.reply
        assert reply is not None
        if reply.error is not None:
            raise _error_for(self.address, reply.error)
        return reply.payload

    def stats(self) -> ActorStats:
        """A snapshot of the actor's counters."""
        return self.system.stats(self.address)

    def typed(self, request: Codec[Req], reply: Codec[Resp]) -> TypedRef[Req, Resp]:
        """This actor with typed messages: values are encoded with ``request``
        and replies decoded (and validated) with ``reply``::

            counter = ref.typed(Codec(Command), Codec(Total))
            total = await counter.ask(Add(5), timeout=1.0)  # a Total
        """
        return TypedRef(self, request, reply)


class TypedRef(Generic[Req, Resp]):
    """An :class:`ActorRef` that speaks values instead of bytes. Encoding
    errors raise :class:`~wasmactors.messaging.PayloadEncodeError` before
    anything is sent; a reply that fails validation raises
    :class:`~wasmactors.messaging.PayloadDecodeError` naming the actor."""

    __slots__ = ("ref", "reply_codec", "request_codec")

    def __init__(self, ref: ActorRef, request: Codec[Req], reply: Codec[Resp]) -> None:
        self.ref = ref
        self.request_codec = request
        self.reply_codec = reply

    def __repr__(self) -> str:
        return (
            f"TypedRef({self.ref.address!r}, {self.request_codec.type_name} -> {self.reply_codec.type_name})"
        )

    @property
    def address(self) -> str:
        return self.ref.address

    async def tell(self, message: Req, *, headers: Sequence[tuple[str, str]] = ()) -> None:
        await self.ref.tell(self.request_codec.encode(message), headers=headers)

    def tell_nowait(self, message: Req, *, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.ref.tell_nowait(self.request_codec.encode(message), headers=headers)

    async def ask(self, message: Req, *, timeout: float, headers: Sequence[tuple[str, str]] = ()) -> Resp:
        payload = await self.ref.ask(self.request_codec.encode(message), timeout=timeout, headers=headers)
        try:
            return self.reply_codec.decode(payload)
        except PayloadDecodeError as exc:
            raise PayloadDecodeError(f"reply from {self.ref.address}: {exc}") from exc


def _raise_for(address: str, failure: DeliveryFailure | None) -> None:
    if failure is None:
        return
    if failure is DeliveryFailure.UNKNOWN_RECIPIENT:
        raise UnknownActorError(f"no actor at {address!r}")
    if failure is DeliveryFailure.MAILBOX_FULL:
        raise MailboxFullError(f"{address}'s mailbox is full")
    raise ActorStoppedError(f"{address} is stopped")


def _error_for(address: str, error: RequestError) -> Exception:
    reason = error.reason
    if reason is RequestFailure.APP_ERROR:
        return ActorAppError(address, error.detail)
    if reason is RequestFailure.CRASHED:
        return ActorCrashedError(address, error.detail)
    if reason is RequestFailure.UNKNOWN_RECIPIENT:
        return UnknownActorError(f"no actor at {address!r}")
    if reason is RequestFailure.TIMEOUT:
        return AskTimeoutError(f"{address} timed out")
    return ActorStoppedError(f"{address} stopped before answering")


class ActorSystem:
    """Runs actors under supervision, on asyncio or trio::

        async with ActorSystem(storage="state.db") as system:
            sup = await system.spawn_supervisor("workers", strategy=ONE_FOR_ONE, max_restarts=5, within=10.0)
            counter = await sup.spawn("counter", Manifest.load("examples/counter/component.toml"))
            await counter.tell(b"add 5")
            reply = await counter.ask(b"get", timeout=1.0)

    Leaving the block stops every actor gracefully: intake stops, mailboxes
    drain until ``shutdown_timeout``, then what is left is cancelled. No task,
    thread or Store outlives the block.
    """

    def __init__(
        self,
        *,
        storage: str | os.PathLike[str] | StorageBackend | None = None,
        engine: Engine | None = None,
        workers: int | None = None,
        turn_size: int = 64,
        mailbox_size: int = 1024,
        push_timeout: float = 1.0,
        request_timeout: float = 5.0,
        shutdown_timeout: float = 5.0,
        max_restarts: int = 3,
        within: float = 5.0,
        transport: Transport | None = None,
    ) -> None:
        self._storage_arg = storage
        self._engine_arg = engine
        #: Worker threads running wasm at once (default: CPU count).
        self.workers = workers or os.cpu_count() or 2
        #: Messages one worker-thread hop may handle for one actor.
        self.turn_size = turn_size
        self.mailbox_size = mailbox_size
        #: How long actor-to-actor delivery waits for mailbox space before the
        #: message becomes a dead letter.
        self.push_timeout = push_timeout
        #: Timeout of a guest `request` that asked for the default (0).
        self.request_timeout = request_timeout
        self.shutdown_timeout = shutdown_timeout
        self.registry = Registry()
        self.transport: Transport = transport or InProcessTransport(self.registry)
        self.ask_ids = itertools.count(1)
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
        self.limiter = anyio.CapacityLimiter(self.workers)
        max_restarts, within = self._root_intensity
        self.root = Supervisor(self, None, None, max_restarts=max_restarts, within=within)
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        return self

    async def __aexit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        assert self._tg is not None
        try:
            with anyio.CancelScope(shield=True):
                await self.root.stop(drain=True, deadline=anyio.current_time() + self.shutdown_timeout)
            self._tg.cancel_scope.cancel()
            try:
                await self._tg.__aexit__(typ, exc, tb)
            except BaseExceptionGroup as group:
                # The task group wraps the block's own error (a failed spawn):
                # let it propagate alone, as Python would without us.
                if exc is None or group.subgroup(lambda e: _other(e, exc)) is not None:
                    raise
        finally:
            self._events.close()
            self._dead.close()
            if self._own_storage and self.storage is not None:
                self.storage.close()
            if self._own_engine:
                self.engine.close()
        if self._failure is not None and (exc is None or isinstance(exc, anyio.get_cancelled_exc_class())):
            raise self._failure
        return None

    def fail(self, error: SystemFailedError) -> None:
        """The root supervisor gave up: cancel everything; the block raises ``error``."""
        log.error("%s", error)
        self._failure = error
        if self._tg is not None:
            self._tg.cancel_scope.cancel()

    def start_soon(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        if self._tg is None:
            raise RuntimeError("the actor system is not running; use `async with ActorSystem()`")
        self._tg.start_soon(fn, *args)

    # -- spawning ---------------------------------------------------------------

    def reserve(self, address: str) -> None:
        if address in self._names or address in self.registry:
            raise NameTakenError(f"an actor named {address!r} already exists")
        self._names.add(address)

    def release_name(self, address: str) -> None:
        self._names.discard(address)

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

    async def start_cell(self, supervisor: Supervisor, cell: Cell) -> ActorRef:
        """Register a new child cell under ``supervisor`` and start its loop."""
        self.reserve(cell.address)
        try:
            await cell.start()
        except BaseException:
            self.release_name(cell.address)
            raise
        self.registry.register(cell.address, cell)
        self._cells[cell.address] = cell
        supervisor.children.append(cell)
        self.start_soon(self._run_cell, cell)
        cell.scheduled = True
        self.emit(EventKind.STARTED, cell.address)
        return ActorRef(self, cell.address)

    async def _run_cell(self, cell: Cell) -> None:
        try:
            await cell.run()
        finally:
            self._cells.pop(cell.address, None)
            self.release_name(cell.address)
            self.stopped_stats[cell.address] = cell.stats.snapshot(cell.address, 0, cell.mailbox.high_water)
            self.stopped_stats.move_to_end(cell.address)
            if len(self.stopped_stats) > KEEP_STOPPED:
                self.stopped_stats.popitem(last=False)

    async def spawn(
        self,
        name: str,
        source: Manifest | Component | str | os.PathLike[str],
        *,
        limits: Limits | None = None,
        mailbox_size: int | None = None,
        restart: RestartType = RestartType.PERMANENT,
    ) -> ActorRef:
        """Start a component actor under the root supervisor."""
        return await self.root.spawn(name, source, limits=limits, mailbox_size=mailbox_size, restart=restart)

    async def spawn_native(
        self,
        name: str,
        behaviour: NativeSource,
        *,
        mailbox_size: int | None = None,
        restart: RestartType = RestartType.PERMANENT,
    ) -> ActorRef:
        """Start a host-native actor under the root: an object with ``async handle_message``
        (its state survives restarts) or a factory such as its class (a fresh object per restart)."""
        return await self.root.spawn_native(name, behaviour, mailbox_size=mailbox_size, restart=restart)

    async def spawn_supervisor(
        self,
        name: str,
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: Backoff | None = None,
        restart: RestartType = RestartType.PERMANENT,
    ) -> Supervisor:
        """A supervisor under the root."""
        return await self.root.spawn_supervisor(
            name,
            strategy=strategy,
            max_restarts=max_restarts,
            within=within,
            backoff=backoff,
            restart=restart,
        )

    def supervisor(self, address: str) -> Supervisor:
        """The supervisor at ``address`` (``""``: the root), to spawn under it later."""
        node = self.root
        for name in filter(None, address.split("/")):
            found = next(
                (
                    c
                    for c in node.children
                    if isinstance(c, Supervisor) and c.address == node.child_address(name)
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
        """Stop an actor normally (drained, not restarted) and remove it from its supervisor."""
        address = ref.address if isinstance(ref, ActorRef) else ref
        cell = self._cells.get(address)
        if cell is None:
            raise UnknownActorError(f"no actor at {address!r}")
        await cell.supervisor.remove(cell, deadline=anyio.current_time() + self.shutdown_timeout)

    # -- delivery -------------------------------------------------------------

    async def dispatch(self, cell: ComponentCell, outgoing: Outgoing) -> None:
        """Deliver one message a guest sent, after its handler succeeded."""
        request = outgoing.request_id is not None
        envelope = Envelope(
            recipient=outgoing.to,
            payload=outgoing.payload,
            kind=Kind.REQUEST if request else Kind.TELL,
            sender=cell.address,
            correlation_id=outgoing.request_id,
        )
        if request:
            assert outgoing.request_id is not None
            cell.expect_reply(outgoing.request_id, outgoing.timeout or self.request_timeout)
        failure = await self.transport.send(envelope, timeout=self.push_timeout)
        if failure is None:
            return
        self.undeliverable(envelope, DeadLetterReason(failure.value), "")
        if request:
            reason = {
                DeliveryFailure.UNKNOWN_RECIPIENT: RequestFailure.UNKNOWN_RECIPIENT,
                DeliveryFailure.MAILBOX_FULL: RequestFailure.MAILBOX_FULL,
            }.get(failure, RequestFailure.STOPPED)
            cell.deliver_nowait(
                Envelope(
                    recipient=cell.address,
                    kind=Kind.CALLBACK,
                    correlation_id=outgoing.request_id,
                    error=RequestError(reason, outgoing.to),
                )
            )

    # -- observability ----------------------------------------------------------

    def undeliverable(self, envelope: Envelope, reason: DeadLetterReason, detail: str) -> None:
        """Record a dead letter: never a silent drop."""
        if envelope.kind is Kind.REPLY and envelope.recipient.startswith("$ask/"):
            reason_text = "an ask's reply after its timeout"
        else:
            reason_text = detail
        self.dead_letter_counts[reason.value] += 1
        self._dead.publish(DeadLetter(envelope, reason, reason_text))
        log.debug("dead letter to %s (%s): %s", envelope.recipient, reason, reason_text)

    def emit(self, kind: EventKind, address: str, detail: str = "", backtrace: tuple[str, ...] = ()) -> None:
        self._events.publish(Event(kind, address, detail, backtrace))
        log.info("%s %s%s", address, kind, f": {detail}" if detail else "", extra={"actor": address})

    @asynccontextmanager
    async def events(self, buffer: float = 1024) -> AsyncIterator[MemoryObjectReceiveStream[Event]]:
        """Subscribe to lifecycle events (started, crashed, restarted, gave-up,
        stopped). A subscriber ``buffer`` items behind misses the next ones
        rather than slowing the system."""
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
