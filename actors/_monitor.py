"""Monitors: a watch on an actor's name, here or on another node (OTP's
``erlang:monitor/2``; across nodes, as in OTP, a monitor rather than a link).

A :class:`Monitor` is *down* once no live actor has the name: it stopped
for good (not a restart), its node released it at a normal stop, the
node's lease on it lapsed (the node died or is cut off), or it never
existed (OTP's ``noproc``). Supervision stays local: a monitor only
tells; what to do about it is the watcher's decision.
"""

from __future__ import annotations

import anyio

__all__ = ["Monitor"]


class Monitor:
    """Returned by :meth:`ActorSystem.monitor`; ``await monitor.wait()``."""

    def __init__(self, address: str) -> None:
        self.address = address
        #: Why it went down (empty while it is up).
        self.reason = ""
        self._event = anyio.Event()

    def __repr__(self) -> str:
        state = f"down: {self.reason}" if self.down else "up"
        return f"<Monitor {self.address} {state}>"

    @property
    def down(self) -> bool:
        return self._event.is_set()

    async def wait(self) -> str:
        """Wait until the actor is down; the reason."""
        await self._event.wait()
        return self.reason

    def _fire(self, reason: str) -> None:
        if not self._event.is_set():
            self.reason = reason
            self._event.set()
