"""The worker threads that run wasm: results and errors come back, at most
``count`` jobs run at once, and cancellation means what it means for
``anyio.to_thread.run_sync``: a job withdrawn from the queue never ran, a
job already running finishes and its result is returned."""

from __future__ import annotations

import threading

import anyio
import pytest

from wasmactors.actors._workers import Workers

pytestmark = pytest.mark.anyio


def _raise() -> None:
    raise ValueError("from the worker")


async def test_results_and_errors_come_back() -> None:
    with Workers(2) as workers:
        assert await workers.run(pow, 2, 10) == 1024
        assert await workers.run(threading.current_thread) is not threading.current_thread()
        with pytest.raises(ValueError, match="from the worker"):
            await workers.run(_raise)


async def test_at_most_count_jobs_run_at_once() -> None:
    running = 0
    peak = 0
    lock = threading.Lock()
    gate = threading.Event()
    two_running = threading.Event()

    def job() -> None:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            if running == 2:
                two_running.set()
        gate.wait(5)
        with lock:
            running -= 1

    with Workers(2) as workers:
        async with anyio.create_task_group() as tg:
            for _ in range(6):
                tg.start_soon(workers.run, job)
            await anyio.to_thread.run_sync(two_running.wait, 5)
            gate.set()
    assert peak == 2


async def test_a_job_cancelled_in_the_queue_never_runs() -> None:
    ran: list[int] = []
    gate = threading.Event()
    started = threading.Event()

    def block() -> None:
        started.set()
        gate.wait(5)

    with Workers(1) as workers:
        async with anyio.create_task_group() as tg:
            tg.start_soon(workers.run, block)
            await anyio.to_thread.run_sync(started.wait, 5)
            with anyio.move_on_after(0.05) as scope:
                await workers.run(ran.append, 1)  # queued behind `block`
            assert scope.cancelled_caught
            gate.set()
        await workers.run(ran.append, 2)
    assert ran == [2]


async def test_a_running_job_finishes_and_its_result_is_returned() -> None:
    """Cancelled while a thread runs it: the caller gets the result (it ran),
    and the cancellation at its next checkpoint."""
    started = threading.Event()
    results: list[str] = []

    def slow() -> str:
        started.set()
        threading.Event().wait(0.2)
        return "done"

    with Workers(1) as workers:
        with anyio.CancelScope() as scope:

            async def cancel_once_started() -> None:
                await anyio.to_thread.run_sync(started.wait, 5)
                scope.cancel()

            async with anyio.create_task_group() as tg:
                tg.start_soon(cancel_once_started)
                results.append(await workers.run(slow))
                await anyio.lowlevel.checkpoint()
                results.append("not reached")
        assert scope.cancelled_caught
    assert results == ["done"]


async def test_many_overlapping_cancellations_lose_nothing() -> None:
    """Hundreds of jobs, half of them cancelled at random points: every job
    either ran and its caller got the result, or never ran and its caller was
    cancelled."""
    ran: set[int] = set()
    returned: set[int] = set()
    cancelled: set[int] = set()
    lock = threading.Lock()

    def job(i: int) -> int:
        with lock:
            ran.add(i)
        threading.Event().wait(0.0005)
        return i

    async def call(workers: Workers, i: int) -> None:
        with anyio.move_on_after(0.0005 * (i % 7)) as scope:
            returned.add(await workers.run(job, i))
        if scope.cancelled_caught and i not in returned:
            cancelled.add(i)

    with Workers(2) as workers:
        async with anyio.create_task_group() as tg:
            for i in range(400):
                tg.start_soon(call, workers, i)
    assert returned | cancelled == set(range(400))
    assert not returned & cancelled
    assert ran == returned
