"""One timer for many deadlines: ask timeouts and guest request timeouts.

``anyio.fail_after`` costs 13-18 µs per ask, and a sleeping task per guest
request costs a task. Instead each system keeps its pending deadlines in one
heap served by one task, which calls each entry's callback (on the event
loop) when its time comes. Cancelling an entry is O(1): it is skipped when it
reaches the top, and the heap is compacted when most of it is cancelled.
"""

from __future__ import annotations

import heapq
import itertools
from typing import TYPE_CHECKING

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Deadline", "Deadlines"]

#: Compact the heap when more than this many entries (and half of it) are cancelled.
_COMPACT_AT = 1024


class Deadline:
    """One pending deadline; :meth:`cancel` it once it no longer matters."""

    __slots__ = ("_owner", "callback")

    def __init__(self, owner: Deadlines, callback: Callable[[], None]) -> None:
        self._owner = owner
        self.callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        if self.callback is not None:
            self.callback = None
            self._owner._cancelled += 1


class Deadlines:
    """A heap of deadlines and the one task (:meth:`run`) that fires them."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._changed = anyio.Event()
        self._cancelled = 0

    def __len__(self) -> int:
        return len(self._heap) - self._cancelled

    def after(self, delay: float, callback: Callable[[], None]) -> Deadline:
        """Call ``callback`` once ``delay`` seconds have passed, unless cancelled first."""
        when = anyio.current_time() + delay
        deadline = Deadline(self, callback)
        heap = self._heap
        heapq.heappush(heap, (when, next(self._order), deadline))
        if heap[0][2] is deadline:
            self._changed.set()  # a new earliest deadline: the timer task re-arms
        if self._cancelled > _COMPACT_AT and self._cancelled * 2 > len(heap):
            self._heap = [entry for entry in heap if entry[2].callback is not None]
            heapq.heapify(self._heap)
            self._cancelled = 0
        return deadline

    async def run(self) -> None:
        """Fire deadlines as they come due, until cancelled."""
        while True:
            if self._changed.is_set():
                self._changed = anyio.Event()
            if self._heap:
                with anyio.move_on_at(self._heap[0][0]):
                    await self._changed.wait()
            else:
                await self._changed.wait()
            now = anyio.current_time()
            heap = self._heap
            while heap and heap[0][0] <= now:
                deadline = heapq.heappop(heap)[2]
                callback = deadline.callback
                if callback is None:
                    self._cancelled -= 1
                    continue
                deadline.callback = None
                callback()
