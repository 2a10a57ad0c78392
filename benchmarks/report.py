"""Turns the results into a terminal summary, Markdown tables, PNG plots and
the verdict on every performance bar of the project's issues."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any, NamedTuple

from . import _scaling_report

if TYPE_CHECKING:
    from pathlib import Path

START, END = "<!-- results:start -->", "<!-- results:end -->"


def _m(d: dict[str, float], fmt: str = "{:.1f}") -> str:
    """A median with its [min-max]."""
    return f"{fmt.format(d['median'])} [{fmt.format(d['min'])}-{fmt.format(d['max'])}]"


def _get(results: dict[str, Any], *path: str) -> Any:
    for key in path:
        if not isinstance(results, dict) or key not in results:
            return None
        results = results[key]
    return results


# -- the bars -----------------------------------------------------------------


class Bar(NamedTuple):
    issue: str
    text: str
    measured: str
    met: bool
    #: Why it is missed and what would close it (shown only when missed).
    note: str


def bars(r: dict[str, Any]) -> list[Bar]:
    out: list[Bar] = []
    c16, c4k = _get(r, "calls", "16"), _get(r, "calls", "4096")
    if c16 and c4k:
        wat16, wat4k = c16["wasmactors (WAT echo)"]["median"], c4k["wasmactors (WAT echo)"]["median"]
        noisy = (
            f"The fastest repetition took {c16['wasmactors (WAT echo)']['min']:.1f} µs: the median moves "
            "with the shared VM's load. The ratio to Extism in the same run is the stable comparison."
        )
        bar16 = "WAT echo round trip, 16 B, ≤ 15 µs"
        out.append(Bar("runtime", bar16, f"{wat16:.1f} µs", wat16 <= 15, noisy))
        out.append(Bar("runtime", "WAT echo round trip, 4 KiB, ≤ 25 µs", f"{wat4k:.1f} µs", wat4k <= 25, ""))
        if "Extism (echo plugin)" in c16:
            ratios = [
                row["wasmactors (WAT echo)"]["median"] / row["Extism (echo plugin)"]["median"]
                for row in (c16, c4k)
            ]
            out.append(
                Bar(
                    "runtime",
                    "call no slower than Extism, same run",
                    f"{ratios[0]:.2f}x (16 B), {ratios[1]:.2f}x (4 KiB)",
                    max(ratios) <= 1,
                    "",
                )
            )
    inst = _get(r, "lifecycle", "instantiate_ms")
    if inst:
        warm, first = inst["Python guest, warm"], inst["Python guest, first in the process"]
        out.append(
            Bar(
                "runtime",
                "Python guest warm instantiation ≤ 1 ms",
                f"{warm:.2f} ms",
                warm <= 1.0,
                "wasmtime's own instantiate is ~0.8 ms of it on this machine; the pooling allocator and "
                "InstancePre, which would cut it, are not exposed by wasmtime-py.",
            )
        )
        out.append(
            Bar("runtime", "Python guest first instantiation ≤ 10 ms", f"{first:.2f} ms", first <= 10, "")
        )
    load = _get(r, "lifecycle", "load_ms")
    if load:
        new = load["load it from the cache, new process"]
        out.append(
            Bar("runtime", "cached Python guest in a new process ≤ 50 ms", f"{new:.1f} ms", new <= 50, "")
        )
    out += _issue11_bars(r)
    many = _get(r, "lifecycle", "many_actors")
    if many and many["actors"] >= 1000:
        idle = many["process RSS, idle (GiB)"]
        out.append(
            Bar("actors", "1,000 idle Python-guest actors ≤ 4 GiB RSS", f"{idle:.2f} GiB", idle <= 4, "")
        )
    out += _timeout_bars(r)
    out += _cluster_bars(r)
    out += [Bar("13", *verdict) for verdict in _scaling_report.bars(r)]
    elapsed = r.get("elapsed_s")
    if (
        elapsed
        and not r.get("quick")
        and len(
            [
                k
                for k in r
                if k in {"calls", "actors", "pipeline", "fanout", "lifecycle", "limits", "timeouts"}
            ]
        )
        == 7
    ):
        out.append(
            Bar(
                "benchmarks",
                "the whole suite runs in under 10 minutes",
                f"{elapsed / 60:.1f} min",
                elapsed < 600,
                "",
            )
        )
    return out


def _issue11_bars(r: dict[str, Any]) -> list[Bar]:
    """Issue 11's bars (the actor core's fast path), each against a peer of the same run."""
    out: list[Bar] = []
    act = _get(r, "actors")
    hop: dict[str, float | None] = {}
    if act:
        rate = act["runtime layer, WAT echo"]["calls_per_s"]["median"]
        scaling = act.get("scaling, WAT echo", {})
        hop = {b: _get(act, f"worker-thread hop, {b}", "p50", "median") for b in ("asyncio", "trio")}
        slow = {b: _get(act, f"anyio.to_thread hop, {b}", "p50", "median") for b in ("asyncio", "trio")}
        for backend in ("asyncio", "trio"):
            tells = act[f"wasmactors, WAT echo, {backend}"]["tells_per_s"]["median"]
            cpu = _get(scaling, backend, "1", "cpu_us_per_message", "median")
            why = (
                f"A tell costs {cpu:.1f} µs of CPU over all threads here (the scaling row, one actor), "
                f"the runtime call alone {1e6 / rate:.1f} µs: the rest is the loop's tell and bookkeeping "
                "and the turn's thread hop, and the loop and the worker share one GIL. "
                if cpu
                else ""
            ) + (
                "Built: long-lived workers fed by a queue (one hop per turn, "
                f"{hop[backend] or 0:.0f} µs here against anyio.to_thread's {slow[backend] or 0:.0f} µs). "
                "What remains is Python on both sides of the hop; the prototype's 80k/s was measured "
                "on a quieter machine than this shared VM."
            )
            ratio = tells / rate
            out.append(
                Bar(
                    "11",
                    f"WAT echo actor tells/s ≥ 0.7x the runtime layer's call rate, same run ({backend})",
                    f"{ratio:.2f}x ({tells:,.0f} tells/s, {rate:,.0f} calls/s)",
                    ratio >= 0.7,
                    why,
                )
            )
            if backend == "asyncio":
                out.append(
                    Bar(
                        "11",
                        "WAT echo actor ≥ 80,000 tells/s (asyncio)",
                        f"{tells:,.0f}/s",
                        tells >= 80_000,
                        why,
                    )
                )
        pykka = _get(act, "Pykka ThreadingActor", "p50", "median")
        for backend in ("asyncio", "trio"):
            ask = act[f"wasmactors, WAT echo, {backend}"]["p50"]["median"]
            floor = act[f"anyio memory stream floor, {backend}"]["p50"]["median"]
            ref = f"; Pykka {pykka:.0f} µs" if pykka else ""
            out.append(
                Bar(
                    "11",
                    f"ask p50 ≤ 1.5x the anyio memory-stream floor's, same run ({backend})",
                    f"{ask:.0f} µs vs {floor:.0f} µs ({ask / floor:.2f}x{ref})",
                    ask <= 1.5 * floor,
                    "Built: an ask to an idle actor goes straight to a long-lived worker and is "
                    "answered from its completion callback on the loop, without waking the actor's "
                    f"task. The thread round trip alone is {hop[backend] or 0:.0f} µs in this run "
                    f"({(hop[backend] or 0) / floor:.1f}x the floor), which the floor, two tasks on "
                    "one loop, never pays: an ask that must run wasm off the loop cannot reach 1.5x of "
                    "a loop-only round trip here.",
                )
            )
    pipe = _get(r, "pipeline")
    if pipe:
        for backend in ("asyncio", "trio"):
            row = pipe.get(f"WAT forwarders, {backend}")
            if row is None:
                continue
            rate = row["messages_per_s"]
            out.append(
                Bar(
                    "11",
                    f"4-stage pipeline of WAT forwarders ≥ 20,000 messages/s end to end ({backend})",
                    f"{rate:,.0f}/s",
                    rate >= 20_000,
                    f"Each message is {pipe['stages']} guest calls and {pipe['stages'] + 1} deliveries "
                    f"({rate * pipe['stages']:,.0f} calls/s here); one forwarder call with its host "
                    "send costs ~13 µs alone. A profile (2026-12-04) shows turns of ~28 messages, so the "
                    f"hop ({hop.get('asyncio') or 0:.0f} µs here) is amortised, and the event loop "
                    "waiting about 60 % of the time: the two workers' host calls (Python) and the loop "
                    "hand one GIL back and forth, and CPython makes a waiting thread wait up to its "
                    "5 ms switch interval. A GIL-free host send path or a free-threaded CPython is what "
                    "would close it.",
                )
            )
    fan = _get(r, "fanout", "actors", "2")
    if fan:
        s = fan["speedup"]
        out.append(
            Bar(
                "11",
                "2 CPU-bound actors on 2 cores ≥ 1.8x faster than one after the other",
                f"{s:.2f}x",
                s >= 1.8,
                "The machine is a shared 2-core VM: the event loop, the epoch ticker and the "
                "second worker compete for the same two cores.",
            )
        )
    crash = _get(r, "lifecycle", "crash_to_serving_ms")
    if crash:
        w, p = crash["WAT guest"]["median"], crash["Python guest"]["median"]
        upper = "Measured as restart plus one ask round trip, so an upper bound"
        out.append(Bar("11", "crash to serving again ≤ 1 ms (WAT guest)", f"{w:.2f} ms", w <= 1, f"{upper}."))
        out.append(
            Bar("11", "crash to serving again ≤ 3 ms (Python guest)", f"{p:.2f} ms", p <= 3, f"{upper}.")
        )
    return out


def _cluster_bars(r: dict[str, Any]) -> list[Bar]:
    rows = _get(r, "cluster", "rows")
    if not rows:
        return []
    raw = rows["nats-py, caller's own asyncio loop"]
    ratios = _get(r, "cluster", "ratios") or {}
    rounds = _get(r, "cluster", "rounds") or 1
    out = []
    why = (
        "Both nodes share this process, its GIL and its event loop (on trio each message also "
        "crosses the NATS bridge thread twice); each message is decoded, checked and delivered "
        "in Python on the receiving node and settled by its ack on the sending node; an awaited "
        "tell waits for its delivery ack (docs/cluster.md)."
    )

    def ratio(what: str, mine: float, peer: float) -> tuple[float, str]:
        """The median of the rounds' ratios (each against the peer of its round), and its spread."""
        got = ratios.get(what)
        if not got:
            return mine / peer, ""
        spread = f"; rounds {min(got['all']):.2f}-{max(got['all']):.2f}x" if rounds > 1 else ""
        return got["median"], spread

    for backend in ("asyncio", "trio"):
        ours = rows[f"wasmactors cross-node, {backend}"]
        x, spread = ratio(f"ask, {backend}", ours["ask_us"]["p50"], raw["ask_us"]["p50"])
        out.append(
            Bar(
                "cluster",
                f"cross-node ask p50 ≤ 1.5x nats-py request/reply, {backend}",
                f"{ours['ask_us']['p50']:.0f} µs vs {raw['ask_us']['p50']:.0f} µs ({x:.2f}x{spread})",
                x <= 1.5,
                why,
            )
        )
        if "pipelined_tells_per_s" in ours:
            piped = ours["pipelined_tells_per_s"]
            x, spread = ratio(f"pipelined, {backend}", piped, raw["tells_per_s"])
            out.append(
                Bar(
                    "cluster",
                    f"cross-node tells (pipelined, one task) ≥ 0.5x nats-py publish rate, {backend}",
                    f"{piped:,.0f}/s vs {raw['tells_per_s']:,.0f}/s ({x:.2f}x{spread})",
                    x >= 0.5,
                    why,
                )
            )
        x, spread = ratio(f"tells, {backend}", ours["tells_per_s"], raw["tells_per_s"])
        out.append(
            Bar(
                "cluster",
                f"cross-node tells (64 tasks, each awaiting its ack) ≥ 0.5x nats-py publish rate, {backend}",
                f"{ours['tells_per_s']:,.0f}/s vs {raw['tells_per_s']:,.0f}/s ({x:.2f}x{spread})",
                x >= 0.5,
                why,
            )
        )
    return out


def _timeout_bars(r: dict[str, Any]) -> list[Bar]:
    # When the timeout fires is when the epoch reaches the deadline: the
    # ticker probe measures that in wall-clock time. The guest's CPU time
    # ("ran") cannot: on a machine with more runnable threads than cores the
    # guest gets a share of a core and its CPU time stays below the timeout.
    probe = _get(r, "timeouts", "ticks_lost") or {}
    loaded = next((row for name, row in probe.items() if "wasmactors" in name), None)
    if not loaded:
        return []
    late = loaded["p99"]
    return [
        Bar(
            "containment",
            "a 50 ms timeout fires within timeout + 2 ticks at p99 while threads hold the GIL",
            f"+{late:.1f} ticks",
            late <= 2,
            "No Python runs per tick and a stall of the timers' notifications shorter than 100 ms "
            "loses no tick; a later timeout means the OS kept glibc's notification thread off both "
            "cores for longer than the window.",
        )
    ]


# -- text and Markdown ------------------------------------------------------------


def _scale_cell(row: dict[str, Any]) -> str:
    return f"{_m(row['tells_per_s'], '{:,.0f}')} ({row['cpu_us_per_message']['median']:.1f} µs)"


def _scaling_table(r: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    scaling = _get(r, "actors", "scaling, WAT echo")
    if not scaling:
        return []
    counts = list(next(iter(scaling.values())))
    rows = [
        [
            n,
            *(_scale_cell(scaling[b][n]) for b in scaling),
        ]
        for n in counts
    ]
    return [
        (
            "Scaling: WAT echo actors, tells spread round-robin (total tells/s, and CPU µs per message "
            "over all threads)",
            ["actors", *scaling],
            rows,
        )
    ]


def _timeout_sections(r: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    if "timeouts" not in r:
        return tables
    tmo = r["timeouts"]
    keys = ("ran p50", "ran p99", "p99 late (ticks)", "waited p50", "waited p99", "waited max")
    rows = [[name, *(f"{row[k]:.1f}" for k in keys)] for name, row in tmo["ms"].items()]
    tables.append(
        (
            f"Timeout accuracy: a {tmo['timeout_ms']:g} ms timeout, {tmo['calls']} calls each (ms; "
            "ran: the guest's CPU time until the trap; waited: the caller's wall clock, GIL included)",
            ["epoch ticker, load", *keys],
            rows,
        )
    )
    if tmo.get("ticks_lost"):
        rows = [
            [name, *(f"{row[k]:.1f}" for k in ("p50", "p99", "max"))]
            for name, row in tmo["ticks_lost"].items()
        ]
        tables.append(
            (
                "The epoch ticker alone: ticks missing from a 50 ms window (what a timeout starting "
                "there would be late by), sampled every 5 ms for 5 s",
                ["ticker, load", "p50", "p99", "max"],
                rows,
            )
        )
    if "actor_ms" in tmo:
        rows = [
            [name, *(f"{row[k]:.1f}" for k in ("p50", "p99", "max"))] for name, row in tmo["actor_ms"].items()
        ]
        tables.append(
            (
                "Timeout accuracy through an actor: ask to an endless loop with a "
                f"{tmo['timeout_ms']:g} ms timeout until ActorCrashedError (ms; wasmactors' ticker, "
                "a restart between asks)",
                ["backend, load", "p50", "p99", "max"],
                rows,
            )
        )
    return tables


def _sections(r: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, header, rows) for every table."""
    tables: list[tuple[str, list[str], list[list[str]]]] = []
    if "calls" in r:
        names = list(next(iter(r["calls"].values())))
        rows = [[f"{int(size):,} B"] + [_m(row[n]) for n in names] for size, row in r["calls"].items()]
        tables.append(("One `handle-message` round trip (µs, median [min-max])", ["payload", *names], rows))
    if "actors" in r:
        rows = []
        for name, row in r["actors"].items():
            if name.startswith("scaling"):
                continue
            tells = (
                _m(row["tells_per_s"], "{:,.0f}")
                if "tells_per_s" in row
                else (_m(row["calls_per_s"], "{:,.0f}") + " calls/s" if "calls_per_s" in row else "")
            )
            p50 = _m(row["p50"], "{:.0f}") if "p50" in row else ""
            p99 = _m(row["p99"], "{:.0f}") if "p99" in row else ""
            rows.append([name, tells, p50, p99])
        tables.append(("One actor, 16 B messages", ["", "tells/s", "ask p50 (µs)", "ask p99 (µs)"], rows))
    tables += _scaling_table(r)
    if "pipeline" in r:
        p = r["pipeline"]
        rows = [
            [
                name,
                f"{row['messages']:,}",
                f"{row['messages_per_s']:,.0f}",
                f"{row['peak_rss_mib']:.0f}",
            ]
            for name, row in p.items()
            if isinstance(row, dict)
        ]
        tables.append(
            (
                f"Pipeline: producer -> {p['stages']} guest stages -> native sink",
                ["stages, backend", "messages", "messages/s end to end", "peak RSS (MiB)"],
                rows,
            )
        )
    if "fanout" in r:
        f = r["fanout"]
        rows = [
            [n, _m(row["messages_per_s"], "{:,.0f}"), f"{row['speedup']:.2f}x"]
            for n, row in f["actors"].items()
        ]
        tables.append(
            (
                f"Fan-out: CPU-bound WAT actors on {f['cores']} cores",
                ["actors", "messages/s", "speed-up over 1"],
                rows,
            )
        )
    if "lifecycle" in r:
        life = r["lifecycle"]
        rows = [[k, f"{v:.2f} ms"] for k, v in life["load_ms"].items()]
        rows += [[f"instantiate the {k}", f"{v:.3f} ms"] for k, v in life["instantiate_ms"].items()]
        rows += [
            [f"crash to serving again, {k} (restart + one ask)", _m(v, "{:.2f}") + " ms"]
            for k, v in life["crash_to_serving_ms"].items()
        ]
        many = life["many_actors"]
        rows += [
            [f"{k} ({many['actors']:,} Python-guest actors)", f"{v:,.2f}"]
            for k, v in many.items()
            if k != "actors"
        ]
        tables.append(("An actor's life", ["what", "measured"], rows))
    if "limits" in r:
        lim = r["limits"]
        rows = [[name, _m(row), f"{lim['slowdown'][name]:.2f}x"] for name, row in lim["ms"].items()]
        tables.append(
            (
                f"The cost of the limits: {lim['iterations']:,} loop iterations in one call",
                ["engine", "ms per call", "vs no limits"],
                rows,
            )
        )
    tables += _timeout_sections(r)
    if "cluster" in r:
        cl = r["cluster"]
        rows = [
            [
                name,
                f"{row['ask_us']['p50']:.0f}" if "ask_us" in row else "",
                f"{row['ask_us']['p99']:.0f}" if "ask_us" in row else "",
                f"{row['tells_per_s']:,.0f}" if "tells_per_s" in row else "",
                f"{row['pipelined_tells_per_s']:,.0f}" if "pipelined_tells_per_s" in row else "",
            ]
            for name, row in cl["rows"].items()
        ]
        durable = f"; durable: {cl['durable']:,} tells, each handled and forwarded" if "durable" in cl else ""
        tables.append(
            (
                f"Cluster: two nodes on one nats-server, 16 B messages (medians of "
                f"{cl.get('rounds', 1)} rounds, raw and cross-node rows in turn; {cl['asks']:,} asks; "
                f"{cl['tells']:,} tells from {cl['tellers']} tasks each awaiting its ack, and "
                f"from one task pipelined{durable})",
                ["", "ask p50 (µs)", "ask p99 (µs)", "tells/s (64 tasks)", "tells/s (pipelined)"],
                rows,
            )
        )
    tables += _scaling_report.sections(r)
    return tables


def text(r: dict[str, Any]) -> str:
    lines = [f"machine: {_machine_line(r['machine'])}"]
    for title, header, rows in _sections(r):
        lines += ["", title]
        widths = [max(len(str(x)) for x in col) for col in zip(header, *rows, strict=True)]
        for row in [header, *rows]:
            lines.append("  " + "  ".join(str(x).ljust(w) for x, w in zip(row, widths, strict=True)))
    verdicts = bars(r)
    if verdicts:
        lines += ["", "bars:"]
        lines += [f"  {'met ' if b.met else 'MISS'}  {b.text}: {b.measured}" for b in verdicts]
    lines.append(f"\nelapsed: {r.get('elapsed_s', 0):.0f} s")
    return "\n".join(lines)


def _machine_line(m: dict[str, Any]) -> str:
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items())
    return f"{m['cpu']}, {m['cores']} cores, {m['memory_gib']} GiB, {m['os']}; {versions}"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(map(str, row)) + " |" for row in rows
    ]


def markdown(r: dict[str, Any], plots: list[tuple[str, str]]) -> str:
    lines = [
        f"Run of {r['date']}, {r['elapsed_s'] / 60:.1f} minutes. Machine: {_machine_line(r['machine'])}.",
        "",
        "### The bars",
        "",
    ]
    rows = [
        [b.issue, b.text, b.measured, "yes" if b.met else "**no**", "" if b.met else b.note] for b in bars(r)
    ]
    lines += _table(["issue", "bar", "measured", "met", "why not, and what would close it"], rows)
    for title, header, rows in _sections(r):
        lines += ["", f"### {title}", "", *_table(header, rows)]
    if plots:
        lines += ["", "### Plots", ""]
        lines += [f"![{alt}]({path})" for alt, path in plots]
    return "\n".join(lines)


# -- plots ----------------------------------------------------------------------


def plot(r: dict[str, Any], folder: Path) -> list[tuple[str, str]]:
    """PNG plots into ``folder``; (alt text, path relative to docs/) for each."""
    try:
        import matplotlib as mpl

        mpl.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    folder.mkdir(parents=True, exist_ok=True)
    made: list[tuple[str, str]] = []
    for key, draw in (("calls", _plot_calls), ("actors", _plot_actors), ("fanout", _plot_fanout),
                      ("limits", _plot_limits)):  # fmt: skip
        if key in r:
            fig = plt.figure()
            name, alt = draw(fig, r)
            fig.tight_layout()
            fig.savefig(folder / name, dpi=110)
            plt.close(fig)
            made.append((alt, f"{folder.name}/{name}"))
    return made


def _plot_calls(fig: Any, r: dict[str, Any]) -> tuple[str, str]:
    fig.set_size_inches(7, 3.6)
    ax = fig.add_subplot()
    sizes = list(r["calls"])
    names = list(r["calls"][sizes[0]])
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = [j + i * width for j in range(len(sizes))]
        ax.bar(xs, [r["calls"][s][name]["median"] for s in sizes], width, label=name)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(sizes))], [f"{int(s):,} B" for s in sizes])
    ax.set_yscale("log")
    ax.set_ylim(bottom=5)
    ax.set_ylabel("µs per call (log)")
    ax.set_title("One guest call, by payload size (lower is better)")
    ax.legend(fontsize=7, loc="upper left")
    return "calls.png", "Call floor: wasmactors vs stock wasmtime-py vs Extism"


def _plot_actors(fig: Any, r: dict[str, Any]) -> tuple[str, str]:
    fig.set_size_inches(9, 3.8)
    left, right = fig.subplots(1, 2)
    rows = {k: v for k, v in r["actors"].items() if "tells_per_s" in v}
    names = list(rows)
    p50 = [rows[n]["p50"]["median"] for n in names]
    left.barh(names, [rows[n]["tells_per_s"]["median"] for n in names])
    left.set_xlabel("tells/s (higher is better)")
    left.tick_params(axis="y", labelsize=7)
    right.barh(names, p50, label="p50")
    right.barh(names, [rows[n]["p99"]["median"] - p for n, p in zip(names, p50, strict=True)], left=p50,
               alpha=0.4, label="p99")  # fmt: skip
    right.set_xlabel("ask latency, µs (lower is better)")
    right.set_yticks([])
    right.legend(fontsize=7)
    return "actors.png", "Tell throughput and ask latency: wasmactors vs Pykka vs the anyio floor"


def _plot_fanout(fig: Any, r: dict[str, Any]) -> tuple[str, str]:
    fig.set_size_inches(5.5, 3.4)
    ax = fig.add_subplot()
    rows = r["fanout"]["actors"]
    ns = [int(n) for n in rows]
    ax.plot(ns, [rows[str(n)]["speedup"] for n in ns], marker="o", label="measured")
    cores = r["fanout"]["cores"]
    ax.axhline(cores, linestyle="--", color="grey", label=f"{cores} cores")
    ax.set_xscale("log", base=2)
    ax.set_xlabel("CPU-bound actors")
    ax.set_ylabel("speed-up over one actor")
    ax.legend(fontsize=7)
    return "fanout.png", "Fan-out scaling of CPU-bound actors"


def _plot_limits(fig: Any, r: dict[str, Any]) -> tuple[str, str]:
    fig.set_size_inches(5.5, 3)
    ax = fig.add_subplot()
    slowdown = r["limits"]["slowdown"]
    ax.bar(list(slowdown), list(slowdown.values()))
    ax.set_ylabel("time vs no limits")
    ax.set_title("Cost of fuel and epoch interruption in a tight loop")
    return "limits.png", "Cost of the limits"


def update_docs(r: dict[str, Any], docs: Path) -> None:
    """Replace the generated part of ``docs`` (between the markers) with this run."""
    plots = plot(r, docs.parent / "benchmarks")
    body = f"{START}\n<!-- generated by `make bench` (python -m benchmarks); edit outside the markers -->\n\n{markdown(r, plots)}\n\n{END}"  # noqa: E501
    current = docs.read_text() if docs.exists() else f"# Benchmarks\n\n{START}\n{END}\n"
    if START not in current:
        current = current.rstrip() + f"\n\n## Latest run\n\n{START}\n{END}\n"
    docs.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: body, current, flags=re.S))
