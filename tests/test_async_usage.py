"""The runtime from async code: calls run on worker threads, on asyncio and trio."""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest

from wasmactors.runtime import Component, Instance, Limits, MiB, Success

if TYPE_CHECKING:
    from collections.abc import Mapping

pytestmark = pytest.mark.anyio

LIMITS = Limits(memory=4 * MiB, fuel=10**9, timeout=5.0)


async def test_calls_run_on_worker_threads_without_blocking_the_loop(wat: Mapping[str, Component]) -> None:
    """While a guest computes in a thread, the event loop keeps running tasks."""
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await anyio.lowlevel.checkpoint()

    with Instance(wat["fuel_burner"], LIMITS) as inst:
        with anyio.fail_after(30):
            async with anyio.create_task_group() as tg:
                tg.start_soon(ticker)
                result = await anyio.to_thread.run_sync(inst.handle_message, b"x" * 20)
                tg.cancel_scope.cancel()
    assert result.outcome == Success(None) or result.ok
    assert ticks > 10


async def test_separate_instances_run_in_parallel_threads(wat: Mapping[str, Component]) -> None:
    """Two instances, each owned by one task, are called concurrently and both answer."""
    results: dict[int, bytes | None] = {}

    async def serve(n: int) -> None:
        with Instance(wat["echo"], LIMITS) as inst:
            for i in range(20):
                call = functools.partial(inst.handle_message, f"{n}:{i}".encode(), request=True)
                res = await anyio.to_thread.run_sync(call)
                assert isinstance(res.outcome, Success)
                results[n] = res.outcome.reply

    with anyio.fail_after(30):
        async with anyio.create_task_group() as tg:
            for n in range(2):
                tg.start_soon(serve, n)
    assert results == {0: b"0:19", 1: b"1:19"}
