"""How many linear memories a component defines, read from its binary.

wasmtime's store limits cap each linear memory, not their sum, and
wasmtime-py offers no limiter callback. The instance's memory budget is made
a bound on the *sum* this way: the component's core modules are walked
(nested components included) and the memories they define counted; the
Store then admits exactly that many memories, each capped at the budget
divided by their number. A component that would create more memories than
it defines (a module instantiated twice) fails to instantiate.

Only the structure wasmtime already validated is read: the component was
compiled before this runs.
"""

from __future__ import annotations

__all__ = ["count_memories"]

_HEADER = 8
_CORE_MODULE = 1
_COMPONENT = 4
_MEMORY = 5


def _leb(data: bytes | bytearray, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return result, pos


def _sections(data: bytes | bytearray, start: int, end: int) -> list[tuple[int, int, int]]:
    found = []
    pos = start + _HEADER
    while pos < end:
        section = data[pos]
        size, body = _leb(data, pos + 1)
        found.append((section, body, body + size))
        pos = body + size
    return found


def _walk(data: bytes | bytearray, start: int, end: int) -> int:
    count = 0
    for section, body, stop in _sections(data, start, end):
        if section == _CORE_MODULE:
            for inner, mem_body, _ in _sections(data, body, stop):
                if inner == _MEMORY:
                    count += _leb(data, mem_body)[0]
        elif section == _COMPONENT:
            count += _walk(data, body, stop)
    return count


def count_memories(data: bytes | bytearray) -> int:
    """The linear memories defined by the core modules of the component in
    ``data`` (a binary; imported memories are not counted)."""
    return _walk(data, 0, len(data))
