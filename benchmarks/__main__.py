"""The benchmark suite: every scenario beside its peers, in one process run.

    python -m benchmarks                 # everything; writes results/latest.json and docs/benchmarks.md
    python -m benchmarks --quick         # tiny counts: checks the scripts work (the test suite runs this)
    python -m benchmarks --only calls,actors

Scenarios: calls (the call floor vs stock wasmtime-py and Extism), actors (tell
throughput and ask latency vs Pykka and the anyio floor), pipeline, fanout,
lifecycle (load, instantiate, restart, 1,000 actors), limits (the cost of fuel
and epoch interruption), timeouts (how late a 50 ms timeout fires under
GIL load), cluster (two nodes over nats-server vs raw nats-py), scaling (a
CPU-bound topology over 1, 2 and 4 node processes). Nothing here asserts a
timing: it measures and reports.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from wasmactors.runtime import Engine

from . import actors, calls, cluster, fanout, lifecycle, limits, pipeline, report, scaling, timeouts
from ._util import ROOT, machine

SCENARIOS = ("calls", "actors", "pipeline", "fanout", "lifecycle", "limits", "timeouts", "cluster", "scaling")


def run(only: tuple[str, ...], *, quick: bool, cache_dir: Path | None = None) -> dict[str, Any]:
    """Run the scenarios; ``cache_dir`` is the artifact cache of the shared
    engine (default: the user's cache, as any program would use)."""
    results: dict[str, Any] = {"machine": machine(), "quick": quick, "date": time.strftime("%Y-%m-%d")}
    started = time.perf_counter()
    with Engine(cache_dir=cache_dir) if cache_dir else Engine() as engine:
        for name in only:
            print(f"--- {name}", file=sys.stderr, flush=True)
            t = time.perf_counter()
            if name == "calls":
                results[name] = calls.run(engine, quick=quick)
            elif name == "actors":
                results[name] = actors.run(engine, quick=quick)
            elif name == "pipeline":
                results[name] = pipeline.run(engine, quick=quick)
            elif name == "fanout":
                results[name] = fanout.run(engine, quick=quick)
            elif name == "lifecycle":
                results[name] = lifecycle.run(engine, quick=quick)
            elif name == "limits":
                results[name] = limits.run(quick=quick)
            elif name == "timeouts":
                results[name] = timeouts.run(quick=quick)
            elif name == "cluster":
                results[name] = cluster.run(engine, quick=quick)
            elif name == "scaling":
                results[name] = scaling.run(engine, quick=quick)
            print(f"    {time.perf_counter() - t:.1f} s", file=sys.stderr, flush=True)
    results["elapsed_s"] = time.perf_counter() - started
    return results


def main(argv: list[str] | None = None, *, cache_dir: Path | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--render", type=Path, metavar="JSON", help="measure nothing: redo the report from saved results"
    )
    parser.add_argument("--quick", action="store_true", help="tiny counts, to check that everything runs")
    parser.add_argument(
        "--only", default=",".join(SCENARIOS), help="comma-separated scenarios (default: all)"
    )
    parser.add_argument(
        "--json", type=Path, help="where to write the results (default: benchmarks/results/latest.json)"
    )
    parser.add_argument(
        "--docs", type=Path, help="the report to update (default: docs/benchmarks.md; not with --quick)"
    )
    args = parser.parse_args(argv)
    # The restart scenario crashes guests on purpose: keep their reports out of the output.
    logging.getLogger("wasmactors").setLevel(logging.ERROR)
    only = tuple(s.strip() for s in args.only.split(",") if s.strip())
    unknown = [s for s in only if s not in SCENARIOS]
    if unknown:
        parser.error(f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}")
    if args.render:
        results = json.loads(args.render.read_text())
        report.update_docs(results, args.docs or ROOT / "docs" / "benchmarks.md")
        print(report.text(results))
        return 0
    results = run(only, quick=args.quick, cache_dir=cache_dir)
    print(report.text(results))
    json_path = args.json or (None if args.quick else ROOT / "benchmarks" / "results" / "latest.json")
    if json_path is not None:
        json_path.parent.mkdir(parents=True, exist_ok=True)
        json_path.write_text(json.dumps(results, indent=2) + "\n")
        print(f"results: {json_path}")
    docs = args.docs or (
        None if args.quick or set(only) != set(SCENARIOS) else ROOT / "docs" / "benchmarks.md"
    )
    if docs is not None:
        report.update_docs(results, docs)
        print(f"report: {docs}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
