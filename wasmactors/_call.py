"""``wasmactors call`` (one actor, one message, everything it did) and
``wasmactors inspect`` (a component's imports and exports in WIT terms)."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import msgspec

from .messaging import Outgoing, SendRequest
from .runtime import (
    AppError,
    ComponentInfo,
    Crash,
    HostCall,
    HostContext,
    Instance,
    Limits,
    Manifest,
    MemoryStorage,
    MiB,
    SQLiteStorage,
    StorageBackend,
    Success,
)

if TYPE_CHECKING:
    from pathlib import Path

    from .runtime import Engine

__all__ = ["DEFAULT_FUEL", "DEFAULT_MEMORY", "DEFAULT_TIMEOUT", "CallReport", "call", "format_call"]

#: Limits of ``wasmactors call`` on a bare ``.wasm`` (a manifest brings its own).
DEFAULT_MEMORY = 64 * MiB
DEFAULT_FUEL = 1_000_000_000
DEFAULT_TIMEOUT = 5.0


class LogLine(msgspec.Struct, frozen=True):
    level: str
    message: str


class CallReport(msgspec.Struct, frozen=True, kw_only=True):
    """Everything one ``wasmactors call`` observed (also its ``--json`` output)."""

    component: str
    #: ``success``, ``app-error`` or ``crash``.
    outcome: str
    #: The reply, decoded as UTF-8 where possible (else Latin-1, one character per byte).
    reply: str | None = None
    #: The application error's message, or the crash's.
    error: str | None = None
    #: For crashes: the kind (``trap``, ``fuel-exhausted``, ``timeout``, ``memory-limit``, ``host-fault``).
    crash_kind: str | None = None
    backtrace: tuple[str, ...] = ()
    fuel: int
    fuel_limit: int
    #: Seconds: the handler call, and creating the instance before it.
    elapsed: float
    instantiate: float
    host_calls: tuple[HostCall, ...] = ()
    logs: tuple[LogLine, ...] = ()
    #: Messages the handler queued; ``call`` runs one actor, so none is delivered.
    outbox: tuple[Outgoing, ...] = ()
    #: The handler called ``lifecycle.stop``: in a system the actor would exit normally.
    stop: bool = False


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.NOTSET)
        self.lines: list[LogLine] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(LogLine(record.levelname.lower(), record.getMessage()))


def call(
    engine: Engine,
    target: Manifest | Path,
    payload: bytes,
    *,
    memory: int | None = None,
    fuel: int | None = None,
    timeout: float | None = None,
    storage: Path | None = None,
    tell: bool = False,
    address: str | None = None,
) -> CallReport:
    """Instantiate the component once and handle one message under its limits
    (a manifest's, or the defaults above), with explicit overrides. The actor
    is ``address`` (default ``call/NAME``): with the ``storage`` file a
    ``run`` left, it sees that actor's state."""
    if isinstance(target, Manifest):
        base, path, name = target.limits, target.component, target.name
    else:
        base = Limits(memory=DEFAULT_MEMORY, fuel=DEFAULT_FUEL, timeout=DEFAULT_TIMEOUT)
        path, name = target, target.stem
    overrides = {k: v for k, v in (("memory", memory), ("fuel", fuel), ("timeout", timeout)) if v is not None}
    limits = Limits(**{**msgspec.structs.asdict(base), **overrides})
    component = engine.load(path)

    capture = _Capture()
    logger = logging.getLogger(f"wasmactors.call.{id(capture)}")
    logger.propagate = False
    logger.setLevel(1)
    logger.addHandler(capture)
    audit: list[HostCall] = []
    backend: StorageBackend = SQLiteStorage(storage) if storage is not None else MemoryStorage()
    try:
        context = HostContext(address or f"call/{name}", storage=backend, logger=logger, audit=audit.append)
        began = time.perf_counter()
        with Instance(component, limits, context) as instance:
            instantiate = time.perf_counter() - began
            result = instance.handle_message(payload, request=not tell)
    finally:
        backend.close()
        logger.removeHandler(capture)
    report = CallReport(
        component=str(path),
        outcome="success",
        fuel=result.fuel,
        fuel_limit=limits.fuel,
        elapsed=result.elapsed,
        instantiate=instantiate,
        host_calls=tuple(audit),
        logs=tuple(capture.lines),
        outbox=result.outbox,
        stop=result.stop,
    )
    match result.outcome:
        case Success(reply=reply):
            return msgspec.structs.replace(report, reply=None if reply is None else _text(reply))
        case AppError(message=message):
            return msgspec.structs.replace(report, outcome="app-error", error=message)
        case Crash() as crash:
            return msgspec.structs.replace(
                report, outcome="crash", error=crash.message, crash_kind=crash.kind, backtrace=crash.backtrace
            )
    raise AssertionError(result.outcome)  # pragma: no cover - the match is exhaustive


def _text(data: bytes) -> str:
    try:
        return data.decode()
    except UnicodeDecodeError:
        return data.decode("latin-1")


def format_call(report: CallReport) -> str:
    """The human-readable form of a call report."""
    lines = [f"component  {report.component}"]
    if report.outcome == "success":
        lines.append(f"reply      {report.reply!r}" if report.reply is not None else "reply      (none)")
    elif report.outcome == "app-error":
        lines.append(f"app error  {report.error}")
    else:
        lines.append(f"crash      {report.crash_kind}: {report.error}")
        lines.extend(f"             at {frame}" for frame in report.backtrace[:8])
    share = report.fuel / report.fuel_limit if report.fuel_limit else 0.0
    lines.append(f"fuel       {report.fuel:,} of {report.fuel_limit:,} ({share:.1%})")
    lines.append(
        f"time       {report.elapsed * 1e3:.3f} ms (instantiation {report.instantiate * 1e3:.1f} ms)"
    )
    lines.append(f"host calls {len(report.host_calls)}")
    lines.extend(
        f"  {c.function}({c.arguments})" + (f" -> {c.result}" if c.result else "") for c in report.host_calls
    )
    lines.append(f"logs       {len(report.logs)}")
    lines.extend(f"  {line.level:<7} {line.message}" for line in report.logs)
    if report.outbox:
        lines.append(f"queued     {len(report.outbox)} (not delivered: `call` runs one actor)")
        for out in report.outbox:
            what = "request" if isinstance(out, SendRequest) else "send"
            lines.append(f"  {what} -> {out.to}: {_text(out.payload)!r}")
    if report.stop:
        lines.append("stop       requested (lifecycle.stop): in a system the actor would exit normally")
    return "\n".join(lines)


#: Export descriptions longer than this are cut (``--all`` shows them whole).
_MAX_DESCRIPTION = 160


def format_inspect(info: ComponentInfo, *, internal: bool = False) -> str:
    """A component's imports and exports, and whether it fits the `actor` world.

    Exports outside the `actor` world (componentize-py's ``exports#init``
    and the like) are folded into one line unless ``internal``."""
    lines = [f"{info.name}  {info.size / MiB:.1f} MiB  sha256 {info.digest[:16]}", "imports:"]
    wasi = [name.removeprefix("wasi:") for name in info.imports if name.startswith("wasi:")]
    lines.extend(f"  {name}  {desc}" for name, desc in info.imports.items() if not name.startswith("wasi:"))
    if wasi:
        lines.append(f"  wasi: {len(wasi)} interfaces from WASI p2 (no files, env, args or network granted):")
        lines.extend(f"    {', '.join(wasi[i : i + 4])}" for i in range(0, len(wasi), 4))
    if not info.imports:
        lines.append("  (none)")
    lines.append("exports:")
    ours = {n: d for n, d in info.exports.items() if n.startswith("wasmactors:") or internal}
    others = [n for n in info.exports if n not in ours]
    for name, desc in ours.items():
        cut = len(desc) > _MAX_DESCRIPTION and not internal
        lines.append(f"  {name}  {desc[: _MAX_DESCRIPTION - 1] + '…' if cut else desc}")
    if others:
        shown = ", ".join(others[:3]) + (", …" if len(others) > 3 else "")
        lines.append(
            f"  (+ {len(others)} exports of the guest's toolchain, not the world: {shown}; --all lists them)"
        )
    if info.fits:
        lines.append("fits the `actor` world: yes")
    else:
        lines.append("fits the `actor` world: no")
        lines.extend(f"  - {problem}" for problem in info.problems)
    return "\n".join(lines)
