"""Hostile imports: a component that imports host functions with the wrong
type, or interfaces the host does not have, is refused at load, never run."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from tests.guests import ROOT, python_guest
from tests.guests.hostile import importing_guest
from wasmactors.runtime import Engine, ImportMismatchError, MissingImportsError

#: (interface, function, a wrong component type for it)
WRONG_TYPES = [
    ("messaging", "send", "(func)"),
    ("messaging", "send", '(func (param "to" string) (param "payload" string))'),
    ("messaging", "request", '(func (param "to" string) (param "p" string) (param "t" u64) (result u64))'),
    ("messaging", "self-address", "(func (result u64))"),
    ("services", "log", '(func (param "message" string))'),
    ("services", "now-ns", "(func (result string))"),
    ("storage", "set", '(func (param "key" string) (param "value" u64))'),
    ("storage", "get", '(func (param "key" u32) (result u32))'),
    ("storage", "keys", '(func (param "prefix" string) (result (list u8)))'),
    ("storage", "delete", '(func (param "key" string) (param "extra" string) (result bool))'),
    ("lifecycle", "stop", '(func (param "code" u32))'),
    ("lifecycle", "stop", "(func (result bool))"),
]


def _import(iface: str, func: str, ty: str) -> str:
    return f'(import "wasmactors:actor/{iface}@0.1.0" (instance (export "{func}" {ty})))'


@pytest.mark.parametrize(("iface", "func", "ty"), WRONG_TYPES)
def test_a_host_function_imported_with_the_wrong_type_is_refused_at_load(
    engine: Engine, iface: str, func: str, ty: str
) -> None:
    """Wrong arity, parameter kinds or result: refused, naming the import and both signatures."""
    source = importing_guest(_import(iface, func, ty))
    with pytest.raises(ImportMismatchError) as info:
        engine.load(source)
    message = str(info.value)
    assert f"`wasmactors:actor/{iface}@0.1.0#{func}` has the wrong type" in message
    assert "expected func(" in message
    assert "found func(" in message
    assert "\n" not in message
    assert info.value.mismatched == [f"wasmactors:actor/{iface}@0.1.0#{func}"]
    assert not engine.inspect(source).fits


def test_inspect_names_the_mismatch(engine: Engine) -> None:
    """`inspect` reports a mistyped import as a misfit without raising."""
    info = engine.inspect(
        importing_guest(_import("storage", "set", '(func (param "k" string) (param "v" u64))'))
    )
    assert not info.fits
    (problem,) = info.problems
    assert "storage@0.1.0#set` has the wrong type" in problem
    assert "found func(string, u64)" in problem


@pytest.mark.parametrize(
    ("extra", "name"),
    [
        ('(import "wasi:acme/thing@0.2.0" (instance (export "run" (func))))', "wasi:acme/thing@0.2.0"),
        (
            '(import "wasi:cli/environment@9.9.9" (instance (export "get-arguments" (func))))',
            "wasi:cli/environment@9.9.9",
        ),
        (_import("storage", "drop-all", "(func)"), "wasmactors:actor/storage@0.1.0#drop-all"),
        (_import("lifecycle", "restart", "(func)"), "wasmactors:actor/lifecycle@0.1.0#restart"),
        ('(import "wasmactors:actor/admin@0.1.0" (instance))', "wasmactors:actor/admin@0.1.0"),
        ('(import "wasmactors:actor/storage@0.1.0" (func))', "wasmactors:actor/storage@0.1.0"),
    ],
)
def test_unknown_interfaces_are_refused_at_load(engine: Engine, extra: str, name: str) -> None:
    """An interface (WASI included) or function the host lacks fails load, not instantiation."""
    source = importing_guest(extra)
    with pytest.raises(MissingImportsError) as info:
        engine.load(source)
    assert info.value.missing == [name]
    assert name in str(info.value)
    assert not engine.inspect(source).fits


def test_a_wasi_import_with_the_wrong_type_is_refused_at_load(engine: Engine) -> None:
    """WASI imports are type-checked by wasmtime's linker at load, with its whole reason on one line."""
    source = importing_guest(
        '(import "wasi:cli/environment@0.2.0" (instance (export "get-environment" (func (result u32)))))'
    )
    with pytest.raises(ImportMismatchError) as info:
        engine.load(source)
    message = str(info.value)
    assert "wasi:cli/environment@0.2.0" in message
    assert "expected `list` found `u32`" in message
    assert "\n" not in message


def test_real_guests_fit_exactly(engine: Engine) -> None:
    """The Python guests, built from wit/, import every host function with the expected type."""
    info = engine.inspect(python_guest("kitchen"))
    assert info.fits, info.problems
    assert {"wasmactors:actor/messaging@0.1.0", "wasmactors:actor/storage@0.1.0"} <= set(info.imports)


# The trampoline's own check, for a component that never went through load's
# validation. A misread could crash the interpreter: run it in a subprocess.
_BYPASS = textwrap.dedent(
    """
    import sys
    from wasmtime import component as wc
    from tests.guests import wat_component
    from wasmactors.runtime import Component, CrashKind, Engine, Instance, Limits, MiB

    imports, lower, core, call = sys.argv[1:5]
    lower += '\\n(core instance $host (export "f" (func $f)))'
    head = "(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32) "
    body = head + call + " (call $reply_none))"
    with Engine(cache_dir=None) as engine:
        raw = wc.Component(engine.raw, wat_component(body, imports=imports, lower=lower, core_imports=core))
        component = Component(engine, raw, name="bypass", digest="0" * 64, cached=False)
        with Instance(component, Limits(memory=4 * MiB, fuel=10**8, timeout=2)) as instance:
            result = instance.handle_message(b"abc", request=True)
    assert result.outcome.kind is CrashKind.HOST_FAULT, result.outcome
    print(result.outcome.message)
    """
)

_LOWER = (
    '(core func $f (canon lower (func $i "{f}") (memory (core memory $mem "memory")) '
    '(realloc (core func $mem "cabi_realloc"))))'
)


@pytest.mark.parametrize(
    ("iface", "func", "ty", "core", "call"),
    [
        ("messaging", "send", "(func)", "(func $f)", "(call $f)"),
        ("lifecycle", "stop", '(func (param "n" u32))', "(func $f (param i32))", "(call $f (i32.const 7))"),
        (
            "storage",
            "set",
            '(func (param "k" string) (param "v" u64))',
            "(func $f (param i32 i32 i64))",
            "(call $f (local.get 4) (local.get 5) (i64.const 1048576))",
        ),
        (
            "services",
            "log",
            '(func (param "m" string) (param "n" string))',
            "(func $f (param i32 i32 i32 i32))",
            "(call $f (local.get 4) (local.get 5) (local.get 4) (local.get 5))",
        ),
    ],
)
def test_the_trampoline_refuses_arguments_of_the_wrong_kind(
    iface: str, func: str, ty: str, core: str, call: str
) -> None:
    """Should a mistyped import ever get past load, its call is a host fault, not a misread."""
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            _BYPASS,
            f'(import "wasmactors:actor/{iface}@0.1.0" (instance $i (export "{func}" {ty})))',
            _LOWER.format(f=func),
            f'(import "host" "f" {core})',
            call,
        ],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert f"{iface}.{func} called with values of the wrong type" in out.stdout


def test_the_direct_call_path_checks_wasmtimes_c_declarations() -> None:
    """A wasmtime-py whose C signatures or struct layouts moved is refused by name, not misused."""
    import ctypes
    import types

    from wasmtime import _bindings

    from wasmactors.runtime import _abi

    assert _abi.coupling_problems() == []
    changed = types.SimpleNamespace(**vars(_bindings))
    func = ctypes.CDLL(None).malloc  # any function object, declared as the next release might
    func.argtypes = [ctypes.c_void_p, ctypes.c_uint32]
    func.restype = ctypes.c_void_p
    changed._wasmtime_context_set_fuel = func

    class Moved(ctypes.Structure):
        _fields_ = [("data", ctypes.c_char_p), ("size", ctypes.c_size_t)]

    changed.wasm_name_t = Moved
    problems = _abi.coupling_problems(changed)
    assert "function wasmtime_context_set_fuel is (p i4) -> p, expected (p i8) -> p" in problems
    assert "struct wasm_name_t: field size moved" in problems
