"""Scenario 2, one actor: tell throughput and ask latency (p50, p99) with
16 B payloads. wasmactors with a WAT echo guest and with the Python echo
guest, on asyncio and on trio; Pykka's ThreadingActor (a plain threaded
Python actor, no sandbox); and the floor under it all, an anyio memory
object stream with a consumer task. The runtime layer's own call rate,
measured in the same run, says what the actor machinery costs."""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

import anyio

from tests.guests import python_guest, wat_guest
from wasmactors.actors import ActorSystem
from wasmactors.actors._workers import Workers
from wasmactors.runtime import Instance, Limits, MemoryStorage, MiB

from ._util import per_call_us, percentile, summary

if TYPE_CHECKING:
    from wasmactors.runtime import Component, Engine

LIMITS = Limits(memory=64 * MiB, fuel=10**9, timeout=10.0)
PAYLOAD = b"x" * 16
BACKENDS = ("asyncio", "trio")
#: Actor counts of the scaling rows.
SCALING = (1, 2, 4, 16, 256)


def _latencies(samples: list[list[float]]) -> dict[str, Any]:
    """p50 and p99 in µs: the median over repetitions, with min-max."""
    ordered = [sorted(batch) for batch in samples]
    p50s = [percentile(batch, 0.50) * 1e6 for batch in ordered]
    p99s = [percentile(batch, 0.99) * 1e6 for batch in ordered]
    return {"p50": summary(p50s), "p99": summary(p99s)}


async def _wasmactors(
    engine: Engine, component: Component, tells: int, asks: int, repeats: int
) -> dict[str, Any]:
    async with ActorSystem(engine=engine, storage=MemoryStorage()) as system:
        ref = await system.spawn("echo", component, limits=LIMITS)
        for _ in range(100):  # warm-up
            await ref.ask(PAYLOAD, timeout=10)
        rates = []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(tells):
                await ref.tell(PAYLOAD)
            await system.wait_idle()
            rates.append(tells / (time.perf_counter() - start))
        samples = []
        for _ in range(repeats):
            batch = []
            for _ in range(asks):
                start = time.perf_counter()
                await ref.ask(PAYLOAD, timeout=10)
                batch.append(time.perf_counter() - start)
            samples.append(batch)
    return {"tells_per_s": summary(rates), **_latencies(samples)}


async def _scaling(
    engine: Engine, component: Component, actors: int, tells: int, repeats: int
) -> dict[str, Any]:
    """``tells`` messages spread round-robin over ``actors`` echo actors: total
    tells/s, and the CPU time of the whole process (every thread) per message."""
    async with ActorSystem(engine=engine, storage=MemoryStorage()) as system:
        refs = [await system.spawn(f"echo{i}", component, limits=LIMITS) for i in range(actors)]
        for ref in refs:
            await ref.ask(PAYLOAD, timeout=10)  # warm-up
        rates, cpu = [], []
        for _ in range(repeats):
            start, cpu_start = time.perf_counter(), time.process_time()
            for i in range(tells):
                await refs[i % actors].tell(PAYLOAD)
            await system.wait_idle()
            rates.append(tells / (time.perf_counter() - start))
            cpu.append((time.process_time() - cpu_start) / tells * 1e6)
    return {"tells_per_s": summary(rates), "cpu_us_per_message": summary(cpu)}


async def _floor(tells: int, asks: int, repeats: int) -> dict[str, Any]:
    """The same exchange over bare memory object streams: what any anyio actor pays at least."""
    send, receive = anyio.create_memory_object_stream[tuple[bytes, bool]](1024)
    reply_send, reply_receive = anyio.create_memory_object_stream[bytes](1)
    done = anyio.Event()
    count = 0

    async def consumer() -> None:
        nonlocal count, done
        async for payload, ask in receive:
            if ask:
                await reply_send.send(payload)
            else:
                count += 1
                if count == tells:
                    count = 0
                    done.set()

    rates, samples = [], []
    async with send, receive, reply_send, reply_receive, anyio.create_task_group() as tg:
        tg.start_soon(consumer)
        for _ in range(repeats):
            done = anyio.Event()
            start = time.perf_counter()
            for _ in range(tells):
                await send.send((PAYLOAD, False))
            await done.wait()
            rates.append(tells / (time.perf_counter() - start))
        for _ in range(repeats):
            batch = []
            for _ in range(asks):
                start = time.perf_counter()
                await send.send((PAYLOAD, True))
                await reply_receive.receive()
                batch.append(time.perf_counter() - start)
            samples.append(batch)
        tg.cancel_scope.cancel()
    return {"tells_per_s": summary(rates), **_latencies(samples)}


def _pykka(tells: int, asks: int, repeats: int) -> dict[str, Any] | None:
    try:
        import pykka
    except ImportError:
        return None

    class Echo(pykka.ThreadingActor):  # type: ignore[misc]
        def on_receive(self, message: Any) -> Any:
            return message

    ref = Echo.start()
    try:
        for _ in range(100):
            ref.ask(PAYLOAD)
        rates, samples = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            for _ in range(tells):
                ref.tell(PAYLOAD)
            ref.ask(PAYLOAD)  # every tell before it is handled
            rates.append(tells / (time.perf_counter() - start))
        for _ in range(repeats):
            batch = []
            for _ in range(asks):
                start = time.perf_counter()
                ref.ask(PAYLOAD)
                batch.append(time.perf_counter() - start)
            samples.append(batch)
    finally:
        ref.stop()
    return {"tells_per_s": summary(rates), **_latencies(samples)}


async def _hop(asks: int, repeats: int, *, pool: bool) -> dict[str, float]:
    """One worker-thread round trip with nothing to do: wasmactors' own
    workers (``pool``: what every turn and direct ask pays once) or
    ``anyio.to_thread.run_sync`` with a limiter (what it replaced)."""
    samples = []
    limiter = anyio.CapacityLimiter(2)
    with Workers(2) as workers:
        for _ in range(repeats):
            batch = []
            for _ in range(asks):
                start = time.perf_counter()
                if pool:
                    await workers.run(int)
                else:
                    await anyio.to_thread.run_sync(int, limiter=limiter)
                batch.append(time.perf_counter() - start)
            samples.append(batch)
    return dict(_latencies(samples)["p50"])


def run(engine: Engine, *, quick: bool) -> dict[str, Any]:
    tells, asks, repeats = (600, 100, 2) if quick else (50_000, 2000, 5)
    wat = engine.load(wat_guest("echo"), name="echo.wat")
    py = engine.load(python_guest("echo"))
    out: dict[str, Any] = {}
    with Instance(wat, LIMITS) as instance:
        call = per_call_us(lambda: instance.handle_message(PAYLOAD), calls=tells // 10, repeats=repeats)
    # Calls per second: the fastest sample is the highest rate.
    out["runtime layer, WAT echo"] = {
        "calls_per_s": {"median": 1e6 / call["median"], "min": 1e6 / call["max"], "max": 1e6 / call["min"]}
    }
    for backend in BACKENDS:
        out[f"worker-thread hop, {backend}"] = {
            "p50": anyio.run(partial(_hop, asks, repeats, pool=True), backend=backend)
        }
        out[f"anyio.to_thread hop, {backend}"] = {
            "p50": anyio.run(partial(_hop, asks, repeats, pool=False), backend=backend)
        }
    for backend in BACKENDS:
        out[f"wasmactors, WAT echo, {backend}"] = anyio.run(
            _wasmactors, engine, wat, tells, asks, repeats, backend=backend
        )
    for backend in BACKENDS:
        out[f"wasmactors, Python echo, {backend}"] = anyio.run(
            _wasmactors, engine, py, tells // 5, asks, repeats, backend=backend
        )
    scaling: dict[str, Any] = {}
    for backend in BACKENDS:
        scaling[backend] = {
            str(n): anyio.run(_scaling, engine, wat, n, tells // 2, repeats, backend=backend) for n in SCALING
        }
    out["scaling, WAT echo"] = scaling
    pykka_result = _pykka(tells, asks, repeats)
    if pykka_result is not None:
        out["Pykka ThreadingActor"] = pykka_result
    for backend in BACKENDS:
        out[f"anyio memory stream floor, {backend}"] = anyio.run(
            _floor, tells, asks, repeats, backend=backend
        )
    return out
