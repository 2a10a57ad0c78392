"""Building Python guests with componentize-py (``wasmactors build``, and the
stale-guest rebuild of ``wasmactors run`` and ``wasmactors call``)."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .runtime import Manifest, WasmActorsError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["BuildError", "GuestSource", "build", "find_wit", "guest_source", "is_stale", "manifest_guest"]

_WORLD = "actor"
#: Folders never searched for guest sources.
_SKIP = {"build", "__pycache__", ".venv", ".git"}


class BuildError(WasmActorsError):
    """A guest could not be built: no sources, no WIT, or componentize-py failed."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        #: componentize-py's full output, when it ran.
        self.output = output


@dataclasses.dataclass(frozen=True)
class GuestSource:
    """A Python guest: where its code is and where its component goes."""

    #: The module defining ``Handler``.
    module: str
    #: The folder holding it (put on componentize-py's search path).
    folder: Path
    #: The component file to write.
    output: Path

    @property
    def name(self) -> str:
        return self.output.stem


def guest_source(path: Path, output: Path | None = None) -> GuestSource:
    """What to build for ``path``: a ``component.toml`` with a ``[build]`` table,
    a folder holding one (or an ``app.py``), or a ``.py`` module."""
    path = path.resolve()
    if path.is_dir():
        manifest = path / "component.toml"
        if manifest.exists():
            return guest_source(manifest, output)
        app = path / "app.py"
        if not app.exists():
            raise BuildError(f"{path}: no component.toml or app.py here to build")
        return GuestSource("app", path, output or path / "build" / f"{path.name}.wasm")
    if path.suffix == ".toml":
        guest = manifest_guest(Manifest.load(path), output)
        if guest is None:
            raise BuildError(
                f"{path}: no [build] table, so there is nothing to build from "
                '(add `[build]` with `module = "app"` for a Python guest)'
            )
        return guest
    if path.suffix == ".py":
        if not path.exists():
            raise BuildError(f"{path}: no such file")
        return GuestSource(path.stem, path.parent, output or path.parent / "build" / f"{path.stem}.wasm")
    raise BuildError(f"{path}: expected a component.toml, a guest folder or a .py module")


def manifest_guest(manifest: Manifest, output: Path | None = None) -> GuestSource | None:
    """The guest a manifest's ``[build]`` table describes (``None`` without one);
    it builds to the manifest's component unless ``output`` says otherwise."""
    if manifest.build is None:
        return None
    return GuestSource(manifest.build.module, manifest.build.path, output or manifest.component)


def find_wit(start: Path) -> Path:
    """The ``wit/`` folder holding ``actor.wit``: the nearest one above
    ``start``, else the one of the wasmactors checkout this package runs from."""
    for folder in (start.resolve(), *start.resolve().parents):
        if (folder / "wit" / "actor.wit").is_file():
            return folder / "wit"
    bundled = Path(__file__).resolve().parent.parent / "wit"
    if (bundled / "actor.wit").is_file():
        return bundled
    raise BuildError(f"no wit/actor.wit above {start} or beside the wasmactors package; pass --wit DIR")


def _sources(folder: Path) -> Iterator[Path]:
    for root, dirs, files in os.walk(folder):
        dirs[:] = [d for d in dirs if d not in _SKIP and not d.startswith(".")]
        yield from (Path(root) / f for f in files if f.endswith(".py"))


def is_stale(guest: GuestSource, wit: Path) -> bool:
    """True when the component is missing or older than a source or WIT file."""
    try:
        built = guest.output.stat().st_mtime
    except FileNotFoundError:
        return True
    inputs = [*_sources(guest.folder), *wit.glob("*.wit")]
    return any(p.stat().st_mtime > built for p in inputs)


def build(guest: GuestSource, wit: Path, *, progress: Callable[[str], None] | None = None) -> float:
    """Componentize ``guest`` against ``wit``; returns the seconds it took.

    ``progress`` receives a line when the build starts and then, about every
    second, the time so far (componentize-py prints nothing while it works).
    The component is written atomically: a failed build leaves the old one.
    """
    if importlib.util.find_spec("componentize_py") is None:
        raise BuildError("componentize-py is not installed (pip install componentize-py, or wasmactors[dev])")
    if not (guest.folder / f"{guest.module.replace('.', '/')}.py").exists():
        raise BuildError(f"{guest.folder}: no module {guest.module!r} to build")
    guest.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = guest.output.with_suffix(".wasm.tmp")
    command = [
        sys.executable,
        "-c",
        "import sys; from componentize_py import script; sys.argv[0] = 'componentize-py'; sys.exit(script())",
        "-d",
        str(wit),
        "-w",
        _WORLD,
        "componentize",
        "-p",
        str(guest.folder),
        guest.module,
        "-o",
        str(tmp),
    ]
    start = time.perf_counter()
    if progress:
        progress(f"building {guest.name} from {guest.folder} with componentize-py (about 15 s)")
    done = threading.Event()
    ticker = threading.Thread(target=_tick, args=(done, start, progress), daemon=True) if progress else None
    if ticker:
        ticker.start()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, check=False)
    finally:
        done.set()
        if ticker:
            ticker.join()
    output = (proc.stdout + proc.stderr).strip()
    if proc.returncode != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        last = next((line for line in reversed(output.splitlines()) if line.strip()), "no output")
        raise BuildError(f"building {guest.name} failed: {last.strip()}", output)
    tmp.replace(guest.output)
    return time.perf_counter() - start


def _tick(done: threading.Event, start: float, progress: Callable[[str], None]) -> None:
    while not done.wait(1.0):
        progress(f"  ... {time.perf_counter() - start:.0f} s")
