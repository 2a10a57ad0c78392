"""Supervisors: OTP restart strategies, restart types, intensity and backoff."""

from __future__ import annotations

import enum
from collections import deque
from typing import TYPE_CHECKING, Union

import anyio
import msgspec

from ..messaging import child_address
from ..runtime import WasmActorsError
from ._cell import Cell, ComponentCell, NativeCell, RestartType
from ._errors import SystemFailedError
from ._observe import EventKind

if TYPE_CHECKING:
    import os

    from ..runtime import Component, Limits, Manifest
    from ._cell import NativeSource
    from ._system import ActorRef, ActorSystem

__all__ = ["ONE_FOR_ALL", "ONE_FOR_ONE", "REST_FOR_ONE", "Backoff", "Strategy", "Supervisor"]


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


class Supervisor:
    """Owns children (actors and supervisors) and restarts them when they fail.

    At most ``max_restarts`` restarts within ``within`` seconds; one more and
    the supervisor gives up: it halts its children and fails itself, so its
    own supervisor applies its strategy. When the root gives up, the system
    stops with :class:`SystemFailedError`.
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
    ) -> None:
        if max_restarts < 0 or within <= 0:
            raise ValueError("max_restarts must be >= 0 and within > 0")
        self.system = system
        self.address = address
        self.parent = parent
        self.strategy = Strategy(strategy)
        self.max_restarts = max_restarts
        self.within = within
        self.backoff = backoff
        self.restart_type = restart
        #: Children in start order.
        self.children: list[Child] = []
        self._history: deque[float] = deque()
        self._lock = anyio.Lock()

    def __repr__(self) -> str:
        return f"<Supervisor {self.address or '(root)'} {self.strategy}>"

    # -- building the tree --------------------------------------------------

    def child_address(self, name: str) -> str:
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
    ) -> Supervisor:
        """A nested supervisor under this one."""
        address = self.child_address(name)
        self.system.reserve(address)
        sup = Supervisor(
            self.system,
            address,
            self,
            strategy=strategy,
            max_restarts=max_restarts,
            within=within,
            backoff=backoff,
            restart=restart,
        )
        self.children.append(sup)
        self.system.emit(EventKind.STARTED, address)
        return sup

    async def spawn(
        self,
        name: str,
        source: Manifest | Component | str | os.PathLike[str],
        *,
        limits: Limits | None = None,
        mailbox_size: int | None = None,
        restart: RestartType = RestartType.PERMANENT,
    ) -> ActorRef:
        """Start a component actor under this supervisor; ``limits`` override the manifest's."""
        system = self.system
        component, declared = await system.load(source)
        chosen = limits or declared
        if chosen is None:
            raise ValueError(f"{name}: give limits=Limits(...) or spawn from a Manifest that declares them")
        cell = ComponentCell(
            system,
            self.child_address(name),
            self,
            component,
            chosen,
            mailbox_size=mailbox_size or system.mailbox_size,
            restart=restart,
        )
        return await system.start_cell(self, cell)

    async def spawn_native(
        self,
        name: str,
        behaviour: NativeSource,
        *,
        mailbox_size: int | None = None,
        restart: RestartType = RestartType.PERMANENT,
    ) -> ActorRef:
        """Start a host-native actor under this supervisor (an object or a factory: see
        :meth:`ActorSystem.spawn_native`)."""
        system = self.system
        cell = NativeCell(
            system,
            self.child_address(name),
            self,
            behaviour,
            mailbox_size=mailbox_size or system.mailbox_size,
            restart=restart,
        )
        return await system.start_cell(self, cell)

    # -- failure handling -----------------------------------------------------

    async def child_failed(self, child: Child, reason: str, origin: Cell | None = None) -> None:
        """``child`` crashed (or, for a supervisor, gave up). Runs on the loop of
        ``origin``, the cell whose crash started this (``child`` itself for a cell)."""
        origin = origin or (child if isinstance(child, Cell) else None)
        async with self._lock:
            if child not in self.children:
                return
            if child.restart_type is RestartType.TEMPORARY:
                self.children.remove(child)
                await _stop(child, origin, drain=False)
                return
            while True:
                now = anyio.current_time()
                while self._history and now - self._history[0] > self.within:
                    self._history.popleft()
                self._history.append(now)
                if len(self._history) > self.max_restarts:
                    break
                if self.backoff is not None:
                    await anyio.sleep(self.backoff.delay(len(self._history)))
                try:
                    await self._restart(self._targets(child), origin)
                except WasmActorsError as exc:  # e.g. the component no longer instantiates
                    reason = f"restart failed: {exc}"
                    continue
                return
        await self._give_up(reason, origin)

    def _targets(self, child: Child) -> list[Child]:
        if self.strategy is Strategy.ONE_FOR_ONE:
            return [child]
        if self.strategy is Strategy.ONE_FOR_ALL:
            return list(self.children)
        return self.children[self.children.index(child) :]

    async def _restart(self, targets: list[Child], origin: Cell | None) -> None:
        # OTP order: terminate in reverse start order, start again in start order.
        for child in reversed(targets):
            await _on_loop(child, origin, "halt")
        for child in targets:
            await _on_loop(child, origin, "resume")
            self.system.emit(EventKind.RESTARTED, child.address or "")

    async def _give_up(self, reason: str, origin: Cell | None) -> None:
        detail = f"more than {self.max_restarts} restarts in {self.within:g} s (last: {reason})"
        self.system.emit(EventKind.GAVE_UP, self.address or "(root)", detail)
        for child in reversed(self.children):
            await _on_loop(child, origin, "halt")
        if self.parent is not None:
            await self.parent.child_failed(self, f"{self.address} gave up", origin)
        else:
            self.system.fail(SystemFailedError(f"the root supervisor gave up: {detail}"))

    # -- the Child interface for nested supervisors -----------------------------

    async def halt(self, origin: Cell | None = None) -> None:
        for child in reversed(self.children):
            await _on_loop(child, origin, "halt")

    async def resume(self, origin: Cell | None = None) -> None:
        """Restart: every child starts afresh and the intensity history is cleared."""
        self._history.clear()
        for child in self.children:
            await _on_loop(child, origin, "resume")

    async def stop(self, *, drain: bool, deadline: float) -> None:
        """Stop every child, last started first (OTP shutdown order)."""
        for child in reversed(list(self.children)):
            await child.stop(drain=drain, deadline=deadline)
        self.children.clear()
        if self.address is not None:
            self.system.release_name(self.address)
            self.system.emit(EventKind.STOPPED, self.address)

    async def remove(self, child: Child, *, deadline: float) -> None:
        """Stop one child normally and forget it."""
        if child in self.children:
            self.children.remove(child)
            await child.stop(drain=True, deadline=deadline)


async def _on_loop(child: Child, origin: Cell | None, action: str) -> None:
    """Run ``child.halt()``/``resume()``: directly for supervisors and for the
    cell whose loop we are on, otherwise between that cell's turns."""
    if isinstance(child, Supervisor):
        await getattr(child, action)(origin)
        return
    if child is origin or not child.loop_alive:
        await getattr(child, action)()
        return
    done = anyio.Event()

    async def run() -> None:
        try:
            await getattr(child, action)()
        finally:
            done.set()

    child.request_control(run)
    await done.wait()


async def _stop(child: Child, origin: Cell | None, *, drain: bool) -> None:
    deadline = anyio.current_time()
    if child is origin and isinstance(child, Cell):
        child.end()  # the loop running this ends on its own once we return
        return
    await child.stop(drain=drain, deadline=deadline)
