"""Scenario 5, an actor's life: loading the compiled component (cold, from the
cache, from the cache in a new process), instantiation (first and warm),
crash-to-serving restart latency, and spawn rate and memory per actor for
1,000 Python-guest actors (in a fresh process, so the RSS is the actors')."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import anyio

from tests.guests import python_guest, wat_guest
from wasmactors.actors import ActorCrashedError, ActorSystem
from wasmactors.runtime import Component, Engine, Instance, Limits, MemoryStorage, MiB

from ._util import ROOT, once_ms, per_call_us, summary

LIMITS = Limits(memory=64 * MiB, fuel=10**9, timeout=10.0)


def _cached_load_in_new_process(cache: Path, path: Path) -> float:
    code = (
        "from wasmactors.runtime import Engine; import time; "
        f"e = Engine(cache_dir={str(cache)!r}); t = time.perf_counter(); c = e.load({str(path)!r}); "
        "print((time.perf_counter() - t) * 1e3, c.cached); e.close()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    load_ms, cached = out.stdout.split()
    assert cached == "True", "the new process did not load from the cache"
    return float(load_ms)


def loading(engine: Engine, *, quick: bool) -> dict[str, float]:
    """Cold compile into an empty cache (skipped with ``quick``: ~10 s), then cached loads."""
    echo = python_guest("echo")
    out: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        cache = engine.cache_dir if quick and engine.cache_dir else Path(tmp)
        with Engine(cache_dir=cache) as fresh:
            cold = once_ms(lambda: fresh.load(echo))
            if cache == Path(tmp):
                out["compile the Python guest, cold"] = cold
        with Engine(cache_dir=cache) as again:
            out["load it from the cache, same process"] = once_ms(lambda: again.load(echo))
        out["load it from the cache, new process"] = _cached_load_in_new_process(cache, echo)
    return out


def instantiation(engine: Engine, *, quick: bool) -> dict[str, float]:
    repeats = 3 if quick else 15
    py = engine.load(python_guest("echo"))
    wat = engine.load(wat_guest("echo"), name="echo.wat")
    first: list[Instance] = []
    out = {"Python guest, first in the process": once_ms(lambda: first.append(Instance(py, LIMITS)))}
    first[0].close()
    out["Python guest, warm"] = (
        per_call_us(lambda: Instance(py, LIMITS).close(), calls=5 if quick else 100, repeats=repeats)[
            "median"
        ]
        / 1e3
    )
    out["WAT echo, warm"] = (
        per_call_us(lambda: Instance(wat, LIMITS).close(), calls=50 if quick else 2000, repeats=repeats)[
            "median"
        ]
        / 1e3
    )
    return out


async def _crash_to_serving(
    system: ActorSystem, component: Component, crash: bytes, serve: bytes, rounds: int
) -> dict[str, float]:
    """From the crash answer reaching the asker to the restarted actor's next
    answer: the restart plus one ask round trip (an upper bound)."""
    ref = await system.spawn(f"crasher-{component.name}", component, limits=LIMITS)
    await ref.ask(serve, timeout=10)
    samples = []
    for _ in range(rounds):
        try:
            await ref.ask(crash, timeout=10)
        except ActorCrashedError:
            start = time.perf_counter()
        else:
            raise AssertionError("the guest did not crash")
        assert await ref.ask(serve, timeout=10) == serve.split(b" ", 1)[-1]
        samples.append((time.perf_counter() - start) * 1e3)
    await system.stop(ref)
    return summary(samples)


async def restarts(engine: Engine, *, quick: bool) -> dict[str, dict[str, float]]:
    rounds = 3 if quick else 50
    wat = engine.load(wat_guest("crash_on_x"), name="crash_on_x")
    kitchen = engine.load(python_guest("kitchen"))
    async with ActorSystem(engine=engine, storage=MemoryStorage(), max_restarts=10**6, within=1.0) as system:
        return {
            "WAT guest": await _crash_to_serving(system, wat, b"x", b"ok", rounds),
            "Python guest": await _crash_to_serving(system, kitchen, b"raise", b"echo ok", rounds),
        }


_MANY = """
import json, sys, time, anyio
from benchmarks._util import rss_bytes
from tests.guests import python_guest
from wasmactors.actors import ActorSystem
from wasmactors.runtime import Limits, MiB, MemoryStorage

async def main(n):
    async with ActorSystem(storage=MemoryStorage()) as system:
        component, _ = await system.load(python_guest("echo"))
        limits = Limits(memory=64 * MiB, fuel=10**9, timeout=10.0)
        base = rss_bytes()
        start = time.perf_counter()
        refs = [await system.spawn(f"a{i}", component, limits=limits) for i in range(n)]
        spawn = time.perf_counter() - start
        idle = rss_bytes()
        for ref in refs:
            await ref.ask(b"hi", timeout=10)
        used = rss_bytes()
    rss = {"base_rss": base, "idle_rss": idle, "used_rss": used}
    print(json.dumps({"actors": n, "spawn_per_s": n / spawn, **rss}))

anyio.run(main, int(sys.argv[1]))
"""


def many_actors(*, quick: bool) -> dict[str, float]:
    """Spawn N Python-guest actors in a fresh process; RSS when idle and after one message each."""
    n = 20 if quick else 1000
    out = subprocess.run(
        [sys.executable, "-c", _MANY, str(n)],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    data = json.loads(out.stdout)
    base, idle, used = data["base_rss"], data["idle_rss"], data["used_rss"]
    return {
        "actors": n,
        "spawn rate (actors/s)": data["spawn_per_s"],
        "RSS per idle actor (MiB)": (idle - base) / n / 2**20,
        "RSS per actor after one message (MiB)": (used - base) / n / 2**20,
        "process RSS, idle (GiB)": idle / 2**30,
        "process RSS after one message each (GiB)": used / 2**30,
    }


def run(engine: Engine, *, quick: bool) -> dict[str, Any]:
    return {
        "load_ms": loading(engine, quick=quick),
        "instantiate_ms": instantiation(engine, quick=quick),
        "crash_to_serving_ms": anyio.run(lambda: restarts(engine, quick=quick)),
        "many_actors": many_actors(quick=quick),
    }
