"""Every example runs (docs that run)."""

from __future__ import annotations

import subprocess
import sys

from tests.guests import ROOT


def test_quickstart_example_runs_end_to_end() -> None:
    """examples/quickstart.py counts to 42, survives a restart, and exits 0."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "add 37 -> b'42'" in out.stdout
    assert "app error: add needs a whole number, got 'many'" in out.stdout
    assert "the total is still Success(reply=b'42')" in out.stdout
    assert "guest log: DEBUG total is now 42" in out.stdout
