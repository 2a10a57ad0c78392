"""The benchmark scripts run (tiny counts), so they cannot rot. They report; nothing here times anything."""

from __future__ import annotations

from typing import TYPE_CHECKING

from benchmarks import runtime

if TYPE_CHECKING:
    import pytest


def test_runtime_benchmark_smoke(capsys: pytest.CaptureFixture[str]) -> None:
    """`python -m benchmarks.runtime --quick` completes and reports every section."""
    assert runtime.main(["--quick"]) == 0
    out = capsys.readouterr().out
    for section in ("load (ms)", "instantiate (ms)", "payload 16 B", "payload 4096 B", "wasmactors_wat"):
        assert section in out
