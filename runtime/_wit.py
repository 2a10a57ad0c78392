"""Rendering component types in WIT syntax, and the `actor` world's shape.

Used to check a component against the world before it is ever run, and to
describe in errors (and ``wasmactors inspect``) what a component has.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from wasmtime import Engine
from wasmtime import component as wc

from ._host import HOST_FUNCTIONS, WIT_PACKAGE, WIT_VERSION

if TYPE_CHECKING:
    from wasmtime.component._types import ComponentExtern

__all__ = [
    "EXPECTED_EXPORTS",
    "HANDLER",
    "HOST_SIGNATURES",
    "PROVIDED_INTERFACES",
    "describe_item",
    "render_func",
    "render_type",
]

HANDLER = f"{WIT_PACKAGE}/handler@{WIT_VERSION}"

_ENVELOPE = (
    "record { sender: option<string>, kind: enum { tell, request }, payload: string, "
    "headers: list<tuple<string, string>> }"
)
_APP_ERROR = "record { message: string }"
_REQUEST_ERROR = (
    "variant { timeout, app-error(string), crashed(string), unknown-recipient(string), stopped(string), "
    "mailbox-full(string) }"
)

#: Export name -> its WIT signature (parameter names are not part of the ABI).
EXPECTED_EXPORTS = {
    "handle-message": f"func({_ENVELOPE}) -> result<option<string>, {_APP_ERROR}>",
    "handle-callback": f"func(u64, result<string, {_REQUEST_ERROR}>) -> result<_, {_APP_ERROR}>",
}

_SEND_ERROR = (
    "variant { invalid-address(string), unknown-recipient(string), invalid-payload(string), "
    "payload-too-large(u32), outbox-full(u32), quota-exceeded(string) }"
)
_STORAGE_ERROR = (
    "variant { invalid-key(string), invalid-value(string), value-too-large(u32), backend(string), "
    "quota-exceeded(string) }"
)
_LOG_LEVEL = "enum { trace, debug, info, warn, error }"

#: Interface -> function -> the WIT signature the host implements. The host
#: functions are registered untyped (wasmtime would hand them whatever the
#: component declares), so every import is compared with these at load.
HOST_SIGNATURES = {
    "messaging": {
        "send": f"func(string, string) -> result<_, {_SEND_ERROR}>",
        "request": f"func(string, string, u32) -> result<u64, {_SEND_ERROR}>",
        "self-address": "func() -> string",
    },
    "services": {
        "log": f"func({_LOG_LEVEL}, string)",
        "now-ns": "func() -> u64",
        "monotonic-ns": "func() -> u64",
    },
    "storage": {
        "get": f"func(string) -> result<option<string>, {_STORAGE_ERROR}>",
        "set": f"func(string, string) -> result<_, {_STORAGE_ERROR}>",
        "delete": f"func(string) -> result<bool, {_STORAGE_ERROR}>",
        "keys": f"func(string) -> result<list<string>, {_STORAGE_ERROR}>",
    },
    "lifecycle": {
        "stop": "func()",
    },
}
if {i: set(f) for i, f in HOST_SIGNATURES.items()} != {i: set(f) for i, f in HOST_FUNCTIONS.items()}:
    raise ImportError("HOST_SIGNATURES and HOST_FUNCTIONS disagree")  # pragma: no cover

#: Interfaces the host implements: full name -> function -> signature.
PROVIDED_INTERFACES: dict[str, dict[str, str]] = {
    f"{WIT_PACKAGE}/{iface}@{WIT_VERSION}": funcs for iface, funcs in HOST_SIGNATURES.items()
} | {f"{WIT_PACKAGE}/types@{WIT_VERSION}": {}}

_PRIMITIVES = {
    wc.Bool: "bool",
    wc.S8: "s8",
    wc.S16: "s16",
    wc.S32: "s32",
    wc.S64: "s64",
    wc.U8: "u8",
    wc.U16: "u16",
    wc.U32: "u32",
    wc.U64: "u64",
    wc.F32: "f32",
    wc.F64: "f64",
    wc.Char: "char",
    wc.String: "string",
}


def render_type(ty: wc.ValType) -> str:
    """A value type in WIT syntax, structurally (names of type aliases are lost)."""
    prim = _PRIMITIVES.get(type(ty))
    if prim is not None:
        return prim
    if isinstance(ty, wc.ListType):
        return f"list<{render_type(ty.element)}>"
    if isinstance(ty, wc.OptionType):
        return f"option<{render_type(ty.payload)}>"
    if isinstance(ty, wc.ResultType):
        ok = "_" if ty.ok is None else render_type(ty.ok)
        if ty.err is None:
            return f"result<{ok}>" if ty.ok is not None else "result"
        return f"result<{ok}, {render_type(ty.err)}>"
    if isinstance(ty, wc.TupleType):
        return f"tuple<{', '.join(render_type(t) for t in ty.elements)}>"
    if isinstance(ty, wc.RecordType):
        return "record { " + ", ".join(f"{n}: {render_type(t)}" for n, t in ty.fields) + " }"
    if isinstance(ty, wc.VariantType):
        cases = (n if t is None else f"{n}({render_type(t)})" for n, t in ty.cases)
        return "variant { " + ", ".join(cases) + " }"
    if isinstance(ty, wc.EnumType):
        return "enum { " + ", ".join(ty.names) + " }"
    if isinstance(ty, wc.FlagsType):
        return "flags { " + ", ".join(ty.names) + " }"
    return type(ty).__name__.lower()


def render_func(fty: wc.FuncType, *, names: bool = False) -> str:
    params = ", ".join(f"{n}: {render_type(t)}" if names else render_type(t) for n, t in fty.params)
    result = fty.result
    return f"func({params})" + ("" if result is None else f" -> {render_type(result)}")


def describe_item(engine: Engine, item: object, *, names: bool = True) -> str:
    """One line per import/export: a function's signature, an instance's functions."""
    if isinstance(item, wc.FuncType):
        return render_func(item, names=names)
    if isinstance(item, wc.ComponentInstanceType):
        funcs = [n for n, e in item.exports(engine).items() if isinstance(e.ty, wc.FuncType)]
        return "instance { " + ", ".join(funcs) + " }"
    return type(item).__name__


def instance_funcs(engine: Engine, ext: ComponentExtern) -> dict[str, wc.FuncType] | None:
    """The functions of an instance import/export, or ``None`` if it is not an instance."""
    ty = ext.ty
    if not isinstance(ty, wc.ComponentInstanceType):
        return None
    return {n: e.ty for n, e in ty.exports(engine).items() if isinstance(e.ty, wc.FuncType)}
