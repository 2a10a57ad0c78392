"""Building guests (``wasmactors build``, and the stale-guest rebuild of
``wasmactors run`` and ``wasmactors call``): Python with componentize-py,
JavaScript with componentize-js (see :mod:`wasmactors._jsbuild`)."""

from __future__ import annotations

import dataclasses
import importlib.resources
import importlib.util
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from .runtime import Manifest, WasmActorsError
from .runtime._traps import guest_error_line

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

__all__ = [
    "BuildError",
    "GuestSource",
    "build",
    "bundled_wit",
    "find_wit",
    "guest_source",
    "is_stale",
    "manifest_guest",
    "project_wit",
]

_WORLD = "actor"
#: Folders never searched for guest sources.
_SKIP = {"build", "__pycache__", ".venv", ".git", "node_modules"}
_JS_SUFFIXES = (".js", ".mjs")
#: Environment variables a build never inherits: a Rust backtrace setting turns
#: componentize-py's Python error into a Rust stack dump; a Python path would
#: bundle whatever it names.
_UNINHERITED = {"RUST_BACKTRACE", "RUST_LIB_BACKTRACE", "PYTHONPATH", "PYTHONHOME", "PIPENV_ACTIVE"}


class BuildError(WasmActorsError):
    """A guest could not be built: no sources, no WIT, or the toolchain failed."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        #: The toolchain's full output, when it ran.
        self.output = output


@dataclasses.dataclass(frozen=True)
class GuestSource:
    """A guest: where its code is and where its component goes."""

    #: Python: the module defining ``Handler``; JavaScript: the entry file.
    module: str
    #: The folder holding it (componentize-py's only search path).
    folder: Path
    #: The component file to write.
    output: Path
    #: ``"python"`` or ``"javascript"``.
    language: str = "python"

    @property
    def name(self) -> str:
        return self.output.stem

    @property
    def entry(self) -> Path:
        """The guest's main source file."""
        if self.language == "javascript":
            return self.folder / self.module
        return self.folder / f"{self.module.replace('.', '/')}.py"


def guest_source(path: Path, output: Path | None = None) -> GuestSource:
    """What to build for ``path``: a ``component.toml`` with a ``[build]`` table,
    a folder holding one (or an ``app.py`` / ``app.js``), a ``.py`` module or
    a ``.js`` file."""
    path = path.resolve()
    if path.is_dir():
        manifest = path / "component.toml"
        if manifest.exists():
            return guest_source(manifest, output)
        default = output or path / "build" / f"{path.name}.wasm"
        if (path / "app.py").exists():
            return GuestSource("app", path, default)
        if (path / "app.js").exists():
            return GuestSource("app.js", path, default, "javascript")
        raise BuildError(f"{path}: no component.toml, app.py or app.js here to build")
    if path.suffix == ".toml":
        guest = manifest_guest(Manifest.load(path), output)
        if guest is None:
            raise BuildError(
                f"{path}: no [build] table, so there is nothing to build from "
                '(add `[build]` with `module = "app"` for a Python guest, `module = "app.js"` for JavaScript)'
            )
        return guest
    if path.suffix in (".py", *_JS_SUFFIXES):
        if not path.exists():
            raise BuildError(f"{path}: no such file")
        default = output or path.parent / "build" / f"{path.stem}.wasm"
        if path.suffix == ".py":
            return GuestSource(path.stem, path.parent, default)
        return GuestSource(path.name, path.parent, default, "javascript")
    raise BuildError(f"{path}: expected a component.toml, a guest folder, a .py module or a .js file")


def manifest_guest(manifest: Manifest, output: Path | None = None) -> GuestSource | None:
    """The guest a manifest's ``[build]`` table describes (``None`` without one);
    it builds to the manifest's component unless ``output`` says otherwise."""
    if manifest.build is None:
        return None
    module = manifest.build.module
    language = manifest.build.language or ("javascript" if module.endswith(_JS_SUFFIXES) else "python")
    return GuestSource(module, manifest.build.path, output or manifest.component, language)


def project_wit(start: Path) -> Path | None:
    """The nearest ``wit/`` folder holding ``actor.wit`` at or above ``start``."""
    for folder in (start.resolve(), *start.resolve().parents):
        if (folder / "wit" / "actor.wit").is_file():
            return folder / "wit"
    return None


def bundled_wit() -> Path:
    """The WIT shipped with this package (its ``wasmactors/wit`` package data,
    or in a checkout the repository's ``wit/``)."""
    shipped = importlib.resources.files("wasmactors") / "wit"
    if shipped.is_dir() and (shipped / "actor.wit").is_file():
        return Path(str(shipped))
    checkout = Path(__file__).resolve().parent.parent / "wit"
    if (checkout / "actor.wit").is_file():
        return checkout
    raise BuildError("this wasmactors installation has no wit/actor.wit; pass --wit DIR")


def find_wit(start: Path) -> Path:
    """The WIT to build against: the nearest project ``wit/`` above ``start``,
    else the one shipped with the package."""
    return project_wit(start) or bundled_wit()


def _sources(guest: GuestSource) -> Iterator[Path]:
    suffixes = _JS_SUFFIXES if guest.language == "javascript" else (".py",)
    for root, dirs, files in os.walk(guest.folder):
        dirs[:] = [d for d in dirs if d not in _SKIP and not d.startswith(".")]
        yield from (Path(root) / f for f in files if f.endswith(suffixes))


def is_stale(guest: GuestSource, wit: Path | None) -> bool:
    """True when the component is missing or older than a source file, or a
    file of ``wit`` (``None``: the WIT is not compared, as for the one shipped
    with the package, whose files date from its installation)."""
    try:
        built = guest.output.stat().st_mtime
    except FileNotFoundError:
        return True
    inputs = [*_sources(guest), *(wit.glob("*.wit") if wit else ())]
    return any(p.stat().st_mtime > built for p in inputs)


def build(guest: GuestSource, wit: Path, *, progress: Callable[[str], None] | None = None) -> float:
    """Componentize ``guest`` against ``wit``; returns the seconds it took.

    ``progress`` receives a line when the build starts and then, about every
    second, the time so far (the toolchains print nothing while they work).
    The component is written atomically: a failed build leaves the old one.
    """
    if not guest.entry.exists():
        raise BuildError(f"{guest.folder}: no {guest.entry.name} to build")
    guest.output.parent.mkdir(parents=True, exist_ok=True)
    tmp = guest.output.with_suffix(".wasm.tmp")
    start = time.perf_counter()
    if guest.language == "javascript":
        from . import _jsbuild

        command = _jsbuild.command(guest.entry, wit, tmp, progress=progress)
        tool, env = "componentize-js", os.environ.copy()
        about = "about 30 s; more on first use"
    else:
        command = _python_command(guest, wit, tmp)
        tool, env = "componentize-py", None
        about = "about 10-30 s"
    if progress:
        progress(f"building {guest.name} from {guest.entry} with {tool} ({about})")
    with tempfile.TemporaryDirectory(prefix="wasmactors-build-") as scratch:
        if env is None:
            env = _isolated_env(Path(scratch))
        code, output = run_with_progress(command, env=env, progress=progress, start=start)
    if code != 0 or not tmp.exists():
        tmp.unlink(missing_ok=True)
        raise BuildError(f"building {guest.name} failed: {_failure_line(output)}", output)
    tmp.replace(guest.output)
    return time.perf_counter() - start


def _python_command(guest: GuestSource, wit: Path, out: Path) -> list[str]:
    if importlib.util.find_spec("componentize_py") is None:
        raise BuildError("componentize-py is not installed (pip install 'wasmactors[build]')")
    return [
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
        str(out),
    ]


def _isolated_env(scratch: Path) -> dict[str, str]:
    """componentize-py adds ``$VIRTUAL_ENV``'s site-packages to the guest's
    path, else the global ones of the ``python3`` on ``PATH``: point it at an
    empty one so that a guest bundles only its own folder."""
    env = {k: v for k, v in os.environ.items() if k not in _UNINHERITED}
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    (scratch / "lib" / version / "site-packages").mkdir(parents=True)
    env["VIRTUAL_ENV"] = str(scratch)
    return env


def _failure_line(output: str) -> str:
    """The line that says why: the last exception line, else the last line."""
    named = guest_error_line(output.encode())
    if named:
        return named
    return next((line.strip() for line in reversed(output.splitlines()) if line.strip()), "no output")


def run_with_progress(
    command: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    progress: Callable[[str], None] | None = None,
    start: float | None = None,
) -> tuple[int, str]:
    """Run ``command``, telling ``progress`` the time so far about every
    second; its exit code and its output (stdout then stderr)."""
    began = time.perf_counter() if start is None else start
    done = threading.Event()
    ticker = threading.Thread(target=_tick, args=(done, began, progress), daemon=True) if progress else None
    if ticker:
        ticker.start()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, check=False, env=env)
    finally:
        done.set()
        if ticker:
            ticker.join()
    return proc.returncode, (proc.stdout + proc.stderr).strip()


def _tick(done: threading.Event, start: float, progress: Callable[[str], None]) -> None:
    while not done.wait(1.0):
        progress(f"  ... {time.perf_counter() - start:.0f} s")
