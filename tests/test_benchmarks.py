"""The benchmark suite runs (tiny counts), so it cannot rot. It reports; nothing here checks a timing."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import pytest

from benchmarks import report, scaling
from benchmarks.__main__ import SCENARIOS, main
from wasmactors.runtime import Engine

from .conftest import CACHE

if TYPE_CHECKING:
    import subprocess

    from .nats_server import NatsServer


def _children() -> set[int]:
    """The live (not yet reaped) child processes of this process (Linux)."""
    out = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rpartition(")")[2].split()
        except OSError:  # the process ended while we looked
            continue
        if int(fields[1]) == os.getpid():
            out.add(int(stat.parent.name))
    return out


def test_every_scenario_runs_and_reports(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m benchmarks --quick` runs every scenario, prints every table and judges the bars."""
    out_json = tmp_path / "latest.json"
    docs = tmp_path / "benchmarks.md"
    docs.write_text(
        f"# Benchmarks\n\nhand-written intro\n\n{report.START}\nold\n{report.END}\n\nhand-written notes\n"
    )
    assert main(["--quick", "--json", str(out_json), "--docs", str(docs)], cache_dir=CACHE) == 0
    results = json.loads(out_json.read_text())
    assert set(SCENARIOS) <= set(results)
    printed = capsys.readouterr().out
    for title in (
        "round trip",
        "One actor",
        "Scaling: WAT echo actors",
        "Pipeline",
        "WAT forwarders, trio",
        "Fan-out",
        "An actor's life",
        "cost of the limits",
        "Cluster: two nodes",
        "Scaling over node processes",
        "bars:",
    ):
        assert title in printed
    text = docs.read_text()
    assert "hand-written intro" in text
    assert "hand-written notes" in text
    assert "\nold\n" not in text
    assert "### The bars" in text
    assert "4-stage pipeline of WAT forwarders" in text  # issue 11's bars
    assert "ask p50 ≤ 1.5x the anyio memory-stream floor's, same run (trio)" in text
    assert "GIL-bound (native Python) workers on 2 node processes" in text  # issue 13, judged
    assert "wasm workers on 2 node processes keep" in text
    rows = results["scaling"]["rows"]
    assert set(rows) == {"wasm", "python"}
    for kind in rows.values():  # every placement measured, beside the peer in one process
        assert set(kind) == {"in process", "1", "2", "4"}
        assert all(row["messages_per_s"]["median"] > 0 for row in kind.values())
    if importlib.util.find_spec("matplotlib"):  # the bench extra: plots beside the report
        assert (tmp_path / "benchmarks" / "calls.png").stat().st_size > 0
        assert "![" in text
    else:  # the dev extra alone: tables, no plots
        assert "![" not in text


def test_scaling_nodes_are_stopped_when_the_run_fails(nats_server: NatsServer, tmp_path: Path) -> None:
    """The scaling scenario's node processes start ready, and none outlives a run that fails."""
    before = _children()
    seen: list[subprocess.Popen[str]] = []

    def fail_while_running() -> None:
        with scaling._running_nodes(nats_server.url, "scalingfail", 2, tmp_path, CACHE) as processes:
            seen.extend(processes)
            assert all(p.poll() is None for p in processes)
            assert _children() - before == {p.pid for p in processes}
            raise ZeroDivisionError

    with pytest.raises(ZeroDivisionError):
        fail_while_running()
    assert len(seen) == 2
    assert all(p.returncode is not None for p in seen)
    assert _children() == before


def test_scaling_node_that_cannot_start_is_a_clear_error(nats_server: NatsServer, tmp_path: Path) -> None:
    """A node that exits before it is ready raises with its own error output, and no node is left running."""
    before = _children()
    with (
        pytest.raises(RuntimeError, match=r"(?s)exited.*invalid cluster prefix"),
        scaling._running_nodes(nats_server.url, "bad prefix", 2, tmp_path, CACHE),
    ):
        pytest.fail("the nodes cannot be ready")
    assert _children() == before


def test_scaling_run_that_fails_leaves_no_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """When the scaling scenario fails mid-run, its nodes and its nats-server are stopped before it raises."""

    async def failing_driver(*args: object, **kwargs: object) -> NoReturn:
        raise RuntimeError("the driver failed")

    monkeypatch.setattr(scaling, "_driver", failing_driver)
    before = _children()
    with Engine(cache_dir=CACHE) as engine, pytest.raises(RuntimeError, match="the driver failed"):
        scaling.run(engine, quick=True)
    assert _children() == before
