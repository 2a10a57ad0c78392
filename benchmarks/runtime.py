"""Micro-benchmarks of the runtime layer, with its peers measured in the same run.

    python -m benchmarks.runtime            # full run (compiles the Python guest cold once)
    python -m benchmarks.runtime --quick    # tiny counts: a smoke test that the script works

Prints medians (with min and max over repetitions) of:
  * compile time of the Python guest: cold, cached in-process, cached in a new process
  * instantiation: first in the process and warm, for the Python and WAT guests
  * one handle-message round trip, 16 B / 4 KiB / 64 KiB, through the runtime
    layer, stock wasmtime-py ``Func.__call__`` on the same component, and the
    Extism Python SDK echoing through an equivalent plugin (if installed)
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import wasmtime
from wasmtime import component as wc

from tests.guests import ROOT, python_guest, wat_guest
from wasmactors.runtime import Engine, Instance, Limits, MiB

if TYPE_CHECKING:
    from collections.abc import Callable

LIMITS = Limits(memory=64 * MiB, fuel=10**9, timeout=10.0)
SIZES = (16, 4096, 65536)


def measure(fn: Callable[[], object], *, calls: int, repeats: int) -> dict[str, float]:
    """Per-call time in µs: median, min and max over ``repeats`` batches of ``calls``."""
    for _ in range(max(calls // 10, 1)):
        fn()  # warm-up
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(calls):
            fn()
        samples.append((time.perf_counter() - start) / calls * 1e6)
    return {"median": statistics.median(samples), "min": min(samples), "max": max(samples)}


def once(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return (time.perf_counter() - start) * 1e3


def stock_echo(engine: Engine, text: bytes) -> Callable[[bytes], Callable[[], object]]:
    """The same WAT echo called through wasmtime-py's stock ``Func.__call__``."""
    comp = wc.Component(engine.raw, text)
    store = wasmtime.Store(engine.raw)
    inst = wc.Linker(engine.raw).instantiate(store, comp)
    iface = inst.get_export_index(store, "wasmactors:actor/handler@0.1.0")
    func = inst.get_func(store, inst.get_export_index(store, "handle-message", iface))
    assert func is not None

    def make(payload: bytes) -> Callable[[], object]:
        env = wc.Record()
        env.sender, env.kind, env.payload, env.headers = None, "request", payload.decode("latin-1"), []

        def call() -> object:
            store.set_fuel(LIMITS.fuel)
            store.set_epoch_deadline(1000)
            out = func(store, env)
            func.post_return(store)
            return out

        return call

    return make


def extism_echo() -> Callable[[bytes], Callable[[], object]] | None:
    try:
        import extism  # type: ignore[import-untyped]
    except ImportError:
        return None
    plugin = extism.Plugin(bytes(wasmtime.wat2wasm((Path(__file__).parent / "extism_echo.wat").read_text())))

    def make(payload: bytes) -> Callable[[], object]:
        assert bytes(plugin.call("echo", payload)) == payload
        return lambda: plugin.call("echo", payload)

    return make


def cached_load_in_new_process(cache: Path, path: Path) -> float:
    code = (
        "import time; t0 = time.perf_counter(); from wasmactors.runtime import Engine; "
        f"e = Engine(cache_dir={str(cache)!r}); t = time.perf_counter(); c = e.load({str(path)!r}); "
        "print((time.perf_counter() - t) * 1e3, (time.perf_counter() - t0) * 1e3, c.cached); e.close()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    load_ms, _total_ms, cached = out.stdout.split()
    assert cached == "True"
    return float(load_ms)


def run(quick: bool) -> dict[str, Any]:
    calls, repeats = (50, 3) if quick else (2000, 15)
    results: dict[str, Any] = {"machine": _machine(), "quick": quick}
    echo_path = python_guest("echo")
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp)
        with Engine(cache_dir=cache) as engine:
            load: dict[str, float] = {}
            if not quick:
                load["python_compile_cold_ms"] = once(lambda: engine.load(echo_path))
            else:
                engine.load(echo_path)
            with Engine(cache_dir=cache) as again:
                load["python_cached_same_process_ms"] = once(lambda: again.load(echo_path))
            load["python_cached_new_process_ms"] = cached_load_in_new_process(cache, echo_path)
            results["load"] = load

            py = engine.load(echo_path)
            wat = engine.load(wat_guest("echo"), name="echo.wat")
            inst_times: dict[str, float] = {}
            first: list[Instance] = []
            inst_times["python_first_ms"] = once(lambda: first.append(Instance(py, LIMITS)))
            first[0].close()
            inst_times["python_warm_ms"] = (
                measure(lambda: Instance(py, LIMITS).close(), calls=max(calls // 20, 5), repeats=repeats)[
                    "median"
                ]
                / 1e3
            )
            inst_times["wat_warm_ms"] = (
                measure(lambda: Instance(wat, LIMITS).close(), calls=calls, repeats=repeats)["median"] / 1e3
            )
            results["instantiate"] = inst_times

            calls_out: dict[str, dict[str, Any]] = {}
            stock = stock_echo(engine, wat_guest("echo"))
            ext = extism_echo()
            with Instance(wat, LIMITS) as wat_inst, Instance(py, LIMITS) as py_inst:
                for size in SIZES:
                    payload = b"x" * size
                    assert wat_inst.handle_message(payload, request=True).outcome.reply == payload  # type: ignore[union-attr]
                    row = {
                        "wasmactors_wat": measure(
                            lambda p=payload: wat_inst.handle_message(p, request=True),
                            calls=calls,
                            repeats=repeats,
                        ),
                        "wasmtime_py_stock": measure(
                            stock(payload), calls=max(calls // 10, 5), repeats=repeats
                        ),
                        "wasmactors_python_guest": measure(
                            lambda p=payload: py_inst.handle_message(p, request=True),
                            calls=calls,
                            repeats=repeats,
                        ),
                    }
                    if ext is not None:
                        row["extism"] = measure(ext(payload), calls=calls, repeats=repeats)
                    calls_out[str(size)] = row
            results["calls"] = calls_out
    return results


def report(results: dict[str, Any]) -> str:
    lines = [f"machine: {results['machine']}", "", "load (ms):"]
    lines += [f"  {k:34} {v:10.2f}" for k, v in results["load"].items()]
    lines += ["", "instantiate (ms):"]
    lines += [f"  {k:34} {v:10.3f}" for k, v in results["instantiate"].items()]
    lines += ["", "handle-message round trip (µs, median [min-max]):"]
    for size, row in results["calls"].items():
        lines.append(f"  payload {size} B")
        for name, m in row.items():
            lines.append(f"    {name:30} {m['median']:10.2f}  [{m['min']:.2f}-{m['max']:.2f}]")
        if "extism" in row:
            ratio = row["wasmactors_wat"]["median"] / row["extism"]["median"]
            lines.append(f"    {'wasmactors / extism':30} {ratio:10.2f}x")
    return "\n".join(lines)


def _machine() -> str:
    import os
    import platform

    from wasmactors.runtime._component import wasmtime_version

    return (
        f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}, wasmtime {wasmtime_version()}"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="tiny counts, for the test suite")
    parser.add_argument("--json", type=Path, help="also write the results as JSON here")
    args = parser.parse_args(argv)
    results = run(args.quick)
    print(report(results))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
