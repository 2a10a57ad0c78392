"""Supervisors: OTP restart strategies, restart types, intensity, backoff and
shutdown, with each supervisor a task that owns its children's tasks.

As an OTP supervisor is a process receiving its children's EXIT signals, and
a trio nursery owns the tasks it starts, a :class:`Supervisor` runs one task
with a task group holding one task per child incarnation. A child's task
ends when the child crashes, exits normally or is halted; its last act is to
post an ``_Exited`` message to the supervisor's inbox, which never blocks.
The supervisor task handles its inbox one message at a time and is the only
place where children are added, restarted, halted, removed or given up on:
no lock, no state written from two tasks, and no task ever waits on anything
but its own children.

A child halted or stopped by its supervisor gets its shutdown time (OTP's
``shutdown``: 0 for a brutal kill, seconds, or ``math.inf``), after which its
task is cancelled. Every stop of an incarnation the supervisor ordered bumps
the child's *epoch*, so the exit that follows (or a crash racing with it) is
recognised as already handled and never triggers a second decision.
"""

from __future__ import annotations

import enum
import logging
import math
from collections import deque
from typing import TYPE_CHECKING, Union

import anyio
import msgspec

from ..messaging import child_address
from ..runtime import CrashKind
from ._cell import Cell, ComponentCell, Exit, ExitKind, RestartType
from ._durable import DurableCell, check_durable
from ._errors import ActorStoppedError
from ._native import NativeCell
from ._observe import EventKind
from ._ref import ActorRef

if TYPE_CHECKING:
    import os

    from ..runtime import Component, Limits, Manifest
    from ._native import NativeSource
    from ._system import ActorSystem

__all__ = ["BRUTAL_KILL", "ONE_FOR_ALL", "ONE_FOR_ONE", "REST_FOR_ONE", "Backoff", "Strategy", "Supervisor"]

#: A child's ``shutdown`` that cancels it at once (OTP's ``brutal_kill``).
BRUTAL_KILL = 0.0

log = logging.getLogger("wasmactors.actors")


class Strategy(enum.StrEnum):
    """Which children restart when one fails."""

    #: Only the failed child.
    ONE_FOR_ONE = "one-for-one"
    #: Every child.
    ONE_FOR_ALL = "one-for-all"
    #: The failed child and every child started after it.
    REST_FOR_ONE = "rest-for-one"


ONE_FOR_ONE = Strategy.ONE_FOR_ONE
ONE_FOR_ALL = Strategy.ONE_FOR_ALL
REST_FOR_ONE = Strategy.REST_FOR_ONE


class Backoff(msgspec.Struct, frozen=True):
    """Exponential delay before a restart: ``initial * factor**(n - 1)``, capped
    at ``maximum``, where ``n`` counts the restarts in the intensity window."""

    initial: float = 0.01
    maximum: float = 1.0
    factor: float = 2.0

    def delay(self, restarts: int) -> float:
        return float(min(self.maximum, self.initial * self.factor ** max(restarts - 1, 0)))


Child = Union[Cell, "Supervisor"]


class _Slot:
    """The supervisor's bookkeeping for one child's current incarnation."""

    __slots__ = ("epoch", "exited", "scope")

    def __init__(self) -> None:
        self.epoch = 0
        self.scope = anyio.CancelScope()
        self.exited = anyio.Event()
        self.exited.set()  # not running yet

    @property
    def running(self) -> bool:
        return not self.exited.is_set()


# -- the supervisor's inbox ------------------------------------------------------


class _Exited(msgspec.Struct, frozen=True):
    """A child's incarnation ended (posted by the child's task as it ends)."""

    child: Child
    epoch: int
    exit: Exit


class _Adopt(msgspec.Struct, frozen=True):
    """Add a prepared child and start it (from ``spawn*``)."""

    child: Child
    done: _Reply


class _Remove(msgspec.Struct, frozen=True):
    """Stop one child normally and forget it (from ``ActorSystem.stop``)."""

    child: Child
    done: _Reply


class _Stop(msgspec.Struct, frozen=True):
    """Stop every child (``drain``: gracefully, for good) or halt them (for a restart by the parent)."""

    drain: bool


_Message = _Exited | _Adopt | _Remove | _Stop


class _Reply:
    """The answer to a caller waiting on an ``_Adopt`` or ``_Remove``."""

    __slots__ = ("error", "event")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.error: BaseException | None = None

    def set(self, error: BaseException | None = None) -> None:
        self.error = error
        self.event.set()

    async def wait(self) -> None:
        await self.event.wait()
        if self.error is not None:
            raise self.error


class _Inbox:
    """Unbounded FIFO with one reader: posting never blocks, so a child's
    task can always report its exit."""

    def __init__(self) -> None:
        self._items: deque[_Message] = deque()
        self._ready = anyio.Event()

    def post(self, message: _Message) -> None:
        self._items.append(message)
        self._ready.set()

    async def get(self) -> _Message:
        while not self._items:
            self._ready = anyio.Event()
            await self._ready.wait()
        return self._items.popleft()

    def drain(self) -> list[_Message]:
        items = list(self._items)
        self._items.clear()
        return items


class Supervisor:
    """Owns children (actors and supervisors) and restarts them when they fail.

    At most ``max_restarts`` restarts within ``within`` seconds; one more and
    the supervisor gives up: it halts its children and exits abnormally, so
    its own supervisor applies its strategy. When the root gives up, the
    system stops with :class:`SystemFailedError`.
    """

    def __init__(
        self,
        system: ActorSystem,
        address: str | None,
        parent: Supervisor | None,
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: Backoff | None = None,
        restart: RestartType = RestartType.PERMANENT,
        shutdown: float = math.inf,
    ) -> None:
        if max_restarts < 0 or within <= 0:
            raise ValueError("max_restarts must be >= 0 and within > 0")
        _check_shutdown(shutdown)
        self._system = system
        self.address = address
        self.parent = parent
        self.strategy = Strategy(strategy)
        self.max_restarts = max_restarts
        self.within = within
        self.backoff = backoff
        self.restart_type = restart
        #: Seconds its parent waits for it to stop before cancelling it (OTP's
        #: ``shutdown``; ``math.inf`` by default, as OTP's for supervisors).
        self.shutdown = shutdown
        # Children in start order, owned by the supervisor task.
        self._children: list[Child] = []
        self._slots: dict[int, _Slot] = {}
        self._history: deque[float] = deque()
        self._inbox = _Inbox()
        self._tg: anyio.abc.TaskGroup | None = None
        #: A stop for good was requested: nothing restarts any more.
        self._stop_requested = anyio.Event()
        #: Any stop or halt was requested: a backoff wait ends early.
        self._interrupt = anyio.Event()
        self._closed = False
        #: How its parent's task drives it (the same interface as a cell's).
        self._as_child = _SupervisorChild(self)

    def __repr__(self) -> str:
        return f"<Supervisor {self.address or '(root)'} {self.strategy}>"

    @property
    def children(self) -> tuple[Child, ...]:
        """Its children in start order, as of now (actors' cells and supervisors)."""
        return tuple(self._children)

    # -- building the tree (any task) -------------------------------------------

    def _child_address(self, name: str) -> str:
        return child_address(self.address, name)

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
        """A nested supervisor under this one."""
        address = self._child_address(name)
        self._system._reserve(address)
        sup = Supervisor(
            self._system,
            address,
            self,
            strategy=strategy,
            max_restarts=max_restarts,
            within=within,
            backoff=backoff,
            restart=restart,
            shutdown=shutdown,
        )
        await self._adopt(sup)
        return sup

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
        """Start a component actor under this supervisor; ``limits`` override the
        manifest's. ``shutdown``: seconds a stop may take before the actor is
        cancelled (default: the system's ``shutdown_timeout``; 0: brutal kill).
        ``durable``: receive through JetStream, effectively once (needs a
        cluster and SQLite storage: docs/cluster.md)."""
        system = self._system
        address = self._child_address(name)
        if durable:
            storage = check_durable(address, system.storage, system.cluster)
        component, declared = await system.load(source)
        chosen = limits or declared
        if chosen is None:
            raise ValueError(f"{name}: give limits=Limits(...) or spawn from a Manifest that declares them")
        size, stop = mailbox_size or system.mailbox_size, _shutdown(shutdown, system.shutdown_timeout)
        if durable:
            assert system.cluster is not None
            cell: ComponentCell = DurableCell(
                system._env,
                address,
                component,
                chosen,
                storage=storage,
                route=system.cluster.outbox_route,
                outbox_ready=system.cluster.outbox_ready,
                mailbox_size=size,
                restart=restart,
                shutdown=stop,
            )
        else:
            cell = ComponentCell(
                system._env, address, component, chosen, mailbox_size=size, restart=restart, shutdown=stop
            )
        return await self._start_cell(cell)

    async def spawn_native(
        self,
        name: str,
        behaviour: NativeSource,
        *,
        mailbox_size: int | None = None,
        restart: RestartType = RestartType.PERMANENT,
        shutdown: float | None = None,
    ) -> ActorRef:
        """Start a host-native actor under this supervisor (an object or a factory: see
        :meth:`ActorSystem.spawn_native`)."""
        system = self._system
        cell = NativeCell(
            system._env,
            self._child_address(name),
            behaviour,
            mailbox_size=mailbox_size or system.mailbox_size,
            restart=restart,
            shutdown=_shutdown(shutdown, system.shutdown_timeout),
        )
        return await self._start_cell(cell)

    async def _start_cell(self, cell: Cell) -> ActorRef:
        system = self._system
        system._reserve(cell.address)
        try:
            await system._claim(cell.address)
            await cell.start()
        except BaseException:
            system._release_name(cell.address)
            raise
        system._register(cell)
        try:
            await system._announce(cell.address)
        except BaseException:
            cell.close()
            raise
        await self._adopt(cell)
        return ActorRef(system, cell.address)

    async def _adopt(self, child: Child) -> None:
        if self._closed or self._stop_requested.is_set():
            _close(child)
            raise ActorStoppedError(f"supervisor {self.address or '(root)'} is stopping")
        done = _Reply()
        self._inbox.post(_Adopt(child, done))
        await done.wait()

    async def _remove(self, child: Child) -> None:
        """Stop one child normally (drained, within its shutdown time) and forget it."""
        done = _Reply()
        self._inbox.post(_Remove(child, done))
        await done.wait()

    # -- the child interface (driven by the parent's task, through _SupervisorChild) --

    async def _run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> Exit:
        """The supervisor task: (re)start the children, then serve the inbox
        until stopped, halted, or giving up."""
        self._interrupt = anyio.Event()
        async with anyio.create_task_group() as tg:
            self._tg = tg
            for child in list(self._children):  # a restart: the children were halted
                try:
                    await self._restart_child(child)
                except Exception as exc:  # noqa: BLE001 - a failed restart is the child's failure
                    self._inbox.post(_Exited(child, self._slot(child).epoch, _failed_restart(exc)))
            task_status.started()
            try:
                exit = await self._serve()
            finally:
                self._tg = None
        return exit

    def _request_stop(self, *, drain: bool) -> None:
        if drain:
            self._stop_requested.set()
        self._interrupt.set()
        self._inbox.post(_Stop(drain))

    def _abort(self) -> None:
        """Cancelling the supervisor's task cancels its children's tasks."""

    async def _restart(self) -> None:
        """A restarted supervisor starts with an empty restart history; its
        children are restarted by :meth:`run`."""
        self._history.clear()
        self._stop_requested = anyio.Event()

    def _close(self) -> None:
        """End this supervisor and its subtree for good (its task is not running)."""
        if self._closed:
            return
        self._closed = True
        for child in reversed(self._children):
            _close(child)
        self._children.clear()
        for message in self._inbox.drain():
            if isinstance(message, _Adopt):
                _close(message.child)
                message.done.set(ActorStoppedError(f"supervisor {self.address or '(root)'} stopped"))
            elif isinstance(message, _Remove):
                message.done.set()
        if self.address is not None:
            self._system._release_name(self.address)
            self._system._emit(EventKind.STOPPED, self.address)

    # -- the supervisor task -------------------------------------------------------

    async def _serve(self) -> Exit:
        while True:
            message = await self._inbox.get()
            if isinstance(message, _Exited):
                exit = await self._exited(message)
                if exit is not None:
                    return exit
            elif isinstance(message, _Adopt):
                await self._on_adopt(message)
            elif isinstance(message, _Remove):
                await self._on_remove(message)
            elif message.drain:
                # For good: no restart from here on (OTP: none while shutting down).
                self._stop_requested.set()
                for child in reversed(list(self._children)):
                    await self._terminate(child, drain=True)
                    _close(child)
                self._children.clear()
                self._slots.clear()
                return Exit(ExitKind.NORMAL, "stopped")
            else:
                await self._halt_all("the parent restarts this supervisor")
                return Exit(ExitKind.HALTED)

    async def _on_adopt(self, message: _Adopt) -> None:
        if self._stop_requested.is_set():
            _close(message.child)
            message.done.set(ActorStoppedError(f"supervisor {self.address or '(root)'} is stopping"))
            return
        self._children.append(message.child)
        try:
            await self._start(message.child)
        except BaseException as exc:
            self._children.remove(message.child)
            _close(message.child)
            message.done.set(exc)
            raise
        self._system._emit(EventKind.STARTED, message.child.address or "")
        message.done.set()

    async def _on_remove(self, message: _Remove) -> None:
        child = message.child
        if child in self._children:
            await self._terminate(child, drain=True)
            self._forget(child)
        message.done.set()

    async def _exited(self, message: _Exited) -> Exit | None:
        """Decide about a child whose incarnation ended on its own; an exit
        when this supervisor gives up."""
        child = message.child
        if child not in self._children or message.epoch != self._slot(child).epoch:
            return None  # an exit this supervisor caused, or a crash racing with it
        if self._interrupt.is_set():
            return None  # a stop or halt is pending: it deals with this child
        exit = message.exit
        if child.restart_type is RestartType.TEMPORARY or (
            child.restart_type is RestartType.TRANSIENT and not exit.abnormal
        ):
            self._forget(child)
            return None
        reason = f"{child.address} {exit.kind.value}{': ' + exit.detail if exit.detail else ''}"
        while True:
            now = anyio.current_time()
            while self._history and now - self._history[0] > self.within:
                self._history.popleft()
            self._history.append(now)
            if len(self._history) > self.max_restarts:
                return await self._give_up(reason)
            if self.backoff is not None:
                with anyio.move_on_after(self.backoff.delay(len(self._history))):
                    await self._interrupt.wait()
                if self._interrupt.is_set():
                    return None  # no restart once stopping; a halt restarts it later
            try:
                await self._restart_targets(self._targets(child), child)
            except Exception as exc:  # noqa: BLE001 - e.g. no longer instantiates, a factory raised
                reason = _failed_restart(exc).detail
                continue
            return None

    def _targets(self, child: Child) -> list[Child]:
        if self.strategy is Strategy.ONE_FOR_ONE:
            return [child]
        if self.strategy is Strategy.ONE_FOR_ALL:
            return list(self._children)
        return self._children[self._children.index(child) :]

    async def _restart_targets(self, targets: list[Child], failed: Child) -> None:
        # OTP order: terminate in reverse start order, start again in start order.
        for child in reversed(targets):
            if child is not failed and self._slot(child).running:
                await self._terminate(child, drain=False)
                self._system._emit(EventKind.HALTED, child.address or "", f"restart after {failed.address}")
        for child in targets:
            if not self._slot(child).running:
                await self._restart_child(child)

    async def _restart_child(self, child: Child) -> None:
        await _drive(child).restart()
        self._system._emit(EventKind.RESTARTED, child.address or "")
        await self._start(child)

    async def _give_up(self, reason: str) -> Exit:
        detail = f"more than {self.max_restarts} restarts in {self.within:g} s (last: {reason})"
        self._system._emit(EventKind.GAVE_UP, self.address or "(root)", detail)
        await self._halt_all("its supervisor gave up")
        return Exit(ExitKind.GAVE_UP, detail)

    async def _halt_all(self, why: str) -> None:
        for child in reversed(self._children):
            if self._slot(child).running:
                await self._terminate(child, drain=False)
                self._system._emit(EventKind.HALTED, child.address or "", why)

    # -- children's tasks ----------------------------------------------------------------

    def _forget(self, child: Child) -> None:
        """Remove a child whose task has ended, and end it for good."""
        self._children.remove(child)
        self._slots.pop(id(child), None)
        _close(child)

    def _slot(self, child: Child) -> _Slot:
        slot = self._slots.get(id(child))
        if slot is None:
            slot = self._slots[id(child)] = _Slot()
        return slot

    async def _start(self, child: Child) -> None:
        assert self._tg is not None, "only the running supervisor task starts children"
        slot = self._slot(child)
        slot.epoch += 1
        slot.scope = anyio.CancelScope()
        slot.exited = anyio.Event()
        await self._tg.start(self._child_task, child, slot, slot.epoch)

    async def _child_task(
        self, child: Child, slot: _Slot, epoch: int, *, task_status: anyio.abc.TaskStatus[None]
    ) -> None:
        exit = Exit(ExitKind.KILLED, "cancelled after its shutdown time")
        try:
            with slot.scope:
                exit = await _drive(child).run(task_status=task_status)
        except Exception as exc:
            # A bug in a child's loop must not take its supervisor down: it is that child's crash.
            log.exception("%s failed", child.address)
            exit = Exit(ExitKind.CRASHED, f"{CrashKind.HOST_FAULT}: {type(exc).__name__}: {exc}")
        finally:
            slot.exited.set()
            self._inbox.post(_Exited(child, epoch, exit))

    async def _terminate(self, child: Child, *, drain: bool) -> None:
        """Stop a child's incarnation: ask it (drain, or halt after the current
        message), wait up to its shutdown time, then cancel it. Its exit is
        marked as handled here (the epoch moves on)."""
        slot = self._slot(child)
        slot.epoch += 1
        if not slot.running:
            return
        driven = _drive(child)
        driven.request_stop(drain=drain)
        with anyio.move_on_after(child.shutdown):
            await slot.exited.wait()
        if slot.running:
            driven.abort()
            slot.scope.cancel()
            await slot.exited.wait()


class _SupervisorChild:
    """A supervisor as its parent's task drives it: the child interface a
    cell has (run, request_stop, abort, restart, close), kept off the public
    :class:`Supervisor`, whose public methods are the ones users call."""

    __slots__ = ("_sup",)

    def __init__(self, sup: Supervisor) -> None:
        self._sup = sup

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> Exit:
        return await self._sup._run(task_status=task_status)

    def request_stop(self, *, drain: bool) -> None:
        self._sup._request_stop(drain=drain)

    def abort(self) -> None:
        self._sup._abort()

    async def restart(self) -> None:
        await self._sup._restart()

    def close(self) -> None:
        self._sup._close()


def _drive(child: Child) -> Cell | _SupervisorChild:
    """The child interface of ``child``: a cell's own methods, a supervisor's adapter."""
    return child._as_child if isinstance(child, Supervisor) else child


def _close(child: Child) -> None:
    _drive(child).close()


def _failed_restart(exc: BaseException) -> Exit:
    return Exit(ExitKind.CRASHED, f"restart failed: {exc}")


def _check_shutdown(shutdown: float) -> None:
    if not shutdown >= 0:
        raise ValueError(f"shutdown must be 0 (brutal kill), a number of seconds or math.inf, got {shutdown}")


def _shutdown(given: float | None, default: float) -> float:
    shutdown = default if given is None else given
    _check_shutdown(shutdown)
    return shutdown
