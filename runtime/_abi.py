"""Direct access to wasmtime's C API for component values.

wasmtime-py's ``Func.__call__`` looks the function type up and converts every
value through Python objects on each call; a ``list<u8>`` costs ~1.3 µs a
byte that way. The hot path instead keeps one pre-built argument block per
instance and passes it straight to ``wasmtime_component_func_call``, and
reads results in place. This module holds the layouts (mirrors of
``wasmtime/component/val.h``) and private function pointers configured for
that use; nothing here knows about actors.

Arguments are borrowed by wasmtime (``const wasmtime_component_val_t *``), so
they may point at Python-owned memory. Results and host-function results are
owned by wasmtime: strings in them must be allocated by ``wasm_byte_vec_new``
and nested values by ``wasmtime_component_val_new``.
"""

from __future__ import annotations

import ctypes
import struct
import sys
from ctypes import c_bool, c_char_p, c_size_t, c_uint8, c_uint64, c_void_p, sizeof
from typing import Any

from wasmtime import _bindings
from wasmtime import _ffi as ffi

# Value kinds: wasmtime-py's own WASMTIME_COMPONENT_* constants.
BOOL = ffi.WASMTIME_COMPONENT_BOOL.value
U32 = ffi.WASMTIME_COMPONENT_U32.value
U64 = ffi.WASMTIME_COMPONENT_U64.value
STRING = ffi.WASMTIME_COMPONENT_STRING.value
LIST = ffi.WASMTIME_COMPONENT_LIST.value
RECORD = ffi.WASMTIME_COMPONENT_RECORD.value
TUPLE = ffi.WASMTIME_COMPONENT_TUPLE.value
VARIANT = ffi.WASMTIME_COMPONENT_VARIANT.value
ENUM = ffi.WASMTIME_COMPONENT_ENUM.value
OPTION = ffi.WASMTIME_COMPONENT_OPTION.value
RESULT = ffi.WASMTIME_COMPONENT_RESULT.value

VAL_SIZE = 32
ENTRY_SIZE = 48
OF = 8  # offset of the union inside a value


class Str(ctypes.Structure):
    """A borrowed ``wasm_name_t`` pointing at a Python ``bytes`` object."""

    _fields_ = [("size", c_size_t), ("data", c_char_p)]


class Vec(ctypes.Structure):
    """Any ``{size, data*}`` vector: list, record, tuple."""

    _fields_ = [("size", c_size_t), ("data", c_void_p)]


class ResultOf(ctypes.Structure):
    _fields_ = [("is_ok", c_bool), ("val", c_void_p)]


class VariantOf(ctypes.Structure):
    _fields_ = [("discriminant", Str), ("val", c_void_p)]


class Union(ctypes.Union):
    _fields_ = [
        ("boolean", c_bool),
        ("u32", ctypes.c_uint32),
        ("u64", c_uint64),
        ("str", Str),
        ("vec", Vec),
        ("ptr", c_void_p),
        ("result", ResultOf),
        ("variant", VariantOf),
    ]


class Val(ctypes.Structure):
    """``wasmtime_component_val_t``: a kind byte and a 24-byte union."""

    _fields_ = [("kind", c_uint8), ("of", Union)]


class Entry(ctypes.Structure):
    """``wasmtime_component_valrecord_entry_t``."""

    _fields_ = [("name", Str), ("val", Val)]


# Our mirrors read and write wasmtime's values in place, without wasmtime-py's
# per-field conversions; they must lay out exactly as wasmtime-py's own
# declarations of the same C structs. Every field the call path touches:
# (ours, wasmtime-py's, field pairs).
_LAYOUTS: list[tuple[Any, str, list[tuple[str, str]]]] = [
    (Val, "wasmtime_component_val_t", [("kind", "kind"), ("of", "of")]),
    (Entry, "wasmtime_component_valrecord_entry_t", [("name", "name"), ("val", "val")]),
    (Str, "wasm_name_t", [("size", "size"), ("data", "data")]),
    (Vec, "wasmtime_component_vallist_t", [("size", "size"), ("data", "data")]),
    (ResultOf, "wasmtime_component_valresult_t", [("is_ok", "is_ok"), ("val", "val")]),
    (VariantOf, "wasmtime_component_valvariant_t", [("discriminant", "discriminant"), ("val", "val")]),
    (Union, "wasmtime_component_valunion_t", [("u64", "u64"), ("str", "string"), ("vec", "list")]),
]

# The C functions the call path calls through its own function objects:
# name -> (argument classes, result class), "p" for any pointer, "iN" for an
# N-byte integer, "-" for void. Checked against wasmtime-py's declarations.
_SIGNATURES: dict[str, tuple[str, str]] = {
    "wasmtime_component_func_call": ("p p p i8 p i8", "p"),
    "wasmtime_component_func_post_return": ("p p", "p"),
    "wasmtime_context_set_fuel": ("p i8", "p"),
    "wasmtime_context_get_fuel": ("p p", "p"),
    "wasmtime_context_set_epoch_deadline": ("p i8", "-"),
    "wasmtime_component_val_delete": ("p", "-"),
    "wasmtime_component_val_new": ("p", "p"),
    "wasm_byte_vec_new": ("p i8 p", "-"),
    "wasmtime_component_vallist_new_uninit": ("p i8", "-"),
    "wasmtime_error_new": ("p", "p"),
    "wasmtime_component_linker_instance_add_func": ("p p i8 p p p", "p"),
    "wasmtime_engine_increment_epoch": ("p", "-"),
    "wasmtime_engine_clone": ("p", "p"),
}
#: The host-function callback: (env, context, type, args, nargs, results, nresults) -> error.
_CALLBACK_SIGNATURE = ("p p p p i8 p i8", "i8")


def _class(ctype: Any) -> str:
    if ctype is None:
        return "-"
    if ctype in (c_void_p, c_char_p) or (hasattr(ctype, "_type_") and isinstance(ctype._type_, type)):
        return "p"  # POINTER(x)
    if hasattr(ctype, "argtypes"):  # a CFUNCTYPE
        return "p"
    return f"i{sizeof(ctype)}"


def coupling_problems(bindings: Any = _bindings) -> list[str]:
    """How the installed wasmtime-py's C declarations differ from what the
    direct call path assumes (empty: they agree)."""
    problems = []
    for ours, name, fields in _LAYOUTS:
        theirs = getattr(bindings, name, None)
        if theirs is None or sizeof(ours) != sizeof(theirs):
            problems.append(f"struct {name} has another size")
            continue
        for mine, their in fields:
            if getattr(ours, mine).offset != getattr(theirs, their, None).__getattribute__("offset"):
                problems.append(f"struct {name}: field {their} moved")
    for name, (args, result) in _SIGNATURES.items():
        declared = getattr(bindings, f"_{name}", None)
        if declared is None:
            problems.append(f"function {name} is missing")
            continue
        found = (" ".join(_class(t) for t in declared.argtypes), _class(declared.restype))
        if found != (args, result):
            problems.append(f"function {name} is ({found[0]}) -> {found[1]}, expected ({args}) -> {result}")
    callback = getattr(bindings, "wasmtime_component_func_callback_t", None)
    if (
        callback is None
        or (
            " ".join(_class(t) for t in callback._argtypes_),
            _class(callback._restype_),
        )
        != _CALLBACK_SIGNATURE
    ):
        problems.append("the host-function callback type changed")
    return problems


_PROBLEMS = coupling_problems()
if _PROBLEMS:
    raise ImportError(
        "wasmactors' direct call path does not match the installed wasmtime "
        f"{getattr(ffi, 'VERSION', '')} C API ({'; '.join(_PROBLEMS)}); this release supports wasmtime 50.x"
    )
assert (sizeof(Val), sizeof(Entry)) == (VAL_SIZE, ENTRY_SIZE)


def _raw(name: str, restype: Any) -> Any:
    # ``dll[name]`` makes a fresh function object; ``dll.name`` would return
    # wasmtime-py's own, whose argtypes we must not change. It has no
    # argtypes: callers pass ready ctypes objects, which skips conversions.
    fn = ffi.dll[name]
    fn.restype = restype
    return fn


# The same library loaded as a PyDLL: its functions keep the GIL while they
# run. A ``cdll`` call releases and retakes the GIL even for a function that
# returns in nanoseconds, and every release is a chance for another thread
# (the event loop) to take it and make the caller wait. Only calls that may
# run wasm (or block) go through ``_raw``; the quick bookkeeping ones
# (fuel, epoch deadline, freeing a result) go through ``_held``.
_HELD_DLL = ctypes.PyDLL(ffi.dll._name, handle=ffi.dll._handle)


def _held(name: str, restype: Any) -> Any:
    fn = _HELD_DLL[name]
    fn.restype = restype
    return fn


#: Runs wasm: releases the GIL.
func_call = _raw("wasmtime_component_func_call", c_void_p)
#: A no-op since wasmtime 43 (post-return runs inside ``func_call``); kept for
#: the coupling check, not called on the hot path.
func_post_return = _raw("wasmtime_component_func_post_return", c_void_p)
set_fuel = _held("wasmtime_context_set_fuel", c_void_p)
get_fuel = _held("wasmtime_context_get_fuel", c_void_p)
set_epoch_deadline = _held("wasmtime_context_set_epoch_deadline", None)
val_delete = _held("wasmtime_component_val_delete", None)
val_new = _raw("wasmtime_component_val_new", c_void_p)
byte_vec_new = _raw("wasm_byte_vec_new", None)
vallist_new_uninit = _raw("wasmtime_component_vallist_new_uninit", None)
error_new = _raw("wasmtime_error_new", c_void_p)

#: The process's memory as one read-only byte view, to read wasmtime-owned
#: result values in place with ``struct.unpack_from`` and slicing: no ctypes
#: call and no ctypes object per read (``string_at`` costs ~0.9 µs a read,
#: an ``unpack_from`` here ~0.2 µs). It reads exactly the addresses
#: ``string_at`` would, which wasmtime gave us; nothing is copied until a
#: slice is turned into bytes.
MEMORY = memoryview((ctypes.c_char * sys.maxsize).from_address(0)).cast("B").toreadonly()

_Q = struct.Struct("<Q")
_QQ = struct.Struct("<QQ")
#: A result value: kind, is_ok, pointer to the ok/err value.
RESULT_LAYOUT = struct.Struct("<B7x?7xQ")
#: An option value: kind, pointer to the payload (0 for none).
OPTION_LAYOUT = struct.Struct("<B7xQ")


def read_string(val_addr: int, limit: int | None = None) -> bytes:
    """The UTF-8 bytes of a string value at ``val_addr`` (at most ``limit``
    of them: a guest's string may be as large as its memory)."""
    size, data = _QQ.unpack_from(MEMORY, val_addr + OF)
    if limit is not None:
        size = min(size, limit)
    return MEMORY[data : data + size].tobytes() if size else b""


def string_size(val_addr: int) -> int:
    """The length in bytes of the string value at ``val_addr``, without reading it."""
    return int(_Q.unpack_from(MEMORY, val_addr + OF)[0])


def read_pointer(val_addr: int, offset: int = OF) -> int:
    return int(_Q.unpack_from(MEMORY, val_addr + offset)[0])


def to_guest(data: bytes) -> bytes:
    """A payload as the UTF-8 of its Latin-1 string (see ``payload`` in the
    WIT); ASCII passes through without a copy."""
    return data if data.isascii() else data.decode("latin-1").encode()


def from_guest(raw: bytes) -> bytes | None:
    """The bytes of a guest's payload string; ``None`` if a character is above
    U+00FF, so it is not a byte string."""
    if raw.isascii():
        return raw
    try:
        return raw.decode().encode("latin-1")
    except UnicodeEncodeError:
        return None


def write_string(val_addr: int, data: bytes) -> None:
    """Store ``data`` as a wasmtime-owned string value at ``val_addr``."""
    ctypes.memset(val_addr, 0, VAL_SIZE)
    ctypes.memset(val_addr, STRING, 1)
    byte_vec_new(c_void_p(val_addr + OF), c_size_t(len(data)), c_char_p(data))


# A tiny description of host-function results, lowered into wasmtime-owned
# values: ("str", bytes) | ("u32" | "u64", int) | ("bool", bool) | ("option", v|None)
# | ("ok", v|None) | ("err", v) | ("case", name, v|None) | ("strings", [bytes]).
Spec = tuple[Any, ...]


def lower(val_addr: int, spec: Spec) -> None:
    """Write the value described by ``spec`` at ``val_addr`` (wasmtime-owned)."""
    tag = spec[0]
    if tag == "str":
        write_string(val_addr, spec[1])
        return
    val = Val.from_address(val_addr)
    ctypes.memset(val_addr, 0, VAL_SIZE)
    if tag == "u64":
        val.kind = U64
        val.of.u64 = spec[1]
    elif tag == "u32":
        val.kind = U32
        val.of.u32 = spec[1]
    elif tag == "bool":
        val.kind = BOOL
        val.of.boolean = bool(spec[1])
    elif tag == "option":
        val.kind = OPTION
        val.of.ptr = _boxed(spec[1])
    elif tag in ("ok", "err"):
        val.kind = RESULT
        val.of.result.is_ok = tag == "ok"
        val.of.result.val = _boxed(spec[1])
    elif tag == "case":
        val.kind = VARIANT
        name: bytes = spec[1].encode()
        byte_vec_new(c_void_p(val_addr + OF), c_size_t(len(name)), c_char_p(name))
        val.of.variant.val = _boxed(spec[2])
    elif tag == "strings":
        items: list[bytes] = spec[1]
        val.kind = LIST
        vallist_new_uninit(c_void_p(val_addr + OF), c_size_t(len(items)))
        base = val.of.vec.data
        for i, item in enumerate(items):
            write_string(base + i * VAL_SIZE, item)
    else:  # pragma: no cover - a programming error in this package
        raise AssertionError(f"unknown value spec {tag!r}")


def _boxed(spec: Spec | None) -> int | None:
    if spec is None:
        return None
    tmp = Val()
    lower(ctypes.addressof(tmp), spec)
    # val_new moves the bits into a wasmtime-owned box; ``tmp`` is plain
    # Python memory and is not dropped separately.
    return int(val_new(ctypes.byref(tmp)))
