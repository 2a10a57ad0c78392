"""A bounded mailbox that lives in the actor cell, not in the instance, so a
restart keeps what is queued."""

from __future__ import annotations

from collections import deque
from typing import TYPE_CHECKING, Generic, TypeVar

import anyio

if TYPE_CHECKING:
    from collections.abc import Iterable

T = TypeVar("T")

__all__ = ["YIELD_EVERY", "Mailbox"]

#: A producer's ``put`` yields to other tasks at least this often.
YIELD_EVERY = 64


class Mailbox(Generic[T]):
    """FIFO with a capacity for senders and one reader (the actor's loop).

    ``put_nowait(..., force=True)`` bypasses the capacity: replies to the
    actor's own requests must never wait behind a full mailbox (two actors
    requesting from each other would deadlock); they are bounded by the
    number of requests the actor made.
    """

    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError(f"mailbox capacity must be at least 1, got {capacity}")
        self.capacity = capacity
        self._items: deque[T] = deque()
        self._readable = anyio.Event()
        self._writable = anyio.Event()
        self.closed = False
        #: The reader waits in :meth:`take` for an item.
        self._reading = False
        #: Largest depth seen.
        self.high_water = 0
        self._puts = 0

    def __len__(self) -> int:
        return len(self._items)

    def put_nowait(self, item: T, *, force: bool = False) -> None:
        """Append ``item``; ``anyio.WouldBlock`` when full, ``anyio.ClosedResourceError`` when closed."""
        if self.closed:
            raise anyio.ClosedResourceError
        items = self._items
        if not force and len(items) >= self.capacity:
            raise anyio.WouldBlock
        items.append(item)
        depth = len(items)
        self.high_water = max(self.high_water, depth)
        if self._reading:  # only a waiting reader needs the wake-up (a set() per put costs)
            self._readable.set()

    async def put(self, item: T) -> None:
        """Append ``item``, waiting for room (backpressure).

        Always a cancellation point. It yields to other tasks when the put
        wakes the reader (an empty mailbox) and at least every
        :data:`YIELD_EVERY` puts, not on every put: a producer then queues a
        run of messages while the actor's previous turn runs, and the next turn
        takes them as one batch (one worker-thread hop instead of many). As
        ``asyncio.Queue.put``, it does not yield while there is room.
        """
        await anyio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                self.put_nowait(item)
            except anyio.WouldBlock:
                await self._writable.wait()
            else:
                self._puts += 1
                if len(self._items) == 1 or self._puts % YIELD_EVERY == 0:
                    await anyio.lowlevel.cancel_shielded_checkpoint()
                return

    async def take(self, limit: int) -> list[T]:
        """Wait for at least one item and return up to ``limit`` of them; ``[]``
        when closed and empty or when :meth:`wake` was called."""
        if not self._items and not self.closed:
            if self._readable.is_set():
                self._readable = anyio.Event()
            self._reading = True
            try:
                await self._readable.wait()
            finally:
                self._reading = False
        if self._readable.is_set():
            self._readable = anyio.Event()
        batch = [self._items.popleft() for _ in range(min(limit, len(self._items)))]
        if batch:
            self._writable.set()
            self._writable = anyio.Event()
        return batch

    def head(self) -> T | None:
        """The next item, without taking it."""
        return self._items[0] if self._items else None

    def wake(self) -> None:
        """Make a waiting :meth:`take` return (with nothing) so the owner can act."""
        self._readable.set()

    def push_front(self, items: Iterable[T]) -> None:
        """Put items back at the head, in order (what a crashed turn did not reach)."""
        self._items.extendleft(reversed(list(items)))
        if self._items:
            self._readable.set()

    def close(self) -> list[T]:
        """Refuse further puts and return what was queued."""
        self.closed = True
        left = list(self._items)
        self._items.clear()
        self._readable.set()
        self._writable.set()
        return left
