"""Building blocks for hostile WAT guests: the host interfaces imported with
their real types (named types exported inside each import, as wit-component
does), lowered against the shell's memory, ready to call from a guest body.

Core signatures (canonical ABI): a string is (ptr, len); a result with a
payload is written through a return pointer passed last.
"""

from __future__ import annotations

from tests.guests import CALLBACK_OK, wat_component

_SEND_ERROR = (
    '(variant (case "invalid-address" string) (case "unknown-recipient" string) '
    '(case "invalid-payload" string) (case "payload-too-large" u32) (case "outbox-full" u32) '
    '(case "quota-exceeded" string))'
)
_STORAGE_ERROR = (
    '(variant (case "invalid-key" string) (case "invalid-value" string) (case "value-too-large" u32) '
    '(case "backend" string) (case "quota-exceeded" string))'
)

#: interface -> (its import, with named types) ; functions -> (component type, core signature)
_INTERFACES: dict[str, tuple[str, dict[str, tuple[str, str]]]] = {
    "messaging": (
        f'(type $e0 {_SEND_ERROR}) (export "send-error" (type $e (eq $e0)))',
        {
            "send": (
                '(func (param "to" string) (param "payload" string) (result (result (error $e))))',
                "(param i32 i32 i32 i32 i32)",
            ),
            "request": (
                '(func (param "to" string) (param "payload" string) (param "timeout-ms" u32) '
                "(result (result u64 (error $e))))",
                "(param i32 i32 i32 i32 i32 i32)",
            ),
        },
    ),
    "services": (
        '(type $l0 (enum "trace" "debug" "info" "warn" "error")) (export "log-level" (type $l (eq $l0)))',
        {"log": ('(func (param "level" $l) (param "message" string))', "(param i32 i32 i32)")},
    ),
    "storage": (
        f'(type $e0 {_STORAGE_ERROR}) (export "storage-error" (type $e (eq $e0)))',
        {
            "set": (
                '(func (param "key" string) (param "value" string) (result (result (error $e))))',
                "(param i32 i32 i32 i32 i32)",
            ),
            "get": (
                '(func (param "key" string) (result (result (option string) (error $e))))',
                "(param i32 i32 i32)",
            ),
            "keys": (
                '(func (param "prefix" string) (result (result (list string) (error $e))))',
                "(param i32 i32 i32)",
            ),
        },
    ),
    "lifecycle": ("", {"stop": ("(func)", "")}),
}


def calling_guest(body: str, *uses: str, callback: str = CALLBACK_OK) -> bytes:
    """A WAT guest whose ``body`` (and ``callback``, its ``handle-callback``
    export) may call the host functions named in ``uses`` (``"storage.set"``...)
    as ``$storage.set`` etc."""
    by_iface: dict[str, list[str]] = {}
    for use in uses:
        iface, func = use.split(".")
        by_iface.setdefault(iface, []).append(func)
    imports, lower, core, exports = [], [], [], []
    for iface, funcs in by_iface.items():
        types, table = _INTERFACES[iface]
        items = " ".join(f'(export "{f}" {table[f][0]})' for f in funcs)
        imports.append(f'(import "wasmactors:actor/{iface}@0.1.0" (instance ${iface} {types} {items}))')
        for f in funcs:
            name = f"{iface}.{f}"
            lower.append(
                f'(core func ${name} (canon lower (func ${iface} "{f}") (memory (core memory $mem "memory")) '
                f'(realloc (core func $mem "cabi_realloc"))))'
            )
            exports.append(f'(export "{name}" (func ${name}))')
            core.append(f'(import "host" "{name}" (func ${name} {table[f][1]}))')
    lower.append(f"(core instance $host {' '.join(exports)})")
    return wat_component(
        body,
        imports="\n".join(imports),
        lower="\n".join(lower),
        core_imports="\n".join(core),
        callback=callback,
    )


def importing_guest(*imports: str) -> bytes:
    """The echo guest with extra component-level ``imports`` it never calls:
    enough for load-time validation to see them."""
    body = "(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32) (call $reply_none))"
    return wat_component(body, imports="\n".join(imports))
