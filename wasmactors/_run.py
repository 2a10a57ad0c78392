"""``wasmactors run``: start a topology, send its messages, wait, report."""

from __future__ import annotations

import dataclasses
import math
import signal
import sys
import time
from functools import partial
from typing import TYPE_CHECKING, TextIO

import anyio

from .actors import ActorStats, ActorSystem, EventKind, InitialMessage, SystemFailedError, Topology
from .actors._topology import ActorNode, SupervisorNode
from .runtime import Engine, Manifest, MemoryStorage

if TYPE_CHECKING:
    from pathlib import Path

    from .actors import Event

__all__ = ["RunReport", "manifests", "run_topology", "stats_table"]


@dataclasses.dataclass
class RunReport:
    """What a run did: every actor's final stats and the totals."""

    stats: dict[str, ActorStats]
    elapsed: float
    #: Why it ended: ``idle``, ``time``, ``signal`` or ``failed``.
    ended: str
    dead_letters: dict[str, int]
    events: dict[str, int]
    failure: str | None = None
    #: When the actors fell quiet (``perf_counter``), for runs that ended idle.
    quiet_since: float | None = None

    @property
    def handled(self) -> int:
        return sum(s.handled for s in self.stats.values())


def manifests(topology: Topology) -> list[Manifest]:
    """Every distinct component manifest of the tree, in start order."""
    seen: dict[Path, Manifest] = {}

    def walk(nodes: tuple[ActorNode | SupervisorNode, ...]) -> None:
        for node in nodes:
            if isinstance(node, SupervisorNode):
                walk(node.children)
            else:
                seen.setdefault(node.manifest.component, node.manifest)

    walk(topology.children)
    return list(seen.values())


async def run_topology(
    topology: Topology,
    *,
    storage: Path | None,
    duration: float | None,
    idle: float,
    engine: Engine,
    err: TextIO = sys.stderr,
) -> RunReport:
    """Run ``topology`` until it is idle for ``idle`` seconds, ``duration``
    has passed (then idleness is ignored), or SIGINT/SIGTERM arrives; then
    shut down gracefully. ``storage=None`` keeps actor state in memory."""
    report = RunReport({}, 0.0, "idle", {}, {})
    system = ActorSystem(storage=storage if storage is not None else MemoryStorage(), engine=engine)
    start = time.perf_counter()
    try:
        async with system, anyio.create_task_group() as tg:
            for manifest in manifests(topology):
                began = time.perf_counter()
                component, _ = await system.load(manifest)
                how = "from cache" if component.cached else "compiled, now cached"
                print(f"loaded {manifest.name} ({how}, {time.perf_counter() - began:.2f} s)", file=err)
            tg.start_soon(_watch_events, system, report, err)
            done = anyio.Event()
            tg.start_soon(_watch_signals, done, report)
            start = time.perf_counter()
            await topology.start(system, on_answer=partial(_print_answer, err))
            print(
                f"started {len(topology.actors())} actors, sent {len(topology.messages)} messages",
                file=err,
            )
            if duration is None:
                tg.start_soon(_wait_quiet, system, idle, done, report)
            with anyio.move_on_after(math.inf if duration is None else duration) as scope:
                await done.wait()
            if scope.cancelled_caught:
                report.ended = "time"
            report.elapsed = (report.quiet_since or time.perf_counter()) - start
            tg.cancel_scope.cancel()
    except SystemFailedError as exc:
        report.ended, report.failure = "failed", str(exc)
        report.elapsed = time.perf_counter() - start
    # After the shutdown every actor has stopped (drained, or cancelled by a
    # failure), so its final stats, draining included, are all here.
    report.stats.update(system.stopped_stats)
    report.dead_letters = dict(system.dead_letter_counts)
    return report


def _print_answer(err: TextIO, message: InitialMessage, answer: bytes | Exception) -> None:
    """An ``ask`` message's answer, as the run goes."""
    if isinstance(answer, bytes):
        text = answer.decode("latin-1")
        shown = text if len(text) <= 200 else f"{text[:200]}... ({len(answer)} bytes)"
        print(f"answer from {message.to}: {shown}", file=err)
    else:
        print(f"no answer from {message.to}: {answer}", file=err)


async def _wait_quiet(system: ActorSystem, idle: float, done: anyio.Event, report: RunReport) -> None:
    """Set ``done`` once no actor has work in hand and none is handed any for
    ``idle`` seconds; the report's end time is when that quiet began."""
    while True:
        await system.wait_idle()
        if system.busy():
            await anyio.sleep(0.01)  # a request awaiting its answer: not quiet yet
            continue
        quiet_since = time.perf_counter()
        before = _activity(system)
        await anyio.sleep(idle)
        if not system.busy() and before == _activity(system):
            report.quiet_since = quiet_since
            done.set()
            return


def _activity(system: ActorSystem) -> int:
    return sum(s.handled + s.app_errors + sum(s.crashes.values()) for s in system.statistics().values())


async def _watch_signals(done: anyio.Event, report: RunReport) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            report.ended = f"signal ({signal.Signals(signum).name})"
            done.set()
            return


async def _watch_events(system: ActorSystem, report: RunReport, err: TextIO) -> None:
    async with system.events(buffer=math.inf) as events:
        async for event in events:
            report.events[event.kind] = report.events.get(event.kind, 0) + 1
            # Crashes are logged by the actor layer with their message; these are not.
            if event.kind in (EventKind.RESTARTED, EventKind.GAVE_UP):
                print(_event_line(event), file=err)


def _event_line(event: Event) -> str:
    detail = f": {event.detail}" if event.detail else ""
    return f"{event.kind:>9}  {event.address}{detail}"


def stats_table(report: RunReport) -> str:
    """The per-actor stats as an aligned text table, with totals below."""
    header = ("actor", "handled", "errors", "crashes", "restarts", "p50", "p99", "mailbox max", "fuel")
    rows = [header]
    for address, s in sorted(report.stats.items()):
        crashes = sum(s.crashes.values())
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(s.crashes.items()))
        rows.append(
            (
                address,
                f"{s.handled:,}",
                f"{s.app_errors:,}",
                f"{crashes} ({kinds})" if crashes else "0",
                str(s.restarts),
                _duration(s.latency_p50),
                _duration(s.latency_p99),
                f"{s.mailbox_high_water:,}",
                _count(s.fuel),
            )
        )
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    lines = []
    for n, row in enumerate(rows):
        cells = [row[0].ljust(widths[0]), *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True))]
        lines.append("  ".join(cells).rstrip())
        if n == 0:
            lines.append("  ".join("-" * w for w in widths))
    rate = report.handled / report.elapsed if report.elapsed > 0 else 0.0
    lines.append("")
    lines.append(
        f"{report.handled:,} messages handled in {report.elapsed:.2f} s ({rate:,.0f} msg/s); "
        f"ended: {report.ended}"
    )
    dead = sum(report.dead_letters.values())
    if dead:
        reasons = ", ".join(f"{r} {n}" for r, n in sorted(report.dead_letters.items()))
        lines.append(f"dead letters: {dead} ({reasons})")
    return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds == 0:
        return "-"
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def _count(n: int) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)
