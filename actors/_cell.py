"""Actor cells: an address, a mailbox, a behaviour, and the loop between them.

A component cell runs its guest on worker threads, one *turn* per thread hop:
the loop takes up to ``turn_size`` queued messages and hands them to one
``anyio.to_thread.run_sync`` call, which runs them one after another on the
actor's Store. After the turn, back on the event loop, the cell delivers what
the handlers sent, answers requests, and reports a crash to its supervisor.
The mailbox belongs to the cell, so a restart (a new instance from the
compiled component) keeps the queued messages.
"""

from __future__ import annotations

import enum
import logging
import time
from typing import TYPE_CHECKING, Protocol, Union

import anyio

from ..messaging import DeliveryFailure, Envelope, Kind
from ..runtime import (
    AppError,
    CallResult,
    Component,
    Crash,
    CrashKind,
    HostContext,
    Instance,
    InvalidMessageError,
    Limits,
    PayloadTooLargeError,
    RequestError,
    RequestFailure,
    Success,
)
from ._mailbox import Mailbox
from ._observe import DeadLetterReason, EventKind, StatsRecorder

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from ._supervisor import Supervisor
    from ._system import ActorSystem

__all__ = ["Cell", "ComponentCell", "NativeActor", "NativeCell", "NativeSource", "Reject", "RestartType"]

log = logging.getLogger("wasmactors.actors")


class RestartType(enum.StrEnum):
    """When a supervisor restarts a child (OTP's restart types)."""

    #: Always restarted.
    PERMANENT = "permanent"
    #: Restarted only after an abnormal exit (a crash), not after a normal stop.
    TRANSIENT = "transient"
    #: Never restarted: a crash removes it.
    TEMPORARY = "temporary"


class Reject(Exception):
    """Raised by a native actor's handler to answer with an application error."""


class NativeActor(Protocol):
    """A host-native actor: any object with this method."""

    async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None: ...


#: What ``spawn_native`` takes: a behaviour object, kept across restarts, or a
#: factory (a class or any other callable without ``handle_message``) called at
#: start and again at every restart, so a restart begins from fresh state as in OTP.
NativeSource = Union[NativeActor, "Callable[[], NativeActor]"]


def _factory(source: NativeSource) -> Callable[[], NativeActor] | None:
    if isinstance(source, type) or not hasattr(source, "handle_message"):
        if not callable(source):
            raise TypeError(f"{source!r} is neither a native actor (no handle_message) nor a factory")
        return source
    return None


class NativeContext:
    """What a native handler can do: its address, and messaging through the system."""

    def __init__(self, system: ActorSystem, address: str) -> None:
        self.system = system
        self.address = address

    async def tell(self, to: str, payload: bytes) -> None:
        await self.system.ref(to).tell(payload, sender=self.address)

    async def ask(self, to: str, payload: bytes, *, timeout: float) -> bytes:
        return await self.system.ref(to).ask(payload, timeout=timeout)


class _Status(enum.Enum):
    RUNNING = "running"
    HALTED = "halted"  # paused by its supervisor (gave up, awaiting a restart)
    STOPPING = "stopping"
    STOPPED = "stopped"


class Cell:
    """The parts every actor has: address, mailbox, stats and the loop."""

    def __init__(
        self,
        system: ActorSystem,
        address: str,
        supervisor: Supervisor,
        *,
        mailbox_size: int,
        restart: RestartType,
    ) -> None:
        self.system = system
        self.address = address
        self.supervisor = supervisor
        self.restart_type = restart
        self.mailbox: Mailbox[Envelope] = Mailbox(mailbox_size)
        self.stats = StatsRecorder()
        self.status = _Status.RUNNING
        self._control: list[Callable[[], Awaitable[None]]] = []
        self._signal = anyio.Event()
        #: Set when the loop task has been started (it may not have run yet).
        self.scheduled = False
        self._idle = anyio.Event()
        self._idle.set()  # nothing queued yet
        self._finished = anyio.Event()
        self._cancel = anyio.CancelScope()

    # -- endpoint protocol (messaging.Endpoint) ---------------------------------

    def deliver_nowait(self, envelope: Envelope) -> DeliveryFailure | None:
        if self.status in (_Status.STOPPING, _Status.STOPPED) and envelope.kind not in (
            Kind.REPLY,
            Kind.CALLBACK,
        ):
            return DeliveryFailure.STOPPED
        try:
            self.mailbox.put_nowait(envelope, force=envelope.kind in (Kind.REPLY, Kind.CALLBACK))
        except anyio.WouldBlock:
            return DeliveryFailure.MAILBOX_FULL
        except anyio.ClosedResourceError:
            return DeliveryFailure.STOPPED
        return None

    async def deliver(self, envelope: Envelope) -> DeliveryFailure | None:
        if self.status in (_Status.STOPPING, _Status.STOPPED):
            return DeliveryFailure.STOPPED
        try:
            await self.mailbox.put(envelope)
        except anyio.ClosedResourceError:
            return DeliveryFailure.STOPPED
        return None

    # -- lifecycle -------------------------------------------------------------

    async def start(self) -> None:
        """Prepare the behaviour (instantiate); raise if it cannot start."""

    async def run(self) -> None:
        """The actor's loop, run as a task of the system."""
        try:
            with self._cancel:
                while True:
                    await self._run_control()
                    if self.status is _Status.STOPPED:
                        break
                    if self.status is _Status.STOPPING and not len(self.mailbox):
                        break
                    if self.status is _Status.HALTED:
                        self._idle.set()
                        await self._signal.wait()
                        self._signal = anyio.Event()
                        continue
                    batch = await self.mailbox.take(self.system.turn_size)
                    if not batch:
                        continue  # woken for a control action or a stop
                    if self._idle.is_set():
                        self._idle = anyio.Event()
                    await self.process(batch)
                    if not len(self.mailbox):
                        self._idle.set()
        finally:
            await self._finish()

    async def _run_control(self) -> None:
        while self._control:
            await self._control.pop(0)()

    def request_control(self, action: Callable[[], Awaitable[None]]) -> None:
        """Run ``action`` on the loop between turns."""
        self._control.append(action)
        self._wake()

    def _wake(self) -> None:
        self._signal.set()
        self.mailbox.wake()

    @property
    def loop_alive(self) -> bool:
        return self.scheduled and not self._finished.is_set()

    def end(self) -> None:
        """Make the loop finish after the current turn (called from that loop)."""
        self.status = _Status.STOPPED
        self._wake()

    async def process(self, batch: list[Envelope]) -> None:
        raise NotImplementedError

    async def restart(self) -> None:
        """Replace the behaviour's state with a fresh one (the mailbox stays)."""
        self.stats.restarts += 1

    async def halt(self) -> None:
        """Stop handling messages and release the behaviour; the mailbox stays."""
        self.status = _Status.HALTED

    async def resume(self) -> None:
        await self.restart()
        if self.status is _Status.HALTED:
            self.status = _Status.RUNNING
        self._wake()

    async def stop(self, *, drain: bool, deadline: float) -> None:
        """Stop: refuse new messages, optionally drain the queue until ``deadline``, then end."""
        if self.status is _Status.STOPPED:
            return
        if drain and self.status is _Status.RUNNING:
            self.status = _Status.STOPPING
        else:
            self.status = _Status.STOPPED
        if not self.scheduled:
            await self._finish()
            return
        self._wake()
        with anyio.move_on_at(deadline):
            await self._finished.wait()
        self._cancel.cancel()
        await self._finished.wait()

    async def _finish(self) -> None:
        if self._finished.is_set():
            return
        self.status = _Status.STOPPED
        self.system.registry.unregister(self.address)
        with anyio.CancelScope(shield=True):
            for envelope in self.mailbox.close():
                self.system.undeliverable(envelope, DeadLetterReason.STOPPED, "the actor stopped")
                # A requester learns now, not at its timeout, that no answer will come.
                await self.reply(envelope, RequestError(RequestFailure.STOPPED, self.address))
            await self.release()
        self.system.emit(EventKind.STOPPED, self.address)
        self._finished.set()

    async def release(self) -> None:
        """Free the behaviour's resources (the Store)."""

    async def wait_idle(self) -> None:
        await self._idle.wait()

    @property
    def working(self) -> bool:
        """Queued messages or a running turn."""
        return len(self.mailbox) > 0 or not self._idle.is_set()

    @property
    def busy(self) -> bool:
        """Work in hand: :attr:`working`, or (for components) a request of its own awaiting an answer."""
        return self.working

    # -- shared result handling ------------------------------------------------

    async def reply(self, request: Envelope, outcome: bytes | RequestError) -> None:
        """Answer a request envelope to its sender."""
        if request.kind is not Kind.REQUEST or request.sender is None:
            return
        payload, error = (b"", outcome) if isinstance(outcome, RequestError) else (outcome, None)
        answer = Envelope(
            recipient=request.sender,
            kind=Kind.REPLY,
            sender=self.address,
            correlation_id=request.correlation_id,
            payload=payload,
            error=error,
        )
        failure = self.system.transport.send_nowait(answer)
        if failure is not None:
            self.system.undeliverable(answer, DeadLetterReason(failure.value), "the requester is gone")

    async def crashed(self, envelope: Envelope, crash: Crash) -> None:
        self.stats.crashes[crash.kind.value] += 1
        self.system.undeliverable(envelope, DeadLetterReason.CRASHED_HANDLER, crash.kind.value)
        await self.reply(envelope, RequestError(RequestFailure.CRASHED, crash.kind.value))
        log.warning(
            "%s crashed (%s): %s", self.address, crash.kind, crash.message, extra={"actor": self.address}
        )
        self.system.emit(EventKind.CRASHED, self.address, crash.kind.value, crash.backtrace)
        await self.supervisor.child_failed(self, crash.kind.value)


class ComponentCell(Cell):
    """An actor whose behaviour is a WebAssembly component."""

    def __init__(
        self,
        system: ActorSystem,
        address: str,
        supervisor: Supervisor,
        component: Component,
        limits: Limits,
        *,
        mailbox_size: int,
        restart: RestartType,
    ) -> None:
        super().__init__(system, address, supervisor, mailbox_size=mailbox_size, restart=restart)
        self.component = component
        self.limits = limits
        self.instance: Instance | None = None
        self._next_id = 0
        #: Outstanding requests this actor made: id -> the time it was sent.
        self.pending: dict[int, float] = {}
        self.context = HostContext(
            address,
            storage=system.storage,
            resolve=system.transport.knows,
            next_request_id=self._request_id,
            logger=logging.LoggerAdapter(logging.getLogger("wasmactors.guest"), {"actor": address}),
            pending_requests=self.pending.__len__,
        )

    @property
    def busy(self) -> bool:
        """Work in hand, including a request of its own still awaiting an answer."""
        return self.working or bool(self.pending)

    def _request_id(self) -> int:
        self._next_id += 1
        return self._next_id

    async def start(self) -> None:
        await self._instantiate()

    async def _instantiate(self) -> None:
        self.instance = await anyio.to_thread.run_sync(
            Instance, self.component, self.limits, self.context, limiter=self.system.limiter
        )

    async def restart(self) -> None:
        await super().restart()
        await self.release()
        await self._instantiate()

    async def halt(self) -> None:
        await super().halt()
        await self.release()

    async def release(self) -> None:
        if self.instance is not None:
            self.instance.close()
            self.instance = None

    async def process(self, batch: list[Envelope]) -> None:
        # Replies are matched to pending requests here, on the loop, where the
        # timers that expire them also run.
        runnable: list[Envelope] = []
        for envelope in batch:
            if envelope.kind in (Kind.REPLY, Kind.CALLBACK) and not self._claim(envelope):
                reason = "no pending request with that id"
                self.system.undeliverable(envelope, DeadLetterReason.UNEXPECTED_REPLY, reason)
                continue
            runnable.append(envelope)
        if not runnable:
            return
        instance = self.instance
        if instance is None:  # halted between take and process
            self.mailbox.push_front(runnable)
            return
        done, rest = await anyio.to_thread.run_sync(_turn, instance, runnable, limiter=self.system.limiter)
        for envelope, result in done:
            await self._after(envelope, result)
        if rest:
            self.mailbox.push_front(rest)

    async def _after(self, envelope: Envelope, result: CallResult | InvalidMessageError) -> None:
        stats = self.stats
        if isinstance(result, InvalidMessageError):
            reason = (
                DeadLetterReason.PAYLOAD_TOO_LARGE
                if isinstance(result, PayloadTooLargeError)
                else DeadLetterReason.INVALID_MESSAGE
            )
            self.system.undeliverable(envelope, reason, str(result))
            await self.reply(envelope, RequestError(RequestFailure.APP_ERROR, str(result)))
            return
        stats.handled += 1
        stats.fuel += result.fuel
        stats.latencies.append(result.elapsed)
        outcome = result.outcome
        if isinstance(outcome, Crash):
            await self.crashed(envelope, outcome)
            return
        for outgoing in result.outbox:
            await self.system.dispatch(self, outgoing)
        if isinstance(outcome, AppError):
            stats.app_errors += 1
            await self.reply(envelope, RequestError(RequestFailure.APP_ERROR, outcome.message))
        elif isinstance(outcome, Success):
            await self.reply(envelope, outcome.reply or b"")

    def _claim(self, reply: Envelope) -> bool:
        """Match a reply to a pending request (once: a late duplicate is refused)."""
        return reply.correlation_id is not None and self.pending.pop(reply.correlation_id, None) is not None

    def expect_reply(self, request_id: int, timeout: float) -> None:
        """Track a request; deliver a timeout callback if no reply comes in time."""
        self.pending[request_id] = time.monotonic()
        self.system.start_soon(self._expire, request_id, timeout)

    async def _expire(self, request_id: int, timeout: float) -> None:
        await anyio.sleep(timeout)
        if request_id in self.pending:
            self.deliver_nowait(
                Envelope(
                    recipient=self.address,
                    kind=Kind.CALLBACK,
                    correlation_id=request_id,
                    error=RequestError(RequestFailure.TIMEOUT),
                )
            )


def _turn(
    instance: Instance, batch: list[Envelope]
) -> tuple[list[tuple[Envelope, CallResult | InvalidMessageError]], list[Envelope]]:
    """Run a batch on a worker thread; stop at the first crash."""
    done: list[tuple[Envelope, CallResult | InvalidMessageError]] = []
    for i, envelope in enumerate(batch):
        try:
            if envelope.kind in (Kind.REPLY, Kind.CALLBACK):
                assert envelope.correlation_id is not None
                outcome: bytes | RequestError = (
                    envelope.error if envelope.error is not None else envelope.payload
                )
                result = instance.handle_callback(envelope.correlation_id, outcome)
            else:
                result = instance.handle_message(
                    envelope.payload,
                    sender=envelope.sender,
                    request=envelope.kind is Kind.REQUEST,
                    headers=envelope.headers,
                )
        except InvalidMessageError as exc:
            done.append((envelope, exc))
            continue
        done.append((envelope, result))
        if result.crashed:
            return done, batch[i + 1 :]
    return done, []


class NativeCell(Cell):
    """An actor whose behaviour is a Python object with ``async handle_message``."""

    def __init__(
        self,
        system: ActorSystem,
        address: str,
        supervisor: Supervisor,
        source: NativeSource,
        *,
        mailbox_size: int,
        restart: RestartType,
    ) -> None:
        super().__init__(system, address, supervisor, mailbox_size=mailbox_size, restart=restart)
        self._factory = _factory(source)
        self.behaviour: NativeActor = self._factory() if self._factory else source  # type: ignore[assignment]
        self.context = NativeContext(system, address)

    async def restart(self) -> None:
        await super().restart()
        if self._factory is not None:
            self.behaviour = self._factory()

    async def process(self, batch: list[Envelope]) -> None:
        for i, envelope in enumerate(batch):
            if envelope.kind in (Kind.REPLY, Kind.CALLBACK):
                self.system.undeliverable(
                    envelope, DeadLetterReason.UNEXPECTED_REPLY, "native actors await their asks directly"
                )
                continue
            start = time.perf_counter()
            try:
                reply = await self.behaviour.handle_message(envelope, self.context)
            except anyio.get_cancelled_exc_class():
                # Stopped past the shutdown deadline mid-handler: answer, then go.
                with anyio.CancelScope(shield=True):
                    await self.reply(envelope, RequestError(RequestFailure.STOPPED, self.address))
                    self.mailbox.push_front(batch[i + 1 :])
                raise
            except Reject as exc:
                self.stats.handled += 1
                self.stats.app_errors += 1
                await self.reply(envelope, RequestError(RequestFailure.APP_ERROR, str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - a native handler's bug is its crash
                self.stats.handled += 1
                crash = Crash(CrashKind.HOST_FAULT, f"{type(exc).__name__}: {exc}")
                self.mailbox.push_front(batch[i + 1 :])
                await self.crashed(envelope, crash)
                return
            self.stats.handled += 1
            self.stats.latencies.append(time.perf_counter() - start)
            await self.reply(envelope, reply or b"")
