"""Actor cells: an address, a mailbox, a behaviour, and the loop between them.

A cell's loop runs as a task owned by its supervisor; one run of the loop is
one *incarnation* of the actor. The loop ends, and the task with it, when the
actor crashes, asks to stop, drains its mailbox after a stop request, or is
halted by its supervisor; the supervisor learns why from the task's exit and
alone decides what happens next (see ``_supervisor.py``). The mailbox
belongs to the cell, not to the incarnation, so a restart keeps what is
queued; :meth:`Cell.close` ends the actor for good and accounts for every
message still queued (dead letter, and ``stopped`` to a requester).

A component cell runs its guest on worker threads, one *turn* per thread hop:
up to ``turn_size`` queued messages, ended early at a message boundary once it
has run for ``turn_time`` seconds or when the supervisor aborts it. Back on
the event loop the cell delivers what the handlers sent, answers requests,
and ends the incarnation at a crash, or normally when the guest called
``lifecycle.stop`` (the messages after it go back to the mailbox).
"""

from __future__ import annotations

import contextlib
import enum
import logging
from functools import partial
from time import monotonic
from typing import TYPE_CHECKING, NamedTuple

import anyio

from ..messaging import (
    Callback,
    DeliveryFailure,
    Envelope,
    Outgoing,
    Reply,
    Request,
    RequestError,
    RequestFailure,
    Send,
    SendRequest,
    Tell,
)
from ..runtime import (
    AppError,
    Batch,
    CallResult,
    Component,
    Crash,
    CrashKind,
    HostContext,
    Instance,
    InvalidMessageError,
    Limits,
    PayloadTooLargeError,
    Success,
)
from ._mailbox import Mailbox
from ._observe import DeadLetterReason, EventKind, StatsRecorder

if TYPE_CHECKING:
    from ._deadlines import Deadline
    from ._env import CellEnv
    from ._workers import Job

__all__ = ["Cell", "ComponentCell", "Exit", "ExitKind", "RestartType"]

log = logging.getLogger("wasmactors.actors")


class RestartType(enum.StrEnum):
    """When a supervisor restarts a child (OTP's restart types)."""

    #: Always restarted, after a crash and after a normal exit.
    PERMANENT = "permanent"
    #: Restarted only after an abnormal exit (a crash), not after a normal one.
    TRANSIENT = "transient"
    #: Never restarted: any exit removes it.
    TEMPORARY = "temporary"


class ExitKind(enum.Enum):
    """Why an incarnation of a child (a cell's loop, a supervisor's task) ended."""

    #: The actor asked to stop, or drained its mailbox after a stop request.
    NORMAL = "normal"
    #: A handler crashed (trap, fuel, timeout, memory, host fault).
    CRASHED = "crashed"
    #: Its supervisor halted it (for a restart or a give-up); the mailbox stays.
    HALTED = "halted"
    #: Cancelled after its shutdown time ran out.
    KILLED = "killed"
    #: A supervisor exceeded its restart intensity.
    GAVE_UP = "gave-up"


class Exit(NamedTuple):
    """An exit reason with its detail (the crash kind, the intensity exceeded)."""

    kind: ExitKind
    detail: str = ""

    @property
    def abnormal(self) -> bool:
        return self.kind is not ExitKind.NORMAL


#: A turn's sends and answers that wait behind a send to a full mailbox, in
#: order: (the handled message, a send or ``None``, an answer or ``None``).
_Deferred = list[tuple[Envelope, Outgoing | None, bytes | RequestError | None]]

#: Answers to this actor's own requests: accepted past capacity and while stopping.
_ANSWERS = (Reply, Callback)


class Cell:
    """The parts every actor has: address, mailbox, stats and the loop."""

    def __init__(
        self,
        env: CellEnv,
        address: str,
        *,
        mailbox_size: int,
        restart: RestartType,
        shutdown: float,
    ) -> None:
        self.env = env
        self.address = address
        self.restart_type = restart
        #: Seconds a stop may take before the cell is cancelled (0: brutal kill).
        self.shutdown = shutdown
        self.mailbox: Mailbox[Envelope] = Mailbox(mailbox_size)
        self.stats = StatsRecorder()
        #: Intake refused: a graceful stop is draining the mailbox.
        self._stopping = False
        #: The supervisor asked the loop to end after the current message.
        self._halting = False
        #: The behaviour asked to stop normally after the current message.
        self._exit_requested = False
        self.closed = False
        self._idle = anyio.Event()
        self._idle.set()
        #: The loop waits in ``mailbox.take`` (a component may then take an
        #: ask straight to a worker: see ``ComponentCell.handle_now``).
        self._parked = False
        #: Set when a call started by ``handle_now`` has been accounted for.
        self._direct: anyio.Event | None = None
        #: What such a call left for the loop: sends that wait for room, its exit.
        self._direct_deferred: _Deferred = []
        self._direct_hurry = False
        self._direct_exit: Exit | None = None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.address}>"

    # -- endpoint protocol (messaging.Endpoint) ---------------------------------

    def deliver_nowait(self, envelope: Envelope) -> DeliveryFailure | None:
        answer = isinstance(envelope, _ANSWERS)
        if self._stopping and not answer:
            return DeliveryFailure.STOPPED
        try:
            self.mailbox.put_nowait(envelope, force=answer)
        except anyio.WouldBlock:
            return DeliveryFailure.MAILBOX_FULL
        except anyio.ClosedResourceError:
            return DeliveryFailure.STOPPED
        return None

    async def deliver(self, envelope: Envelope) -> DeliveryFailure | None:
        if self._stopping:
            return DeliveryFailure.STOPPED
        try:
            await self.mailbox.put(envelope)
        except anyio.ClosedResourceError:
            return DeliveryFailure.STOPPED
        return None

    # -- the child interface (used by the owning supervisor only) -----------------

    async def start(self) -> None:
        """Prepare the behaviour (instantiate); raise if it cannot start."""

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> Exit:
        """One incarnation: handle messages until a crash, a normal exit or a stop request."""
        task_status.started()
        mailbox = self.mailbox
        try:
            while True:
                if self._direct_pending:
                    exit = await self._after_direct()
                    if exit is not None:
                        return exit
                if self._halting:
                    return Exit(ExitKind.HALTED)
                if self._exit_requested:
                    return Exit(ExitKind.NORMAL, "the actor asked to stop")
                if self._stopping and not len(mailbox):
                    return Exit(ExitKind.NORMAL, "drained")
                if not len(mailbox):
                    self._idle.set()
                self._parked = True
                batch = await mailbox.take(self.env.turn_size)
                self._parked = False
                if self._direct_pending:
                    mailbox.push_front(batch)  # after what the direct call left
                    continue
                if not batch:
                    continue  # woken for a stop request
                if self._idle.is_set():
                    self._idle = anyio.Event()
                exit = await self.process(batch)
                if exit is not None:
                    return exit
        finally:
            self._parked = False
            if self._direct_pending:
                # Never leave while a worker runs this incarnation's instance, nor
                # with what its call left undelivered (cancelled while parked).
                # This incarnation ends anyway: the exit the call left is dropped
                # (its crash is accounted for), and what waits for room hurries.
                await self._after_direct(ending=True)
            # Between incarnations the actor is not idle: its supervisor has a
            # decision to make (restart or close), and messages may be queued.
            if self._idle.is_set():
                self._idle = anyio.Event()

    @property
    def _direct_pending(self) -> bool:
        """A call started by ``handle_now`` runs, or left work for the loop."""
        return self._direct is not None or bool(self._direct_deferred) or self._direct_exit is not None

    async def _after_direct(self, *, ending: bool = False) -> Exit | None:
        """What a call started by ``handle_now`` left: wait for it to be
        accounted for, deliver its sends that wait for room (shielded, in a
        hurry when the incarnation is ``ending``), end at its exit."""
        if self._direct is not None:
            with anyio.CancelScope(shield=True):
                await self._direct.wait()
        deferred, self._direct_deferred = self._direct_deferred, []
        if deferred:
            await self._deliver_deferred(deferred, ending or self._direct_hurry)
        exit, self._direct_exit = self._direct_exit, None
        return exit

    async def _deliver_deferred(self, deferred: _Deferred, hurry: bool) -> None:
        raise NotImplementedError

    def request_stop(self, *, drain: bool) -> None:
        """End the loop: after draining the mailbox (``drain``, intake refused)
        or after the current message (a halt: the mailbox stays for a restart)."""
        if drain:
            self._stopping = True
        else:
            self._halting = True
        self.mailbox.wake()

    def abort(self) -> None:
        """The shutdown time ran out: stop a running turn at the next message."""

    async def restart(self) -> None:
        """Prepare a new incarnation: fresh behaviour state, the same mailbox."""
        self.stats.restarts += 1
        self._halting = self._exit_requested = False

    def close(self) -> None:
        """End the actor for good (its loop is not running): leave the registry
        and account for every queued message."""
        if self.closed:
            return
        self.closed = True
        self._stopping = True
        env = self.env
        env.registry.unregister(self.address)
        for envelope in self.mailbox.close():
            self.discard(envelope, "the actor stopped")
        self.release()
        self._idle.set()
        env.stopped(self.address, self.stats.snapshot(self.address, 0, self.mailbox.high_water))
        env.emit(EventKind.STOPPED, self.address)

    def release(self) -> None:
        """Free the behaviour's resources (the Store)."""

    # -- shared message handling ---------------------------------------------------

    async def process(self, batch: list[Envelope]) -> Exit | None:
        raise NotImplementedError

    def discard(self, envelope: Envelope, detail: str) -> None:
        """A message this actor will not handle: a dead letter, and ``stopped`` to its requester."""
        self.env.dead_letter(envelope, DeadLetterReason.STOPPED, detail)
        self.reply(envelope, RequestError(RequestFailure.STOPPED, self.address))

    def reply(self, request: Envelope, outcome: bytes | RequestError) -> None:
        """Answer a request envelope to its sender (never waits: replies bypass capacity)."""
        if not isinstance(request, Request):
            return
        payload, error = (b"", outcome) if isinstance(outcome, RequestError) else (outcome, None)
        answer = Reply(
            recipient=request.sender,
            sender=self.address,
            correlation_id=request.correlation_id,
            payload=payload,
            error=error,
        )
        failure = self.env.transport.send_nowait(answer)
        if failure is None:
            return
        if failure is DeliveryFailure.UNKNOWN_RECIPIENT and request.sender.startswith("$ask/"):
            # Only asks create `$ask/` addresses: this one has already timed out.
            self.env.dead_letter(
                answer, DeadLetterReason.UNEXPECTED_REPLY, "an ask's reply after its timeout"
            )
        else:
            self.env.dead_letter(answer, failure, "the requester is gone")

    def crashed(self, envelope: Envelope, crash: Crash) -> Exit:
        """Account for the message that crashed its handler; the incarnation ends."""
        self.stats.crashes[crash.kind.value] += 1
        self.env.dead_letter(envelope, DeadLetterReason.CRASHED_HANDLER, crash.kind.value)
        self.reply(envelope, RequestError(RequestFailure.CRASHED, crash.kind.value, crash.message))
        log.warning(
            "%s crashed (%s): %s", self.address, crash.kind, crash.message, extra={"actor": self.address}
        )
        self.env.emit(EventKind.CRASHED, self.address, crash.kind.value, crash.backtrace, crash.message)
        return Exit(ExitKind.CRASHED, crash.kind.value)

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


class _TurnControl:
    """Shared with the worker thread running a turn: when to stop early.
    Plain attributes: a read on the worker thread sees the loop's write."""

    __slots__ = ("abort", "budget")

    def __init__(self, budget: float) -> None:
        self.abort = False
        #: Seconds a turn may run before it ends at the next message boundary.
        self.budget = budget


class ComponentCell(Cell):
    """An actor whose behaviour is a WebAssembly component."""

    def __init__(
        self,
        env: CellEnv,
        address: str,
        component: Component,
        limits: Limits,
        *,
        mailbox_size: int,
        restart: RestartType,
        shutdown: float,
    ) -> None:
        super().__init__(env, address, mailbox_size=mailbox_size, restart=restart, shutdown=shutdown)
        self.component = component
        self.limits = limits
        self.instance: Instance | None = None
        self._next_id = 0
        self._control = _TurnControl(env.turn_time)
        #: Outstanding requests this actor made: id -> its timeout (``None``
        #: once the answer is in the mailbox).
        self.pending: dict[int, Deadline | None] = {}
        self.context = HostContext(
            address,
            storage=env.storage,
            resolve=env.transport.knows,
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
        self.instance = await self.env.workers.run(Instance, self.component, self.limits, self.context)

    async def restart(self) -> None:
        await super().restart()
        self._control = _TurnControl(self.env.turn_time)
        self.release()
        await self.start()

    def request_stop(self, *, drain: bool) -> None:
        super().request_stop(drain=drain)
        if not drain:  # a halt ends the running turn after its current message
            self._control.abort = True

    def abort(self) -> None:
        self._control.abort = True

    def close(self) -> None:
        super().close()
        for deadline in self.pending.values():  # its requests' timers (not at a restart: they outlive it)
            if deadline is not None:
                deadline.cancel()

    def release(self) -> None:
        if self.instance is not None:
            self.instance.close()
            self.instance = None

    async def process(self, batch: list[Envelope]) -> Exit | None:
        # Replies are matched to pending requests here, on the loop, where the
        # timers that expire them also run.
        runnable: list[Envelope] = []
        for envelope in batch:
            if isinstance(envelope, _ANSWERS) and not self._claim(envelope):
                reason = "no pending request with that id"
                self.env.dead_letter(envelope, DeadLetterReason.UNEXPECTED_REPLY, reason)
                continue
            runnable.append(envelope)
        if not runnable:
            return None
        instance = self.instance
        assert instance is not None, "a running incarnation has an instance"
        control = self._control
        try:
            done, rest = await self.env.workers.run(_turn, instance, runnable, control)
        except anyio.get_cancelled_exc_class():
            # Cancelled before the thread started (waiting for a worker): nothing ran.
            self._unclaim(runnable)
            self.mailbox.push_front(runnable)
            raise
        deferred: _Deferred = []
        exit = self._account(done, rest, deferred)
        if deferred:
            await self._deliver_deferred(deferred, control.abort)
        return exit

    def _account(
        self,
        done: list[tuple[Envelope, CallResult | InvalidMessageError]],
        rest: list[Envelope],
        deferred: _Deferred,
    ) -> Exit | None:
        """The turn ran: account for every result even if a stop is cancelling
        us. Synchronously, with no await per message: a send to a mailbox
        with room is delivered at once; from the first send that must wait
        for room on, the rest of the turn's sends and replies wait their
        turn in order (``deferred``), so no one overtakes another."""
        if rest:  # not run this turn: answers among them are claimed again next time
            self._unclaim(rest)
            self.mailbox.push_front(rest)
        hurry = self._control.abort
        exit: Exit | None = None
        for envelope, result in done:
            exit = self._settle(envelope, result, hurry, deferred) or exit
        return exit

    async def _deliver_deferred(self, deferred: _Deferred, hurry: bool) -> None:
        with anyio.CancelScope(shield=True):
            for envelope, outgoing, answer in deferred:
                if outgoing is not None:
                    await self._dispatch(outgoing, hurry=hurry)
                elif answer is not None:
                    self.reply(envelope, answer)

    def handle_now(self, request: Request) -> bool:
        """Take an ask straight to a worker when the actor is idle: no wake-up
        of the cell's task before the call, and none after it unless the call
        left work for it. The call is accounted for on the event loop by the
        worker's completion callback, exactly as a turn of one message (its
        reply reaches the asker from there). ``False``: not idle; queue it."""
        if not (
            self._parked
            and not self._direct_pending
            and not len(self.mailbox)
            and not (self._stopping or self._halting or self._exit_requested or self.closed)
            and self.instance is not None
        ):
            return False
        self.env.workers.submit(_turn, (self.instance, [request], self._control), self._direct_done)
        self._direct = anyio.Event()  # after submit: it raises if the workers are gone
        if self._idle.is_set():
            self._idle = anyio.Event()
        return True

    def _direct_done(self, job: Job[_TurnResult]) -> None:
        """On the event loop, once the worker ran a ``handle_now`` call. Never
        raises (on trio a callback's error would end the run)."""
        direct = self._direct
        wake = False
        try:
            done, rest = job.outcome()
            deferred: _Deferred = []
            exit = self._account(done, rest, deferred)
            if deferred:
                self._direct_deferred, self._direct_hurry = deferred, self._control.abort
            self._direct_exit = exit
            wake = bool(deferred or exit is not None or rest or self._exit_requested)
        except BaseException as exc:  # a host bug ends this incarnation, not the loop
            log.exception("%s: accounting for a direct call failed", self.address)
            detail = f"host-fault: {type(exc).__name__}"
            self._direct_exit = Exit(ExitKind.CRASHED, detail)
            wake = True
            request = job.args[1][0]
            with contextlib.suppress(Exception):  # the asker learns of it, or its timeout does
                self.env.dead_letter(request, DeadLetterReason.CRASHED_HANDLER, detail)
                self.reply(request, RequestError(RequestFailure.CRASHED, "host-fault", detail))
        finally:
            self._direct = None
            if direct is not None:
                direct.set()
            if wake:
                self.mailbox.wake()
            elif self._parked and not len(self.mailbox):
                self._idle.set()

    def _settle(
        self,
        envelope: Envelope,
        result: CallResult | InvalidMessageError,
        hurry: bool,
        deferred: _Deferred,
    ) -> Exit | None:
        """Account for one handled message: stats, what it sent, its answer."""
        if isinstance(result, InvalidMessageError):
            reason = (
                DeadLetterReason.PAYLOAD_TOO_LARGE
                if isinstance(result, PayloadTooLargeError)
                else DeadLetterReason.INVALID_MESSAGE
            )
            self.env.dead_letter(envelope, reason, str(result))
            self._answer(envelope, RequestError(RequestFailure.APP_ERROR, str(result)), deferred)
            return None
        stats = self.stats
        stats.handled += 1
        stats.fuel += result.fuel
        stats.latencies.append(result.elapsed)
        outcome = result.outcome
        if type(outcome) is Crash:
            return self.crashed(envelope, outcome)
        for outgoing in result.outbox:
            if deferred or not self._dispatch_nowait(outgoing, hurry=hurry):
                deferred.append((envelope, outgoing, None))
        if type(outcome) is Success:
            if isinstance(envelope, Request):
                self._answer(envelope, outcome.reply or b"", deferred)
        elif isinstance(outcome, AppError):
            stats.app_errors += 1
            self._answer(envelope, RequestError(RequestFailure.APP_ERROR, outcome.message), deferred)
        if result.stop:  # lifecycle.stop: the loop ends the incarnation normally
            self._exit_requested = True
        return None

    def _answer(
        self,
        envelope: Envelope,
        answer: bytes | RequestError,
        deferred: _Deferred,
    ) -> None:
        if deferred:
            deferred.append((envelope, None, answer))
        else:
            self.reply(envelope, answer)

    def _outgoing_envelope(self, outgoing: Outgoing) -> Tell | Request:
        if isinstance(outgoing, Send):
            return Tell(recipient=outgoing.to, payload=outgoing.payload, sender=self.address)
        return Request(
            recipient=outgoing.to,
            payload=outgoing.payload,
            sender=self.address,
            correlation_id=outgoing.request_id,
        )

    def _dispatch_nowait(self, outgoing: Outgoing, *, hurry: bool) -> bool:
        """Deliver one message the guest sent if that needs no wait; False
        (nothing done) when the recipient's mailbox is full and the cell may
        wait for room."""
        envelope = self._outgoing_envelope(outgoing)
        wait = 0.0 if hurry else self.env.push_timeout
        failure = self.env.transport.send_nowait(envelope, wait=wait)
        if failure is DeliveryFailure.MAILBOX_FULL and wait > 0:
            return False
        if isinstance(outgoing, SendRequest):
            self._expect_reply(outgoing.request_id, outgoing.timeout or self.env.request_timeout)
        if failure is not None:
            self._undeliverable(envelope, failure)
        return True

    async def _dispatch(self, outgoing: Outgoing, *, hurry: bool) -> None:
        """Deliver one message the guest sent, after its handler succeeded;
        without waiting for room when the cell is being killed."""
        envelope = self._outgoing_envelope(outgoing)
        if isinstance(outgoing, SendRequest):
            self._expect_reply(outgoing.request_id, outgoing.timeout or self.env.request_timeout)
        timeout = 0 if hurry else self.env.push_timeout
        failure = await self.env.transport.send(envelope, timeout=timeout)
        if failure is not None:
            self._undeliverable(envelope, failure)

    def _undeliverable(self, envelope: Tell | Request, failure: DeliveryFailure) -> None:
        self.env.dead_letter(envelope, failure, "")
        if isinstance(envelope, Request):
            request_id = envelope.correlation_id
            reason = {
                DeliveryFailure.UNKNOWN_RECIPIENT: RequestFailure.UNKNOWN_RECIPIENT,
                DeliveryFailure.MAILBOX_FULL: RequestFailure.MAILBOX_FULL,
            }.get(failure, RequestFailure.STOPPED)
            self._callback(request_id, RequestError(reason, envelope.recipient))

    def _callback(self, request_id: int, error: RequestError) -> None:
        callback = Callback(recipient=self.address, correlation_id=request_id, error=error)
        if self.deliver_nowait(callback) is not None:
            self.env.dead_letter(callback, DeadLetterReason.STOPPED, "the requester stopped")

    def _claim(self, answer: Reply | Callback) -> bool:
        """Match a reply to a pending request (once: a late duplicate is refused)."""
        if answer.correlation_id not in self.pending:
            return False
        deadline = self.pending.pop(answer.correlation_id)
        if deadline is not None:
            deadline.cancel()
        return True

    def _unclaim(self, envelopes: list[Envelope]) -> None:
        for envelope in envelopes:
            if isinstance(envelope, _ANSWERS):
                self.pending[envelope.correlation_id] = None  # the answer is back in the mailbox

    def _expect_reply(self, request_id: int, timeout: float) -> None:
        """Track a request; deliver a timeout callback if no reply comes in time."""
        self.pending[request_id] = self.env.deadlines.after(timeout, partial(self._expired, request_id))

    def _expired(self, request_id: int) -> None:
        if self.pending.get(request_id) is not None and not self.closed:
            self.pending[request_id] = None  # the timeout callback is the answer
            self._callback(request_id, RequestError(RequestFailure.TIMEOUT))


#: What a turn did: each message handled with its result, and the messages it did not reach.
_TurnResult = tuple[list[tuple[Envelope, CallResult | InvalidMessageError]], list[Envelope]]


def _turn(instance: Instance, batch: list[Envelope], control: _TurnControl) -> _TurnResult:
    """Run a batch on a worker thread, under one lock (``Instance.batch``).
    Stop at the first crash or call to ``lifecycle.stop``, when aborted, or
    once the turn has used its time budget (fair turns: a slow actor gives
    its worker back and other actors' messages are served)."""
    done: list[tuple[Envelope, CallResult | InvalidMessageError]] = []
    try:
        with instance.batch() as calls:
            return _run_turn(calls, batch, control, done)
    except Exception as exc:  # noqa: BLE001 - the host's bug must cost this message, not the system
        crash = Crash(CrashKind.HOST_FAULT, f"host fault: {type(exc).__name__}: {exc}")
        i = len(done)
        if i == len(batch):  # every message was handled; the batch's exit failed
            log.error("ending a turn failed: %s", crash.message)
            return done, []
        done.append((batch[i], CallResult(crash, 0, 0.0)))
        return done, batch[i + 1 :]


def _run_turn(
    calls: Batch,
    batch: list[Envelope],
    control: _TurnControl,
    done: list[tuple[Envelope, CallResult | InvalidMessageError]],
) -> tuple[list[tuple[Envelope, CallResult | InvalidMessageError]], list[Envelope]]:
    deadline = monotonic() + control.budget
    handle_message = calls.handle_message
    for i, envelope in enumerate(batch):
        if control.abort or (i and monotonic() >= deadline):
            return done, batch[i:]
        try:
            if isinstance(envelope, _ANSWERS):
                outcome: bytes | RequestError = (
                    envelope.error if envelope.error is not None else envelope.payload
                )
                result = calls.handle_callback(envelope.correlation_id, outcome)
            else:
                result = handle_message(
                    envelope.payload,
                    sender=envelope.sender,
                    request=type(envelope) is Request,
                    headers=envelope.headers,
                )
        except InvalidMessageError as exc:
            done.append((envelope, exc))
            continue
        done.append((envelope, result))
        if result.stop or type(result.outcome) is Crash:
            return done, batch[i + 1 :]
    return done, []
