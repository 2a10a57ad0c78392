"""JavaScript guests: componentize-js, installed with npm into the user's
cache on first use, driven through its ``componentize()`` API from a small
node script (``jco componentize`` on the command line fails to read its
input on some systems, the API does not)."""

from __future__ import annotations

import os
import shutil
import subprocess
from typing import TYPE_CHECKING

from ._build import BuildError, run_with_progress
from .runtime import default_cache_dir

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["COMPONENTIZE_JS", "command", "ensure_toolchain", "toolchain_dir"]

#: The componentize-js release guests are built with.
COMPONENTIZE_JS = "0.23.0"
_PACKAGE = "@bytecodealliance/componentize-js"

# Takes the entry file, the WIT folder and the output path. The `http` and
# `fetch-event` features are off: the `actor` world imports neither.
_SCRIPT = """\
import { componentize } from "@bytecodealliance/componentize-js";
import { writeFile } from "node:fs/promises";

const [sourcePath, witPath, out] = process.argv.slice(2);
try {
  const { component } = await componentize({
    sourcePath,
    witPath,
    worldName: "actor",
    disableFeatures: ["http", "fetch-event"],
  });
  await writeFile(out, component);
} catch (error) {
  console.error(String(error?.stack ?? error));
  process.exit(1);
}
"""


def toolchain_dir() -> Path:
    """Where componentize-js is installed: ``toolchains/`` in the wasmactors
    cache folder (``$WASMACTORS_CACHE_DIR``, else ``~/.cache/wasmactors``)."""
    return default_cache_dir() / "toolchains" / f"componentize-js-{COMPONENTIZE_JS}"


def _which(tool: str) -> str:
    found = shutil.which(tool)
    if found is None:
        raise BuildError(
            f"JavaScript guests are built with componentize-js, which needs node (20 or later) and npm; "
            f"`{tool}` is not on PATH (install Node.js: https://nodejs.org, or your system's nodejs and npm)"
        )
    return found


def ensure_toolchain(progress: Callable[[str], None] | None = None) -> Path:
    """The folder holding componentize-js and the build script, installing
    them with npm the first time."""
    node = _which("node")
    folder = toolchain_dir()
    installed = folder / "node_modules" / _PACKAGE / "package.json"
    if not installed.exists():
        npm = _which("npm")
        if progress:
            progress(
                f"installing {_PACKAGE} {COMPONENTIZE_JS} with npm into {folder} "
                "(first JavaScript build only: about 390 MiB, a minute or two)"
            )
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = folder.with_name(f"{folder.name}.partial-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        install = [npm, "install", "--prefix", str(staging), "--no-audit", "--no-fund", "--loglevel=error"]
        code, output = run_with_progress([*install, f"{_PACKAGE}@{COMPONENTIZE_JS}"], progress=progress)
        if code != 0:
            shutil.rmtree(staging, ignore_errors=True)
            last = next((ln for ln in reversed(output.splitlines()) if ln.strip()), "no output")
            raise BuildError(f"npm could not install {_PACKAGE}@{COMPONENTIZE_JS}: {last.strip()}", output)
        try:
            staging.rename(folder)
        except OSError:  # another build installed it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    script = folder / "componentize.mjs"
    if not script.exists() or script.read_text() != _SCRIPT:
        script.write_text(_SCRIPT)
    _check_node(node)
    return folder


def _check_node(node: str) -> None:
    try:
        version = subprocess.run([node, "--version"], capture_output=True, text=True, check=True).stdout
        major = int(version.strip().lstrip("v").split(".")[0])
    except (OSError, ValueError, subprocess.CalledProcessError) as exc:
        raise BuildError(f"cannot run {node} --version: {exc}") from exc
    if major < 18:
        raise BuildError(f"componentize-js needs node 18 or later; {node} is {version.strip()}")


def command(entry: Path, wit: Path, out: Path, *, progress: Callable[[str], None] | None = None) -> list[str]:
    """The command that componentizes ``entry`` against ``wit`` into ``out``."""
    folder = ensure_toolchain(progress)
    return [_which("node"), str(folder / "componentize.mjs"), str(entry), str(wit), str(out)]
