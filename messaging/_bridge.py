"""A nats-py client for a caller on asyncio or trio.

nats-py is asyncio-only. Under trio the client runs on a private asyncio
loop in a daemon thread; under asyncio it runs on the caller's own loop
(``inline``), which saves two thread crossings per message each way (the
ask round trips in docs/cluster.md were measured both ways). Either way the
caller talks to it through two queues, each drained in batches:

* outbound publishes: :meth:`NatsBridge.publish` appends to a deque and, if no
  drain is scheduled, schedules one on the NATS loop (one thread wake-up per
  batch, not per message);
* inbound messages: subscription callbacks append to a deque on the NATS loop
  and wake the caller's loop the same way; :meth:`NatsBridge.inbound` hands
  the batch to one task there.

The cost was measured against nats-py on the caller's own loop:
docs/cluster.md has the figures.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import threading
from typing import TYPE_CHECKING, Any, NamedTuple, TypeVar

import anyio

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Coroutine

    from nats.aio.client import Client
    from nats.aio.msg import Msg
    from nats.aio.subscription import Subscription

__all__ = ["Incoming", "NatsBridge"]

log = logging.getLogger("wasmactors.cluster")

T = TypeVar("T")


class Incoming(NamedTuple):
    """A message received from NATS, as plain values."""

    subject: str
    reply: str
    data: bytes
    #: The NATS status header (``"503"`` for no responders), or ``""``.
    status: str
    #: A JetStream message's ``Nats-Msg-Id`` header (durable mode), or ``""``.
    msgid: str = ""


def _waker() -> Callable[[Callable[[], object]], None]:
    """Schedule a callback on the current (caller's) event loop from any thread.
    The one place that knows which backend runs the caller."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: trio
        import trio

        token = trio.lowlevel.current_trio_token()

        def soon_trio(callback: Callable[[], object]) -> None:
            with contextlib.suppress(trio.RunFinishedError):  # the caller's loop ended
                token.run_sync_soon(callback)

        return soon_trio

    def soon_asyncio(callback: Callable[[], object]) -> None:
        with contextlib.suppress(RuntimeError):  # the caller's loop is closed
            loop.call_soon_threadsafe(callback)

    return soon_asyncio


class NatsBridge:
    """Owns a nats-py connection on a private loop; used from the caller's loop."""

    def __init__(self, *, inline: bool | None = None) -> None:
        #: Run on the caller's loop (asyncio only); ``None``: whenever the caller runs asyncio.
        self.inline = inline
        self._loop = asyncio.new_event_loop()
        self._thread: threading.Thread | None = None
        self._soon: Callable[[Callable[[], object]], object] = self._loop.call_soon_threadsafe
        self._tasks: set[asyncio.Task[Any]] = set()
        self._nc: Client | None = None
        self._out: collections.deque[tuple[str, bytes, str]] = collections.deque()
        self._out_scheduled = False
        #: Inline: called on the loop before the next drain publishes (see ``publish_soon``).
        self._before: list[Callable[[], object]] = []
        #: Threaded: run a callback on the caller's loop soon.
        self._caller_soon: Callable[[Callable[[], object]], object] | None = None
        self._in: collections.deque[Incoming] = collections.deque()
        self._in_scheduled = False
        self._in_event: anyio.Event | None = None
        self._handler: Callable[[Incoming], None] | None = None
        self._wake: Callable[[Callable[[], object]], None] | None = None
        self._subs: dict[str, Subscription] = {}
        self._closed = False

    # -- lifetime (caller's loop) ------------------------------------------------

    async def connect(self, servers: str | list[str], **options: Any) -> None:
        import nats

        try:
            caller: asyncio.AbstractEventLoop | None = asyncio.get_running_loop()
        except RuntimeError:  # trio
            caller = None
        if self.inline is None:
            self.inline = caller is not None
        if self.inline:
            if caller is None:
                raise RuntimeError("an inline NATS bridge needs the caller to run asyncio")
            self._loop.close()
            self._loop = caller
            self._soon = caller.call_soon
            self._wake = _direct
        else:
            self._wake = _waker()
            self._caller_soon = _caller_soon()
            self._thread = threading.Thread(
                target=self._loop.run_forever, name="wasmactors-nats", daemon=True
            )
            self._thread.start()
        self._in_event = anyio.Event()
        options.setdefault("disconnected_cb", self._disconnected)
        options.setdefault("reconnected_cb", self._reconnected)
        self._nc = await self.call(nats.connect(servers, **options))

    async def _disconnected(self) -> None:
        if not self._closed:
            log.warning("disconnected from the NATS server; reconnecting")

    async def _reconnected(self) -> None:
        log.warning("reconnected to the NATS server")

    @property
    def client(self) -> Client:
        """The nats-py client: use it only inside coroutines given to :meth:`call`."""
        assert self._nc is not None, "connect() first"
        return self._nc

    async def aclose(self, *, drain: bool = True) -> None:
        """Flush what is queued and close the connection (``drain=False``: drop
        it at once, as a crash would), then end the thread."""
        if self._closed:
            return
        self._closed = True
        nc = self._nc
        if nc is not None and not nc.is_closed:

            async def finish() -> None:
                await self._drain_out()
                if drain:
                    await _flush(nc)
                await nc.close()
                if self._thread is not None:
                    # The private loop is ours alone: end the helper tasks nats-py leaves.
                    others = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                    for task in others:
                        task.cancel()
                    await asyncio.gather(*others, return_exceptions=True)

            with anyio.CancelScope(shield=True):
                with contextlib.suppress(Exception):  # a broken connection is closed either way
                    await self.call(finish())
        if self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            await anyio.to_thread.run_sync(self._thread.join, 5)
            if not self._thread.is_alive():
                self._loop.close()

    # -- calls into the NATS loop -------------------------------------------------

    async def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the NATS loop and wait for its result here."""
        if self._thread is None:
            return await coro
        assert self._wake is not None
        future = asyncio.run_coroutine_threadsafe(coro, self._loop)
        done = anyio.Event()
        wake = self._wake
        future.add_done_callback(lambda _: wake(done.set))
        try:
            await done.wait()
        except BaseException:
            future.cancel()
            raise
        return future.result()

    def notify(self, callback: Callable[[], object]) -> None:
        """From the NATS loop: run ``callback`` on the caller's loop soon."""
        assert self._wake is not None
        self._wake(callback)

    def publish(self, subject: str, data: bytes, reply: str = "") -> None:
        """Queue a publish; never waits (batched onto the NATS loop)."""
        self._out.append((subject, data, reply))
        with contextlib.suppress(RuntimeError):  # closed: lost, as after a crash
            self._drain_soon()

    def _drain_soon(self) -> None:
        """Start one drain of the queued publishes, if none is pending (raises
        ``RuntimeError`` once the NATS loop has ended)."""
        if self._out_scheduled:
            return
        self._out_scheduled = True
        if self._thread is None and self._nc is not None:
            # Inline: this is the NATS loop already; its drain starts next turn.
            self._spawn_here(self._drain_out())
        else:
            self._soon(self._schedule_drain)

    def publish_soon(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` on the caller's loop soon, before the publishes
        queued now leave (it may queue more): how a caller gathers a turn's
        messages into batches without adding a step on the way out. Raises
        ``RuntimeError`` once the loop has ended."""
        if self._thread is None:
            self._before.append(callback)
            self._drain_soon()
        else:
            self.soon(callback)

    def soon(self, callback: Callable[[], object]) -> None:
        """Call ``callback`` on the caller's loop soon (from that loop)."""
        if self._thread is None:
            self._soon(callback)
        else:
            assert self._caller_soon is not None, "connect() first"
            self._caller_soon(callback)

    def _schedule_drain(self) -> None:
        self._spawn_here(self._drain_out())

    def spawn(self, coro: Coroutine[Any, Any, object]) -> None:
        """Run ``coro`` on the NATS loop without waiting for it."""
        with contextlib.suppress(RuntimeError):  # closed
            self._soon(lambda: self._spawn_here(coro))

    def _spawn_here(self, coro: Coroutine[Any, Any, object]) -> None:
        task = self._loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _drain_out(self) -> None:
        while self._before:  # a callback may add one
            before, self._before = self._before, []
            for callback in before:
                callback()
        self._out_scheduled = False
        nc = self._nc
        out = self._out
        while out:
            subject, data, reply = out.popleft()
            if nc is None or nc.is_closed:
                continue
            try:
                await nc.publish(subject, data, reply=reply)
            except Exception:  # noqa: BLE001 - a publish on a broken connection is lost, as on a crash
                continue

    # -- subscriptions -----------------------------------------------------------------

    async def subscribe(self, subject: str) -> None:
        """Deliver messages on ``subject`` to :meth:`inbound`; returns once the
        server has the subscription (a round trip)."""

        async def sub() -> None:
            nc = self.client
            self._subs[subject] = await nc.subscribe(subject, cb=self._received)
            await _flush(nc)

        await self.call(sub())

    async def answer_pings(self, subject: str) -> None:
        """Answer every request on ``subject`` with an empty reply, on the NATS
        loop: other nodes ask whether this one is alive."""

        async def pong(msg: Msg) -> None:
            if msg.reply:
                with contextlib.suppress(Exception):  # the asker is gone
                    await msg.respond(b"")

        async def sub() -> None:
            nc = self.client
            self._subs[subject] = await nc.subscribe(subject, cb=pong)
            await _flush(nc)

        await self.call(sub())

    async def unsubscribe_here(self, subject: str) -> None:
        """On the NATS loop: drop a subscription and wait until the server has it."""
        sub = self._subs.pop(subject, None)
        if sub is not None and self._nc is not None and not self._nc.is_closed:
            with contextlib.suppress(Exception):  # a broken connection drops it anyway
                await sub.unsubscribe()
                await _flush(self._nc)

    def unsubscribe(self, subject: str) -> None:
        """Drop a subscription (scheduled; never waits)."""

        def unsub() -> None:
            sub = self._subs.pop(subject, None)
            if sub is not None:
                self._spawn_here(_quietly(sub.unsubscribe()))

        with contextlib.suppress(RuntimeError):  # closed: nothing to drop
            self._soon(unsub)

    def run_soon(self, callback: Callable[[], object]) -> None:
        """Run ``callback`` on the NATS loop soon (raises ``RuntimeError`` once closed)."""
        self._soon(callback)

    async def _received(self, msg: Msg) -> None:
        headers = msg.headers
        status = headers.get("Status", "") if headers else ""
        self.enqueue(Incoming(msg.subject, msg.reply, msg.data, status))

    def handle_inline(self, handler: Callable[[Incoming], None]) -> bool:
        """Inline (asyncio): call ``handler`` with each received message as it
        comes, on the NATS loop, which is the caller's (no wake-up of a
        receiving task: one step less per message each way); what came
        before is handled now. ``False`` when the client has its own thread:
        use :meth:`inbound`."""
        if self._thread is not None or not self.inline:
            return False
        self._handler = handler
        while self._in:
            handler(self._in.popleft())
        return True

    def enqueue(self, incoming: Incoming) -> None:
        """On the NATS loop: hand a message to :meth:`inbound` (or the inline handler)."""
        if self._handler is not None:
            self._handler(incoming)
            return
        self._in.append(incoming)
        if not self._in_scheduled:
            self._in_scheduled = True
            assert self._wake is not None
            self._wake(self._set_in)

    def _set_in(self) -> None:
        if self._in_event is not None:
            self._in_event.set()

    async def inbound(self) -> list[Incoming]:
        """Wait for the next batch of received messages (one task calls this)."""
        assert self._in_event is not None
        await self._in_event.wait()
        self._in_event = anyio.Event()
        self._in_scheduled = False
        batch = []
        while self._in:
            batch.append(self._in.popleft())
        return batch


async def _flush(nc: Client) -> None:
    """Return once the server has processed every command sent so far.

    nats-py's ``flush`` alone does not promise that: it writes its PING
    straight to the socket while commands such as SUB and UNSUB wait in the
    client's pending buffer for its flusher task, so the PONG can come back
    before the server has seen the SUB (a publish from another connection
    right after it was lost about one time in twenty in tests). So first
    wait until the flusher has written the buffer, then ping."""
    flush_pending = getattr(nc, "_flush_pending", None)
    if flush_pending is not None:
        # nats-py's own wait here has no bound by default: a stalled socket must not hang us.
        await asyncio.wait_for(flush_pending(force_flush=True), 5)
    await nc.flush(timeout=5)


def _caller_soon() -> Callable[[Callable[[], object]], object]:
    """Run a callback on the current (caller's) event loop soon, from that loop."""
    try:
        return asyncio.get_running_loop().call_soon
    except RuntimeError:  # not asyncio: trio
        import trio

        return trio.lowlevel.current_trio_token().run_sync_soon


def _direct(callback: Callable[[], object]) -> None:
    callback()


async def _quietly(awaitable: Awaitable[object]) -> None:
    with contextlib.suppress(Exception):  # unsubscribing from a closed connection
        await awaitable
