"""Scenario 4, fan-out: N actors (1, 2, 4, 16, 256) each handling the same
CPU-bound wasm messages (the fuel-burner WAT guest counts down 3 million
iterations a message). Throughput in messages per second and the speed-up
over one actor show how the worker threads spread over the machine's cores."""

from __future__ import annotations

import functools
import os
import time
from typing import TYPE_CHECKING, Any

import anyio

from tests.guests import wat_guest
from wasmactors.actors import ActorSystem
from wasmactors.runtime import Limits, MemoryStorage, MiB

from ._util import summary

if TYPE_CHECKING:
    from wasmactors.runtime import Component, Engine

LIMITS = Limits(memory=4 * MiB, fuel=10**10, timeout=30.0)
WORK = b"xxx"  # 3 x 1,000,000 iterations
COUNTS = (1, 2, 4, 16, 256)


async def _run(engine: Engine, burner: Component, actors: int, per_actor: int) -> float:
    async with ActorSystem(engine=engine, storage=MemoryStorage()) as system:
        refs = [await system.spawn(f"w{i}", burner, limits=LIMITS) for i in range(actors)]
        for ref in refs:
            await ref.ask(WORK, timeout=30)  # warm
        start = time.perf_counter()
        async with anyio.create_task_group() as tg:
            for ref in refs:
                for _ in range(per_actor):
                    tg.start_soon(functools.partial(ref.ask, WORK, timeout=60.0))
        return actors * per_actor / (time.perf_counter() - start)


def run(engine: Engine, *, quick: bool) -> dict[str, Any]:
    burner = engine.load(wat_guest("fuel_burner"), name="fuel_burner")
    repeats = 1 if quick else 3
    counts = COUNTS[:3] if quick else COUNTS
    rows: dict[str, Any] = {}
    for n in counts:
        # The same total work per run for N >= 16; enough work per actor below.
        per_actor = 2 if quick else max(64 // n, 2)
        rates = [anyio.run(_run, engine, burner, n, per_actor) for _ in range(repeats)]
        rows[str(n)] = {"messages_per_s": summary(rates)}
    base = rows["1"]["messages_per_s"]["median"]
    for row in rows.values():
        row["speedup"] = row["messages_per_s"]["median"] / base
    return {"cores": os.cpu_count(), "actors": rows}
