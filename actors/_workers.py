"""Worker threads that run wasm: long-lived, fed by one queue, and answering
the event loop with one callback.

The event loop never runs a guest. A cell hands a turn (or an instantiation)
to :meth:`Workers.run`; one of ``count`` daemon threads takes it from a
``queue.SimpleQueue`` and posts the result back with the loop's own
thread-safe hand-off (``call_soon_threadsafe`` on asyncio,
``TrioToken.run_sync_soon`` on trio). That is the whole hop: no capacity
limiter, no cancel scope, no thread started or looked up per call. Measured
on this machine against ``anyio.to_thread.run_sync`` with a limiter, for a
call that does nothing: about 40 µs a hop instead of 60-80 (asyncio) and
40 instead of 80-110 (trio) (docs/architecture.md).

Cancellation keeps ``anyio.to_thread.run_sync``'s meaning (without
``abandon_on_cancel``): a job cancelled while it waits in the queue never
runs and the cancellation is raised; a job that a thread has taken runs to
its end and :meth:`Workers.run` returns its result, the cancellation
arriving at the caller's next checkpoint. So a caller that sees the
cancellation knows nothing ran.
"""

from __future__ import annotations

import contextvars
import queue
import threading
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import anyio

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["Job", "Workers"]

T = TypeVar("T")

_QUEUED, _RUNNING, _CANCELLED = 0, 1, 2


class Job(Generic[T]):
    """One call: what to run, its state, and how to tell the loop it is done."""

    __slots__ = ("args", "error", "fn", "lock", "notify", "result", "state")

    def __init__(self, fn: Callable[..., T], args: tuple[Any, ...]) -> None:
        self.fn = fn
        self.args = args
        self.state = _QUEUED
        self.lock = threading.Lock()
        self.result: T | None = None
        self.error: BaseException | None = None
        #: Called on the worker thread once the job ran (posts to the loop).
        self.notify: Callable[[], object] = _nothing

    def take(self) -> bool:
        """On a worker: claim the job unless it was cancelled in the queue."""
        with self.lock:
            if self.state == _CANCELLED:
                return False
            self.state = _RUNNING
            return True

    def cancel(self) -> bool:
        """On the loop: withdraw the job if no worker has taken it yet."""
        with self.lock:
            if self.state == _QUEUED:
                self.state = _CANCELLED
                return True
            return False

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


def _nothing() -> None:
    return None


_STOP = None


class Workers:
    """``count`` long-lived threads for wasm calls (see the module docstring).

    Use as a context manager on the event loop that will call :meth:`run`;
    leaving it lets each thread finish its current job and exit.
    """

    def __init__(self, count: int, *, name: str = "wasmactors-worker") -> None:
        if count < 1:
            raise ValueError(f"workers must be at least 1, got {count}")
        self.count = count
        self._name = name
        self._queue: queue.SimpleQueue[Job[Any] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._asyncio = True
        self._loop: Any = None
        self._context: contextvars.Context | None = None
        self._token: Any = None

    def __enter__(self) -> Workers:
        import asyncio

        try:
            self._loop = asyncio.get_running_loop()
            # Completion callbacks run outside any task, where anyio (through
            # sniffio, when installed: trio brings it) could not tell which
            # library runs the loop: they run in a context that says so.
            # Without sniffio anyio assumes asyncio; trio says so for its
            # whole thread.
            self._context = contextvars.copy_context()
            try:
                import sniffio
            except ImportError:
                pass
            else:
                self._context.run(sniffio.current_async_library_cvar.set, "asyncio")
        except RuntimeError:  # not asyncio: trio
            import trio

            self._asyncio = False
            self._token = trio.lowlevel.current_trio_token()
        for i in range(self.count):
            thread = threading.Thread(target=self._work, name=f"{self._name}-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Let every thread finish its job and exit (never waits for them: a
        guest call ends within its own wall-clock limit)."""
        for _ in self._threads:
            self._queue.put(_STOP)
        self._threads.clear()

    def _work(self) -> None:
        get = self._queue.get
        while True:
            job = get()
            if job is None:
                return
            if not job.take():
                continue
            try:
                job.result = job.fn(*job.args)
            except BaseException as exc:  # noqa: BLE001 - handed to the caller, as to_thread does
                job.error = exc
            job.notify()

    def submit(self, fn: Callable[..., T], args: tuple[Any, ...], done: Callable[[Job[T]], object]) -> Job[T]:
        """Run ``fn(*args)`` on a worker thread and then ``done(job)`` on the
        event loop (``job.outcome()`` is the result); ``job.cancel()``
        withdraws it while no thread has taken it. ``done`` must not raise:
        on trio it would end the run."""
        if not self._threads:
            raise RuntimeError("the worker threads are not running")
        job = Job(fn, args)
        if self._asyncio:
            loop = self._loop
            context = self._context

            def notify_asyncio() -> None:  # on the worker
                try:  # noqa: SIM105 - per call: a try costs nothing, suppress() builds an object
                    loop.call_soon_threadsafe(done, job, context=context)
                except RuntimeError:  # the loop is closed: nobody waits any more
                    pass

            job.notify = notify_asyncio
        else:
            import trio

            token = self._token

            def notify_trio() -> None:  # on the worker
                try:  # noqa: SIM105 - per call: a try costs nothing, suppress() builds an object
                    token.run_sync_soon(done, job)
                except trio.RunFinishedError:  # nobody waits any more
                    pass

            job.notify = notify_trio
        self._queue.put(job)
        return job

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run ``fn(*args)`` on a worker thread and return its result."""
        if self._asyncio:
            return await self._run_asyncio(fn, args)
        return await self._run_trio(fn, args)

    async def _run_asyncio(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        import asyncio

        loop = self._loop
        future: asyncio.Future[None] = loop.create_future()
        done = False

        def finished(_: Job[T]) -> None:  # on the loop
            nonlocal done
            done = True
            if not future.done():
                future.set_result(None)

        job = self.submit(fn, args, finished)
        try:
            await future
        except asyncio.CancelledError:
            if job.cancel():
                raise  # it never ran
            if not done:  # it runs now: wait for it, shielded, and return its result
                with anyio.CancelScope(shield=True):
                    while not done:
                        waiting: asyncio.Future[None] = loop.create_future()
                        future = waiting
                        await waiting
        return job.outcome()

    async def _run_trio(self, fn: Callable[..., T], args: tuple[Any, ...]) -> T:
        import outcome
        import trio

        task = trio.lowlevel.current_task()

        def finished(_: Job[T]) -> None:  # on the loop
            trio.lowlevel.reschedule(task, outcome.Value(None))

        job = self.submit(fn, args, finished)

        def abort(_: object) -> trio.lowlevel.Abort:
            # Withdrawn from the queue: cancelled. Taken: it runs on, and the
            # cancellation comes at the caller's next checkpoint.
            return trio.lowlevel.Abort.SUCCEEDED if job.cancel() else trio.lowlevel.Abort.FAILED

        await trio.lowlevel.wait_task_rescheduled(abort)
        return job.outcome()
