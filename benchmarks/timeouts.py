"""Scenario 7, timeout accuracy: how late a 50 ms wall-clock timeout fires
while other Python threads hold the GIL, with wasmactors' POSIX-timer epoch
ticker beside the Python-thread ticker it replaced, in the same run.

An infinite-loop guest (fuel enough for minutes) is called with a 50 ms
timeout. Two times are measured per call: how long the guest ran (the
calling thread's CPU time: wasm spins on it until the trap) and how long the
caller waited (wall clock, which also counts re-taking the GIL after the
trap, from threads that hold it). Load: busy Python threads (pure-Python
loops that hold the GIL) and, in a second set of rows, nothing.
"""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio

from tests.guests import wat_guest
from wasmactors.actors import ActorCrashedError, ActorSystem
from wasmactors.runtime import Engine, Instance, Limits, MemoryStorage, MiB
from wasmactors.runtime._ticker import EpochTicker

TIMEOUT = 0.05
TICKERS = {"POSIX timer (wasmactors)": True, "Python thread (before)": False}


def _hog(stop: threading.Event) -> None:
    while not stop.is_set():
        sum(range(2000))


def _measure(engine: Engine, calls: int) -> tuple[list[float], list[float]]:
    component = engine.load(wat_guest("infinite_loop"), name="infinite_loop")
    limits = Limits(memory=4 * MiB, fuel=10**15, timeout=TIMEOUT)
    ran, waited = [], []
    for _ in range(calls):
        with Instance(component, limits) as instance:
            cpu = time.thread_time()
            result = instance.handle_message(b"")
            cpu = time.thread_time() - cpu
        assert result.crashed
        ran.append(cpu * 1e3)
        waited.append(result.elapsed * 1e3)
    return ran, waited


def _percentile(ordered: list[float], q: float) -> float:
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _row(samples: tuple[list[float], list[float]], tick_ms: float) -> dict[str, float]:
    ran, waited = sorted(samples[0]), sorted(samples[1])
    return {
        "ran p50": _percentile(ran, 0.5),
        "ran p99": _percentile(ran, 0.99),
        "p99 late (ticks)": (_percentile(ran, 0.99) - TIMEOUT * 1e3) / tick_ms,
        "waited p50": _percentile(waited, 0.5),
        "waited p99": _percentile(waited, 0.99),
        "waited max": waited[-1],
    }


async def _asks(engine: Engine, calls: int) -> list[float]:
    """Ask an endless-loop actor ``calls`` times: how long until each ask
    learns of the timeout crash (the supervisor restarts it in between)."""
    component = engine.load(wat_guest("infinite_loop"), name="infinite_loop")
    limits = Limits(memory=4 * MiB, fuel=10**15, timeout=TIMEOUT)
    waited = []
    async with ActorSystem(
        engine=engine, storage=MemoryStorage(), max_restarts=10 * calls, within=3600
    ) as system:
        ref = await system.spawn("spin", component, limits=limits)
        for _ in range(calls):
            start = time.perf_counter()
            try:
                await ref.ask(b"", timeout=60)
            except ActorCrashedError:
                waited.append((time.perf_counter() - start) * 1e3)
    return waited


def _actor_rows(engine: Engine, calls: int, hogs: int) -> dict[str, dict[str, float]]:
    rows = {}
    for backend in ("asyncio", "trio"):
        for load in (0, hogs):
            stop = threading.Event()
            threads = [threading.Thread(target=_hog, args=(stop,)) for _ in range(load)]
            for t in threads:
                t.start()
            try:
                waited = sorted(anyio.run(_asks, engine, calls, backend=backend))
            finally:
                stop.set()
                for t in threads:
                    t.join()
            name = f"{backend}, " + (f"{load} threads holding the GIL" if load else "idle")
            rows[name] = {
                "p50": _percentile(waited, 0.5),
                "p99": _percentile(waited, 0.99),
                "max": waited[-1],
            }
    return rows


def run(*, quick: bool) -> dict[str, Any]:
    calls, hogs = (5, 2) if quick else (200, 3)
    rows: dict[str, dict[str, float]] = {}
    for name, native in TICKERS.items():
        with Engine(cache_dir=None) as engine:
            engine.ticker.close()
            engine.ticker = EpochTicker(engine.raw, engine.epoch_tick, native=native)
            tick_ms = engine.epoch_tick * 1e3
            rows[f"{name}, idle"] = _row(_measure(engine, calls), tick_ms)
            stop = threading.Event()
            threads = [threading.Thread(target=_hog, args=(stop,)) for _ in range(hogs)]
            for t in threads:
                t.start()
            try:
                rows[f"{name}, {hogs} threads holding the GIL"] = _row(_measure(engine, calls), tick_ms)
            finally:
                stop.set()
                for t in threads:
                    t.join()
    with Engine(cache_dir=None) as engine:
        actor_rows = _actor_rows(engine, calls // 2 or 1, hogs)
    return {"timeout_ms": TIMEOUT * 1e3, "calls": calls, "ms": rows, "actor_ms": actor_rows}
