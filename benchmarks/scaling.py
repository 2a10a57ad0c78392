"""Scenario: one CPU-bound topology over 1, 2 and 4 node processes (issue 13).

Four worker actors, spread evenly over the node processes (4, 2+2 or
1+1+1+1), each joined to one nats-server on 127.0.0.1. A driver node in this
process asks them a fixed number of messages, ``IN_FLIGHT`` per worker at a
time (each worker takes the next message as soon as it answers one), and the
clock runs from the first ask to the last answer: process start-up is not
counted. Two kinds of worker, each with about 4 ms of work a message (so
that the work, not the messaging, is what a node spends its time on):

* **wasm**: the fuel-burner WAT guest counting down ``len(payload)`` million
  loop iterations (fuel and epoch interruption on, as every guest runs).
  wasmtime releases the GIL while wasm runs, so one process can already
  spread these over its worker threads and the machine's cores;
* **python**: a native (Python) actor running a fixed pure-Python loop on
  its node's event loop: it holds the GIL, so one process is one core, and
  more node processes are the way past it.

The peer is the same workers in this process without a cluster. The figures
say how many cores the machine gives this process (``cores``): more node
processes than cores cannot go faster than the cores. "cores busy" is the
CPU time of every process (driver and nodes) over the wall time.

Each node is ``python -m benchmarks.scaling`` (``node_main``): it spawns its
workers, prints ``ready`` and runs until its stdin closes, so a driver that
dies takes its nodes with it; the driver closes their stdin, then kills any
that have not stopped within ``STOP_S``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import anyio

from tests.guests import wat_guest
from tests.nats_server import running_nats_server
from wasmactors.actors import ActorSystem
from wasmactors.messaging import Cluster
from wasmactors.runtime import Engine, Limits, MemoryStorage, MiB

from ._util import ROOT, summary

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from wasmactors.actors import ActorRef, NativeContext
    from wasmactors.messaging import Envelope

WORKERS = 4
NODES = (1, 2, 4)
#: Asks in flight per worker: one being handled, the rest queued behind it.
IN_FLIGHT = 4
LIMITS = Limits(memory=4 * MiB, fuel=10**10, timeout=30.0)
#: The wasm worker's message: one million fuel-burner iterations a byte
#: (about 1 ms a byte here, with fuel and epoch interruption).
WASM_WORK = b"xxxx"
#: The Python worker's loop: iterations of ``total += i * i`` a message
#: (about 1 ms per 25,000 here).
PY_ITERATIONS = 100_000
KINDS = ("wasm", "python")
#: Seconds a node may take to start (import, connect, claim its names).
START_S = 60.0
#: Seconds a node may take to stop once its stdin is closed.
STOP_S = 15.0
#: Seconds one placement's asks may take in all.
RUN_S = 300.0


class _PythonWork:
    """A GIL-bound worker: the same fixed pure-Python loop for every message."""

    async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None:
        total = 0
        for i in range(PY_ITERATIONS):
            total += i * i
        return b"done"


def _names(kind: str) -> list[str]:
    return [f"{kind}{i}" for i in range(WORKERS)]


async def _spawn(system: ActorSystem, names: Sequence[str], engine: Engine) -> None:
    burner = await anyio.to_thread.run_sync(lambda: engine.load(wat_guest("fuel_burner"), name="fuel_burner"))
    for name in names:
        if name.startswith("wasm"):
            await system.spawn(name, burner, limits=LIMITS)
        else:
            await system.spawn_native(name, _PythonWork())


async def _ask_all(refs: Sequence[ActorRef], payload: bytes, messages: int) -> float:
    """``messages`` asks spread over ``refs``; messages/s from the first ask to the last answer."""
    for ref in refs:  # warm each worker and the route to it
        await ref.ask(payload, timeout=60)
    left = messages

    async def asker(ref: ActorRef) -> None:
        nonlocal left
        while left > 0:
            left -= 1
            await ref.ask(payload, timeout=60)

    start = time.perf_counter()
    with anyio.fail_after(RUN_S):
        async with anyio.create_task_group() as tg:
            for ref in refs:
                for _ in range(IN_FLIGHT):
                    tg.start_soon(asker, ref)
    return messages / (time.perf_counter() - start)


def _payload(kind: str) -> bytes:
    return WASM_WORK if kind == "wasm" else b"x"


def _cpu_s(pids: Sequence[int]) -> float:
    """CPU seconds (user + system, every thread) of this process and ``pids`` (Linux)."""
    total = time.process_time()
    tick = os.sysconf("SC_CLK_TCK")
    for pid in pids:
        with contextlib.suppress(OSError):  # a node that has exited counts nothing more
            # The command name (field 2) is in parentheses and may hold spaces.
            fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def _machine_s() -> tuple[float, float]:
    """Seconds every core of the machine spent idle, and stolen by the hypervisor (Linux)."""
    with open("/proc/stat") as stat:
        fields = [int(x) for x in stat.readline().split()[1:]]
    tick = os.sysconf("SC_CLK_TCK")
    return (fields[3] + fields[4]) / tick, (fields[7] if len(fields) > 7 else 0) / tick


async def _measure(
    refs: Sequence[ActorRef], kind: str, messages: int, repeats: int, pids: Sequence[int]
) -> dict[str, dict[str, float]]:
    """``repeats`` runs of ``messages`` asks; per run the rate and, over its wall
    time, the cores kept busy by our processes (all, and the driver's alone) and
    the machine's idle and stolen cores."""
    samples: dict[str, list[float]] = {
        k: [] for k in ("messages_per_s", "cores_busy", "driver_busy", "cores_idle", "cores_stolen")
    }
    for _ in range(repeats):
        cpu, own, (idle, stolen) = _cpu_s(pids), time.process_time(), _machine_s()
        wall = time.perf_counter()
        samples["messages_per_s"].append(await _ask_all(refs, _payload(kind), messages))
        wall = time.perf_counter() - wall
        idle2, stolen2 = _machine_s()
        samples["cores_busy"].append((_cpu_s(pids) - cpu) / wall)
        samples["driver_busy"].append((time.process_time() - own) / wall)
        samples["cores_idle"].append((idle2 - idle) / wall)
        samples["cores_stolen"].append((stolen2 - stolen) / wall)
    return {k: summary(v) for k, v in samples.items()}


async def _work_ms(ref: ActorRef, kind: str, asks: int) -> float:
    """One message's work alone: the median of sequential asks to one idle in-process worker."""
    await ref.ask(_payload(kind), timeout=60)
    samples = []
    for _ in range(asks):
        start = time.perf_counter()
        await ref.ask(_payload(kind), timeout=60)
        samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


async def _in_process(engine: Engine, messages: int, repeats: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    async with ActorSystem(engine=engine, storage=MemoryStorage()) as system:
        for kind in KINDS:
            await _spawn(system, _names(kind), engine)
            refs = [system.ref(n) for n in _names(kind)]
            out[kind] = await _measure(refs, kind, messages, repeats, ())
            out[kind]["work_ms"] = await _work_ms(refs[0], kind, max(messages // 20, 5))
    return out


async def _driver(
    engine: Engine, url: str, prefix: str, *, messages: int, repeats: int, pids: Sequence[int]
) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    cluster = Cluster(url, node="driver", prefix=prefix)
    async with ActorSystem(engine=engine, storage=MemoryStorage(), cluster=cluster) as system:
        for kind in KINDS:
            refs = [system.ref(n) for n in _names(kind)]
            out[kind] = await _measure(refs, kind, messages, repeats, pids)
    return out


def _placement(nodes: int) -> list[list[str]]:
    """Every kind's workers dealt evenly over ``nodes`` node processes."""
    return [[name for kind in KINDS for name in _names(kind)[i::nodes]] for i in range(nodes)]


@contextlib.contextmanager
def _running_nodes(
    url: str, prefix: str, nodes: int, logs: Path, cache_dir: Path | None
) -> Iterator[list[subprocess.Popen[str]]]:
    """``nodes`` node processes, each ready (its workers spawned); stopped afterwards, whatever happens."""
    processes: list[subprocess.Popen[str]] = []
    try:
        for i, names in enumerate(_placement(nodes)):
            command = [sys.executable, "-m", "benchmarks.scaling", "--url", url, "--prefix", prefix,
                       "--name", f"n{i}", "--workers", ",".join(names)]  # fmt: skip
            if cache_dir is not None:
                command += ["--cache-dir", str(cache_dir)]
            with (logs / f"{prefix}-n{i}.log").open("w") as log:
                processes.append(
                    subprocess.Popen(
                        command,
                        cwd=ROOT,
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        stderr=log,
                        text=True,
                    )
                )
        deadline = time.monotonic() + START_S
        for i, process in enumerate(processes):
            _wait_ready(process, deadline, logs / f"{prefix}-n{i}.log")
        yield processes
    finally:
        _stop(processes)


def _wait_ready(process: subprocess.Popen[str], deadline: float, log: Path) -> None:
    stdout: IO[str] | None = process.stdout
    assert stdout is not None
    readable, _, _ = select.select([stdout], [], [], max(deadline - time.monotonic(), 0))
    line = stdout.readline() if readable else ""
    if line.strip() != "ready":
        tail = log.read_text(errors="replace")[-2000:]
        why = "did not start in time" if not readable else f"exited ({process.poll()})"
        raise RuntimeError(f"scaling node {process.args!r} {why}: {tail}")


def _stop(processes: Sequence[subprocess.Popen[str]]) -> None:
    for process in processes:
        with contextlib.suppress(OSError):  # a node that already died has a broken pipe
            assert process.stdin is not None
            process.stdin.close()
    deadline = time.monotonic() + STOP_S
    for process in processes:
        try:
            process.wait(max(deadline - time.monotonic(), 0.1))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stdout is not None:
            process.stdout.close()


def run(engine: Engine, *, quick: bool) -> dict[str, Any]:
    messages = 40 if quick else 800
    repeats = 1 if quick else 3
    rows: dict[str, dict[str, Any]] = {kind: {} for kind in KINDS}
    peer = anyio.run(_in_process, engine, messages, repeats)
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp)
        for server in running_nats_server(store):
            for nodes in NODES:
                prefix = f"scale{nodes}"
                with _running_nodes(server.url, prefix, nodes, store, engine.cache_dir) as processes:
                    pids = [p.pid for p in processes]
                    drive = functools.partial(_driver, messages=messages, repeats=repeats, pids=pids)
                    measured = anyio.run(drive, engine, server.url, prefix)
                for kind in KINDS:
                    rows[kind][str(nodes)] = measured[kind]
    for kind in KINDS:
        base = rows[kind]["1"]["messages_per_s"]["median"]
        rows[kind]["in process"] = {k: v for k, v in peer[kind].items() if k != "work_ms"}
        for row in rows[kind].values():
            row["speedup"] = row["messages_per_s"]["median"] / base
    return {
        "cores": len(os.sched_getaffinity(0)),
        "workers": WORKERS,
        "messages": messages,
        "repeats": repeats,
        "in_flight": IN_FLIGHT,
        "work": {
            "wasm": f"the fuel-burner WAT guest, {len(WASM_WORK)} million loop iterations",
            "python": f"a native Python actor, {PY_ITERATIONS:,} loop iterations",
        },
        "work_ms": {kind: peer[kind]["work_ms"] for kind in KINDS},
        "rows": rows,
    }


# -- a node process ------------------------------------------------------------


async def _node(url: str, prefix: str, name: str, workers: list[str], cache_dir: Path | None) -> None:
    with Engine(cache_dir=cache_dir) if cache_dir else Engine() as engine:
        cluster = Cluster(url, node=name, prefix=prefix)
        async with ActorSystem(
            engine=engine, storage=MemoryStorage(), shutdown_timeout=0.5, cluster=cluster
        ) as system:
            await _spawn(system, workers, engine)
            print("ready", flush=True)
            # Runs until the driver closes stdin, or dies (which closes it too).
            await anyio.to_thread.run_sync(sys.stdin.buffer.read, abandon_on_cancel=True)


def node_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks.scaling", description="one node of the scaling run"
    )
    parser.add_argument("--url", required=True)
    parser.add_argument("--prefix", required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--workers", required=True, help="comma-separated names: wasmN or pythonN")
    parser.add_argument("--cache-dir", type=Path)
    args = parser.parse_args(argv)
    workers = [w for w in args.workers.split(",") if w]
    bad = [w for w in workers if not w.startswith(KINDS)]
    if bad:
        parser.error(f"unknown worker kind(s): {', '.join(bad)}")
    anyio.run(_node, args.url, args.prefix, args.name, workers, args.cache_dir)
    return 0


if __name__ == "__main__":
    sys.exit(node_main())
