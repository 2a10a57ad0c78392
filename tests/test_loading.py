"""Loading components: what is accepted, what is rejected and how it is said."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest
import wasmtime

from tests.guests import CALLBACK_OK, ROOT, python_guest, wat_guest
from wasmactors.runtime import (
    CompileError,
    ComponentError,
    CoreModuleError,
    Engine,
    Instance,
    MissingImportsError,
    NotWasmError,
    WorldMismatchError,
)

from .conftest import LIMITS

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

SHELL = (ROOT / "tests" / "guests" / "wat" / "shell.wat").read_text()


def test_loads_a_valid_component_and_names_it(engine: Engine) -> None:
    """A component that fits the actor world loads and keeps the given name."""
    comp = engine.load(wat_guest("echo"), name="echo")
    assert comp.name == "echo"
    assert len(comp.digest) == 64


def test_rejects_bytes_that_are_not_wasm(engine: Engine, tmp_path: Path) -> None:
    """Random bytes are reported as not WebAssembly, naming the file."""
    junk = tmp_path / "junk.wasm"
    junk.write_bytes(b"\x7fELF not a component")
    with pytest.raises(NotWasmError, match=r"junk\.wasm is not WebAssembly"):
        engine.load(junk)


def test_rejects_a_missing_file(engine: Engine, tmp_path: Path) -> None:
    """A path that does not exist is a clear error, not an OSError."""
    with pytest.raises(NotWasmError, match="cannot read"):
        engine.load(tmp_path / "nope.wasm")


@pytest.mark.parametrize("source", [wasmtime.wat2wasm("(module)"), b"(module (func))"])
def test_rejects_a_core_module_and_says_how_to_componentize(engine: Engine, source: bytes) -> None:
    """Core modules, binary or text, are told apart from components."""
    with pytest.raises(CoreModuleError, match=r"not a component\..*componentize-py"):
        engine.load(source)


def test_rejects_a_component_wasmtime_cannot_compile(engine: Engine) -> None:
    """Invalid component text is a CompileError with wasmtime's reason, and its cause kept."""
    with pytest.raises(CompileError, match="wasmtime rejected") as info:
        engine.load(b"(component (core module $m (func (result i32))))")
    assert isinstance(info.value.__cause__, wasmtime.WasmtimeError)


def test_rejects_a_component_without_the_handler_export(engine: Engine) -> None:
    """A component exporting nothing does not fit the actor world."""
    with pytest.raises(WorldMismatchError, match=r"does not export `wasmactors:actor/handler@0\.1\.0`"):
        engine.load(b"(component)")


def test_rejects_a_handler_with_the_wrong_signature(engine: Engine) -> None:
    """An export with another type is named, with the expected and found signatures."""
    wrong = (
        SHELL.replace(";;@GUEST@", wat_guest_body("echo"))
        .replace(";;@CALLBACK@", CALLBACK_OK)
        .replace('(field "payload" string)', '(field "payload" (list u8))')
    )
    with pytest.raises(WorldMismatchError, match=r"`handle-message` has the wrong type") as info:
        engine.load(wrong.encode())
    assert "payload: list<u8>" in str(info.value)
    assert "payload: string" in str(info.value)


def test_names_imports_the_host_does_not_provide(engine: Engine) -> None:
    """Unknown imports are listed by name instead of failing at instantiation."""
    text = (
        wat_guest("echo")
        .decode()
        .replace(
            "(component\n",
            '(component\n  (import "acme:db/query@1.0.0" (instance (export "run" (func))))\n',
            1,
        )
    )
    with pytest.raises(MissingImportsError, match=r"acme:db/query@1\.0\.0") as info:
        engine.load(text.encode())
    assert info.value.missing == ["acme:db/query@1.0.0"]


def test_every_load_error_is_a_component_error(engine: Engine) -> None:
    """Callers can catch one class for every loading failure."""
    for bad in (b"junk", b"(module)", b"(component)"):
        with pytest.raises(ComponentError):
            engine.load(bad)


def test_second_engine_loads_from_the_artifact_cache(tmp_path: Path) -> None:
    """A component compiled once is deserialized, not recompiled, by the next engine."""
    with Engine(cache_dir=tmp_path) as first:
        assert not first.load(wat_guest("echo")).cached
    with Engine(cache_dir=tmp_path) as second:
        comp = second.load(wat_guest("echo"))
        assert comp.cached
        with Instance(comp, LIMITS) as inst:
            assert inst.handle_message(b"x", request=True).outcome.reply == b"x"  # type: ignore[union-attr]


def test_corrupt_cache_entries_are_recompiled(tmp_path: Path) -> None:
    """A damaged artifact is discarded and rebuilt, never trusted."""
    with Engine(cache_dir=tmp_path) as eng:
        eng.load(wat_guest("echo"))
    (artifact,) = tmp_path.glob("*.cwasm")
    artifact.write_bytes(b"garbage")
    with Engine(cache_dir=tmp_path) as eng:
        comp = eng.load(wat_guest("echo"))
        assert not comp.cached
        with Instance(comp, LIMITS) as inst:
            assert inst.handle_message(b"ok", request=True).ok


def test_python_guest_loads_from_cache_in_a_new_process(engine: Engine) -> None:
    """The 18 MB Python guest, compiled by this session, loads cached in a fresh process."""
    path = python_guest("kitchen")
    engine.load(path)  # make sure it is cached
    code = (
        "import sys; from wasmactors.runtime import Engine; "
        f"e = Engine(cache_dir={str(engine.cache_dir)!r}); "
        f"c = e.load({str(path)!r}); print(c.cached); e.close()"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "True"


def wat_guest_body(name: str) -> str:
    return (ROOT / "tests" / "guests" / "wat" / f"{name}.wat").read_text()


def test_a_changed_file_is_recompiled_not_served_stale(tmp_path: Path) -> None:
    """The cache's file index notices a rewritten component and compiles the new one."""
    path = tmp_path / "guest.wat"
    path.write_bytes(wat_guest("echo"))
    cache = tmp_path / "cache"
    with Engine(cache_dir=cache) as eng:
        first = eng.load(path)
        again = eng.load(path)
        assert again.cached
        assert again.name == first.name == "guest"
        path.write_bytes(wat_guest("app_error"))
        second = eng.load(path)
        assert second.digest != first.digest
        with Instance(second, LIMITS) as inst:
            assert not inst.handle_message(b"x", request=True).ok


@pytest.mark.parametrize(
    ("cut", "reason"),
    [
        (lambda b: b[: len(b) // 2], "unexpected end-of-file"),
        (lambda b: b[:9], "unexpected end-of-file"),
        (lambda b: b + b"garbage!", "unexpected end-of-file"),
        (lambda b: b[:8] + b"\xff" * 20, "malformed section id"),
    ],
)
def test_malformed_binaries_say_why_on_one_line(
    engine: Engine, cut: Callable[[bytes], bytes], reason: str
) -> None:
    """Truncated files and trailing garbage give wasmtime's whole cause, not a cut-off 'Caused by:'."""
    data = cut(bytes(wasmtime.wat2wasm(wat_guest("echo"))))
    with pytest.raises(CompileError) as info:
        engine.load(data)
    message = str(info.value)
    assert reason in message
    assert "Caused by" not in message
    assert "\n" not in message
