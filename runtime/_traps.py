"""Classifying a failed call into a crash kind."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ._outcome import Crash, CrashKind

if TYPE_CHECKING:
    from ._stdio import GuestOutput

__all__ = ["classify"]

# wasmtime's trap messages (its TrapCode Display strings).
_FUEL = "all fuel consumed"
_INTERRUPT = "interrupt"
# How guests report a refused allocation before they abort: Rust's alloc
# error handler, CPython's MemoryError, and our WAT fixtures' `oom` function.
_OOM = re.compile(rb"memory allocation of \d+ bytes failed|MemoryError|out of memory", re.IGNORECASE)
_OOM_FRAME = re.compile(r"(^|[!:_])(oom|out_of_memory|alloc_error|handle_alloc_error)\b")
_FRAME = re.compile(r"^\s*\d+:\s+0x[0-9a-f]+\s+-\s+(.*)$")
# A guest's own account of its failure on stderr: a Python or JavaScript
# exception line (`TypeError: ...`, `app.Oops: ...`), a Rust panic.
_ERROR_LINE = re.compile(
    r"^(?:(?:[A-Za-z_][\w.]*)?(?:Error|Exception|Exit|Interrupt)(?::|$)|thread '.*' panicked at )"
)
_MAX_REASON = 300


# A crash record travels to events, stats and logs on every crash: its size
# must not follow the guest's (function names, backtrace depth are the guest's).
_MAX_FRAMES = 64
_MAX_FRAME = 200
_MAX_DETAIL = 8192
_MAX_MESSAGE = 1024


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


def classify(error: BaseException, fault: BaseException | None, output: GuestOutput) -> Crash:
    """Turn wasmtime's error for a failed call into a :class:`Crash`."""
    detail = str(error)
    lines = detail.splitlines()
    frames = tuple(
        _cut(m.group(1).strip(), _MAX_FRAME) for line in lines[: _MAX_FRAMES * 4] if (m := _FRAME.match(line))
    )[:_MAX_FRAMES]
    message = _headline(lines)
    reason = guest_error_line(output.stderr_tail)
    if reason:
        message = f"{reason} ({message})"
    message = _cut(message, _MAX_MESSAGE)
    detail = _cut(detail, _MAX_DETAIL)
    if fault is not None:
        return Crash(CrashKind.HOST_FAULT, f"host fault: {type(fault).__name__}: {fault}", frames, detail)
    if _FUEL in detail:
        kind = CrashKind.FUEL_EXHAUSTED
    elif _trap_line(lines) == _INTERRUPT:
        kind = CrashKind.TIMEOUT
    elif _OOM.search(output.stderr_tail) or any(_OOM_FRAME.search(f) for f in frames):
        kind = CrashKind.MEMORY_LIMIT
    else:
        kind = CrashKind.TRAP
    return Crash(kind, message, frames, detail)


def guest_error_line(stderr: bytes) -> str:
    """The last line of ``stderr`` in which the guest named its error (the
    last line of a Python traceback, a JavaScript exception, a Rust panic);
    a JavaScript engine's message before its ``Stack:``; else ``""``."""
    lines = [line.strip() for line in stderr.decode(errors="replace").splitlines()]
    named = [line for line in lines if _ERROR_LINE.match(line)]
    if named:
        return _cap(named[-1])
    stacks = [n for n, line in enumerate(lines) if line == "Stack:" and n > 0 and lines[n - 1]]
    return _cap(lines[stacks[-1] - 1]) if stacks else ""


def _cap(line: str) -> str:
    return line if len(line) <= _MAX_REASON else line[: _MAX_REASON - 1] + "…"


def _trap_line(lines: list[str]) -> str:
    for line in lines:
        text = line.strip()
        if text.startswith("wasm trap: "):
            return text.removeprefix("wasm trap: ")
    return ""


def _headline(lines: list[str]) -> str:
    trap = _trap_line(lines)
    if trap:
        return f"wasm trap: {trap}"
    for line in lines:
        text = line.strip()
        if text and not text.startswith(("error while executing", "Caused by", "wasm backtrace")):
            return text
    return "unknown failure"
