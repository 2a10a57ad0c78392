"""The folders show the architecture (STYLE principle 2): imports point down
only. ``messaging`` knows envelopes and imports neither ``runtime`` nor
``actors`` (nor wasmtime); ``runtime`` knows wasmtime and may use
``messaging``'s types but never ``actors``; ``actors`` may use both. Every
layer may import the shared root error, ``wasmactors._errors``, and nothing
else of the root package (the command line and ``testing`` sit above all
three). Checked on the source text, type-only imports included."""

from __future__ import annotations

import ast
from typing import TYPE_CHECKING

import pytest

from tests.guests import ROOT

if TYPE_CHECKING:
    from pathlib import Path

#: Each layer, lowest first, and the layers below it that it may import.
LAYERS = {"messaging": set(), "runtime": {"messaging"}, "actors": {"messaging", "runtime"}}
#: Third-party packages a layer must not import.
FORBIDDEN = {"messaging": {"wasmtime"}, "runtime": set(), "actors": {"wasmtime"}}


def imported_modules(path: Path, package: str) -> set[str]:
    """Absolute names of every module ``path`` (in ``wasmactors.<package>``) imports."""
    tree = ast.parse(path.read_text(), str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                base = node.module or ""
            else:
                parts = ["wasmactors", package][: 3 - node.level]
                base = ".".join([*parts, *([node.module] if node.module else [])])
            names.add(base)
            if node.module is None:  # `from .. import x`: x is a module of the package
                names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def layer_of(module: str) -> str | None:
    """The layer a ``wasmactors`` module belongs to, ``"root"`` for the root
    package's own modules, ``None`` for anything outside wasmactors."""
    parts = module.split(".")
    if parts[0] != "wasmactors":
        return None
    if len(parts) == 1:
        return "root"
    return parts[1] if parts[1] in LAYERS else f"root:{parts[1]}"


def violations(package: str) -> list[str]:
    found = []
    for path in sorted((ROOT / package).glob("*.py")):
        for module in sorted(imported_modules(path, package)):
            layer = layer_of(module)
            top = module.split(".")[0]
            if layer is None:
                if top in FORBIDDEN[package]:
                    found.append(f"{path.name} imports {module}")
            elif layer == "root" or (layer.startswith("root:") and layer != "root:_errors"):
                found.append(f"{path.name} imports {module} (the root package sits above the layers)")
            elif layer in LAYERS and layer != package and layer not in LAYERS[package]:
                found.append(f"{path.name} imports {module} (a layer above {package})")
    return found


@pytest.mark.parametrize("package", list(LAYERS))
def test_imports_point_down_only(package: str) -> None:
    """No module of a layer imports a layer above it, the root package, or a forbidden library."""
    assert violations(package) == []


def test_the_check_sees_upward_and_relative_imports(tmp_path: Path) -> None:
    """The checker resolves relative imports, so it would catch the arrow it forbids."""
    source = tmp_path / "bad.py"
    source.write_text(
        "from ..runtime import RequestError\nfrom .. import actors\nimport wasmtime\nfrom ._x import y\n"
    )
    assert imported_modules(source, "messaging") == {
        "wasmactors.runtime",
        "wasmactors",
        "wasmactors.actors",
        "wasmtime",
        "wasmactors.messaging._x",
    }
    assert layer_of("wasmactors.runtime._errors") == "runtime"
    assert layer_of("wasmactors._errors") == "root:_errors"
    assert layer_of("wasmactors._cli") == "root:_cli"
