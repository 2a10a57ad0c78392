"""Host-native actors: Python objects with ``async handle_message``, run on the event loop."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol, Union

import anyio

from ..messaging import Callback, Envelope, Reply, RequestError, RequestFailure
from ..runtime import Crash, CrashKind
from ._cell import Cell, Exit, RestartType
from ._observe import DeadLetterReason

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._env import CellEnv

__all__ = ["NativeActor", "NativeCell", "NativeContext", "NativeSource", "Reject"]


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
    """What a native handler can do: its address, messaging, and stopping itself."""

    def __init__(self, cell: NativeCell) -> None:
        self._cell = cell
        #: The actor's address.
        self.address = cell.address

    async def tell(self, to: str, payload: bytes) -> None:
        await self._cell.env.ref(to).tell(payload, sender=self.address)

    async def ask(self, to: str, payload: bytes, *, timeout: float) -> bytes:
        return await self._cell.env.ref(to).ask(payload, timeout=timeout)

    def stop(self) -> None:
        """Stop this actor normally once the current message is answered (OTP's
        normal exit): a ``TRANSIENT`` or ``TEMPORARY`` actor is removed and its
        queued messages become dead letters; a ``PERMANENT`` one is restarted."""
        self._cell.request_exit()


class NativeCell(Cell):
    """An actor whose behaviour is a Python object with ``async handle_message``."""

    def __init__(
        self,
        env: CellEnv,
        address: str,
        source: NativeSource,
        *,
        mailbox_size: int,
        restart: RestartType,
        shutdown: float,
    ) -> None:
        super().__init__(env, address, mailbox_size=mailbox_size, restart=restart, shutdown=shutdown)
        self._factory = _factory(source)
        self.behaviour: NativeActor = self._factory() if self._factory else source  # type: ignore[assignment]
        self.context = NativeContext(self)

    def request_exit(self) -> None:
        self._exit_requested = True

    async def restart(self) -> None:
        await super().restart()
        if self._factory is not None:
            self.behaviour = self._factory()

    async def process(self, batch: list[Envelope]) -> Exit | None:
        for i, envelope in enumerate(batch):
            if isinstance(envelope, Reply | Callback):
                self.env.dead_letter(
                    envelope, DeadLetterReason.UNEXPECTED_REPLY, "native actors await their asks directly"
                )
                continue
            if self._halting or self._exit_requested:
                self.mailbox.push_front(batch[i:])
                return None
            start = time.perf_counter()
            try:
                reply = await self.behaviour.handle_message(envelope, self.context)
            except anyio.get_cancelled_exc_class():
                # Killed past its shutdown time mid-handler: this message is
                # accounted for, the rest go back to the mailbox.
                self.mailbox.push_front(batch[i + 1 :])
                self.discard(envelope, "cancelled in its handler")
                raise
            except Reject as exc:
                self.stats.handled += 1
                self.stats.app_errors += 1
                self.reply(envelope, RequestError(RequestFailure.APP_ERROR, str(exc)))
                continue
            except Exception as exc:  # noqa: BLE001 - a native handler's bug is its crash
                self.stats.handled += 1
                self.mailbox.push_front(batch[i + 1 :])
                return self.crashed(envelope, Crash(CrashKind.HOST_FAULT, f"{type(exc).__name__}: {exc}"))
            self.stats.handled += 1
            self.stats.latencies.append(time.perf_counter() - start)
            if reply is not None and type(reply) is not bytes:
                # The reply may go to a component: only exact bytes cross.
                self.reply(
                    envelope,
                    RequestError(RequestFailure.APP_ERROR, f"a reply is bytes, not {type(reply).__name__}"),
                )
                continue
            self.reply(envelope, reply or b"")
        return None
