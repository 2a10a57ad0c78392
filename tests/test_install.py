"""The package as a user installs it: a wheel in a fresh virtualenv, away
from the checkout, runs a topology, calls a component and builds a guest."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.conftest import CACHE
from tests.guests import ROOT, python_guest

if TYPE_CHECKING:
    from pathlib import Path


def sh(*argv: str | Path, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=600, check=False
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bin/ folder of a fresh virtualenv holding the built wheel with its `build` extra."""
    base = tmp_path_factory.mktemp("wheel")
    wheels = base / "dist"
    built = sh(sys.executable, "-m", "pip", "wheel", ROOT, "--no-deps", "-q", "-w", wheels, cwd=base)
    assert built.returncode == 0, built.stderr
    (wheel,) = wheels.glob("wasmactors-*.whl")
    venv = sh(sys.executable, "-m", "venv", base / "venv", cwd=base)
    assert venv.returncode == 0, venv.stderr
    bin_ = base / "venv" / "bin"
    pip = sh(
        bin_ / "python",
        "-m",
        "pip",
        "install",
        "-q",
        "--disable-pip-version-check",
        f"{wheel}[build]",
        cwd=base,
    )
    assert pip.returncode == 0, pip.stderr
    return bin_


def test_the_wheel_runs_calls_and_builds_without_the_checkout(installed: Path, tmp_path: Path) -> None:
    """From a wheel: --version, `run` and `call` of a fresh [build] guest (no WIT needed),
    `build` against the WIT shipped in the package, and `--trio` naming its missing extra."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "RUST_BACKTRACE")}
    env["WASMACTORS_CACHE_DIR"] = str(CACHE)
    wasmactors = installed / "wasmactors"
    version = sh(wasmactors, "--version", cwd=tmp_path, env=env)
    assert version.stdout.strip() == "wasmactors 0.1.0", version.stderr

    guest = tmp_path / "counter"
    shutil.copytree(ROOT / "examples" / "counter", guest, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(python_guest("counter"), guest / "build" / "counter.wasm")  # fresh: newer than app.py
    topology = tmp_path / "topology.toml"
    topology.write_text(
        '[[child]]\ntype = "actor"\nname = "counter"\ncomponent = "counter/component.toml"\n'
        '[[message]]\nto = "counter"\npayload = "add 5"\n'
    )
    run = sh(wasmactors, "run", topology, "--idle", "0.1", cwd=tmp_path, env=env)
    assert run.returncode == 0, run.stderr
    assert "ended: idle" in run.stdout
    call = sh(wasmactors, "call", guest / "component.toml", "add 1", "--storage", "topology.db", "--as",
              "counter", cwd=tmp_path, env=env)  # fmt: skip
    assert call.returncode == 0, call.stderr
    assert "reply      '6'" in call.stdout

    trio = sh(wasmactors, "run", topology, "--trio", cwd=tmp_path, env=env)
    assert trio.returncode == 1
    assert trio.stderr.strip() == (
        "wasmactors: error: --trio needs trio, which is not installed: pip install 'wasmactors[trio]'"
    )

    (guest / "app.py").touch()  # stale now: `build` needs a WIT, and only the package has one here
    build = sh(wasmactors, "build", guest, cwd=tmp_path, env=env)
    assert build.returncode == 0, build.stderr
    assert "fits the `actor` world" in build.stdout
