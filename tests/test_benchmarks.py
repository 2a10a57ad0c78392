"""The benchmark suite runs (tiny counts), so it cannot rot. It reports; nothing here checks a timing."""

from __future__ import annotations

import importlib.util
import json
from typing import TYPE_CHECKING

from benchmarks import report
from benchmarks.__main__ import SCENARIOS, main

from .conftest import CACHE

if TYPE_CHECKING:
    from pathlib import Path

    import pytest


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
    if importlib.util.find_spec("matplotlib"):  # the bench extra: plots beside the report
        assert (tmp_path / "benchmarks" / "calls.png").stat().st_size > 0
        assert "![" in text
    else:  # the dev extra alone: tables, no plots
        assert "![" not in text
