"""Scenario 3, a pipeline: producer -> four Python-guest stages -> a native
sink, end-to-end throughput and peak RSS, on asyncio and on trio. Each stage
is the kitchen test guest, whose ``send TO REST`` command forwards REST to
TO: the message carries its own route, so every stage runs the same guest,
makes one host ``send`` and hands its message on through the host."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio

from tests.guests import python_guest
from wasmactors.actors import ActorSystem
from wasmactors.runtime import Limits, MemoryStorage, MiB

from ._util import peak_rss_bytes, reset_peak_rss, summary

if TYPE_CHECKING:
    from wasmactors.actors import NativeContext
    from wasmactors.messaging import Envelope
    from wasmactors.runtime import Component, Engine

LIMITS = Limits(memory=64 * MiB, fuel=10**9, timeout=10.0)
STAGES = 4
ROUTE = b" ".join(b"send s%d" % i for i in range(2, STAGES + 1)) + b" send sink "


class _Sink:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.done = anyio.Event()

    async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None:
        self.count += 1
        if self.count == self.expected:
            self.done.set()
        return None


async def _run(engine: Engine, stage: Component, messages: int) -> dict[str, float]:
    reset_peak_rss()
    async with ActorSystem(engine=engine, storage=MemoryStorage()) as system:
        sink = _Sink(messages)
        await system.spawn_native("sink", sink)
        first = None
        for i in range(STAGES, 0, -1):
            first = await system.spawn(f"s{i}", stage, limits=LIMITS)
        assert first is not None
        start = time.perf_counter()
        for i in range(messages):
            await first.tell(ROUTE + str(i).encode())
        await sink.done.wait()
        elapsed = time.perf_counter() - start
        return {"messages_per_s": messages / elapsed, "peak_rss_mib": peak_rss_bytes() / 2**20}


def run(engine: Engine, *, quick: bool) -> dict[str, Any]:
    messages, repeats = (200, 1) if quick else (100_000, 1)
    stage = engine.load(python_guest("kitchen"))
    out: dict[str, Any] = {"stages": STAGES, "messages": messages}
    for backend in ("asyncio", "trio"):
        runs = [anyio.run(_run, engine, stage, messages, backend=backend) for _ in range(repeats)]
        out[backend] = {
            "messages_per_s": summary([r["messages_per_s"] for r in runs]),
            "peak_rss_mib": max(r["peak_rss_mib"] for r in runs),
        }
    return out
