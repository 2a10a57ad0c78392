"""Test guests: WAT fixtures (assembled into a shared component shell) and
the Python example guests built by `make guests`."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
WAT = Path(__file__).parent / "wat"


def wat_guest(name: str) -> bytes:
    """The component text of WAT guest ``name`` (a file in tests/guests/wat/)."""
    return wat_component((WAT / f"{name}.wat").read_text())


#: The shell's default ``handle-callback``: ok, whatever the outcome.
CALLBACK_OK = """(func (export "handle-callback") (param i64 i32 i32 i32 i32) (result i32)
      (i32.store8 (i32.const 16) (i32.const 0))
      (i32.const 16))"""


def wat_component(
    body: str, *, imports: str = "", lower: str = "", core_imports: str = "", callback: str = CALLBACK_OK
) -> bytes:
    """A WAT guest from its core module fields ``body`` and, for a guest that
    calls host functions, its component-level ``imports``, the ``lower``
    definitions (core funcs, ending with a core instance ``$host``) and the
    module's ``core_imports`` from ``"host"``; ``callback`` replaces the
    default ``handle-callback`` export."""
    shell = (WAT / "shell.wat").read_text()
    return (
        shell.replace(";;@GUEST@", body)
        .replace(";;@CALLBACK@", callback)
        .replace(";;@IMPORTS@", imports)
        .replace(";;@LOWER@", lower)
        .replace(";;@CORE-IMPORTS@", core_imports)
        .replace(";;@WITH@", '(with "host" (instance $host))' if core_imports else "")
        .encode()
    )


def python_guest(name: str) -> Path:
    """The built component of a Python guest (``make guests`` builds it)."""
    for base in (ROOT / "examples" / name, ROOT / "tests" / "guests" / name):
        path = base / "build" / f"{name}.wasm"
        if base.exists():
            if not path.exists():
                raise FileNotFoundError(f"{path} is not built; run `make guests`")
            return path
    raise FileNotFoundError(f"no Python guest named {name!r}")
