"""Scenario 7, timeout accuracy: how late a 50 ms wall-clock timeout fires
while other Python threads hold the GIL, with wasmactors' epoch ticker
(POSIX timers in phases, so a stall of their notifications loses no tick)
beside the two it replaced, in the same run: one POSIX timer (which merges
the ticks of a stall into one) and a Python thread (which needs the GIL).

An infinite-loop guest (fuel enough for minutes) is called with a 50 ms
timeout. Two times are measured per call: how long the guest ran (the
calling thread's CPU time: wasm spins on it until the trap) and how long the
caller waited (wall clock, which also counts re-taking the GIL after the
trap, from threads that hold it). Load: busy Python threads (pure-Python
loops that hold the GIL) and, in a second set of rows, nothing.
"""

from __future__ import annotations

import ctypes
import threading
import time
from typing import Any

import anyio

from tests.guests import wat_guest
from wasmactors.actors import ActorCrashedError, ActorSystem
from wasmactors.runtime import Engine, Instance, Limits, MemoryStorage, MiB
from wasmactors.runtime._ticker import WINDOW, EpochTicker, TimerSet

TIMEOUT = 0.05
#: name -> (native, window)
TICKERS = {
    "phased POSIX timers (wasmactors)": (True, WINDOW),
    "one POSIX timer (before)": (True, 0.0),
    "Python thread (first)": (False, 0.0),
}


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


def _ticks_lost(window: float, tick: float, seconds: float) -> list[float]:
    """The ticker's own delivery, without a guest: timers like the epoch
    ticker's (same notification path) post a semaphore instead of advancing
    an epoch; sampled every 5 ms, how many ticks each 50 ms window lacks
    (what a 50 ms timeout starting there would be late by, in ticks)."""
    libc, pylibc = ctypes.CDLL("libc.so.6"), ctypes.PyDLL("libc.so.6")  # PyDLL: read without the GIL dance
    sem = ctypes.create_string_buffer(32)
    libc.sem_init(sem, 0, 0)
    post = ctypes.cast(libc.sem_post, ctypes.c_void_p).value
    assert post is not None
    timers = TimerSet(post, ctypes.addressof(sem), tick, window)
    count, samples = ctypes.c_int(), []
    end = time.monotonic() + seconds
    while (now := time.monotonic()) < end:
        pylibc.sem_getvalue(sem, ctypes.byref(count))
        samples.append((now, count.value))
        time.sleep(0.005)
    timers.close()
    lost, j = [], 0
    for t, c in samples:
        while j < len(samples) and samples[j][0] - t < TIMEOUT:
            j += 1
        if j == len(samples):
            break
        lost.append((samples[j][0] - t) / tick - (samples[j][1] - c))
    return sorted(lost)


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
    probe: dict[str, dict[str, float]] = {}
    for name, (native, window) in TICKERS.items():
        with Engine(cache_dir=None) as engine:
            engine.ticker.close()
            engine.ticker = EpochTicker(engine.raw, engine.epoch_tick, native=native, window=window)
            tick_ms = engine.epoch_tick * 1e3
            rows[f"{name}, idle"] = _row(_measure(engine, calls), tick_ms)
            stop = threading.Event()
            threads = [threading.Thread(target=_hog, args=(stop,)) for _ in range(hogs)]
            for t in threads:
                t.start()
            try:
                rows[f"{name}, {hogs} threads holding the GIL"] = _row(_measure(engine, calls), tick_ms)
                if native:
                    lost = _ticks_lost(window, engine.epoch_tick, 0.5 if quick else 5.0)
                    probe[f"{name}, {hogs} threads holding the GIL"] = {
                        "p50": _percentile(lost, 0.5),
                        "p99": _percentile(lost, 0.99),
                        "max": lost[-1],
                    }
            finally:
                stop.set()
                for t in threads:
                    t.join()
    with Engine(cache_dir=None) as engine:
        actor_rows = _actor_rows(engine, calls // 2 or 1, hogs)
    return {
        "timeout_ms": TIMEOUT * 1e3,
        "calls": calls,
        "ms": rows,
        "ticks_lost": probe,
        "actor_ms": actor_rows,
    }
