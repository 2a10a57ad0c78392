"""The scaling scenario's table and bars (benchmarks/scaling.py), for report.py."""

from __future__ import annotations

from typing import Any, NamedTuple

#: The rows of the table, in order: the peer first.
_ROWS = (("in process", "one process, no cluster"), ("1", "1 node process"), ("2", "2 node processes"),
         ("4", "4 node processes"))  # fmt: skip
_LABELS = {"wasm": "wasm guest", "python": "native Python"}


class Verdict(NamedTuple):
    """A bar's verdict; report.py adds the issue."""

    text: str
    measured: str
    met: bool
    note: str


def _rate(row: dict[str, Any]) -> str:
    m = row["messages_per_s"]
    return f"{m['median']:,.0f} [{m['min']:,.0f}-{m['max']:,.0f}]"


def _cores(row: dict[str, Any]) -> str:
    busy, idle = row["cores_busy"]["median"], row["cores_idle"]["median"]
    driver, stolen = row["driver_busy"]["median"], row["cores_stolen"]["median"]
    return f"{busy:.2f} ({driver:.2f}) / {idle:.2f}" + (f", {stolen:.2f} stolen" if stolen >= 0.05 else "")


def sections(r: dict[str, Any]) -> list[tuple[str, list[str], list[list[str]]]]:
    s = r.get("scaling")
    if not s:
        return []
    kinds = list(s["rows"])
    header = [""]
    for kind in kinds:
        label = _LABELS.get(kind, kind)
        header += [f"{label}: messages/s", "speed-up", "cores busy (driver) / idle"]
    rows = []
    for key, label in _ROWS:
        cells = [label]
        for kind in kinds:
            row = s["rows"][kind].get(key)
            cells += [_rate(row), f"{row['speedup']:.2f}x", _cores(row)] if row else ["", "", ""]
        rows.append(cells)
    work = "; ".join(f"{_LABELS.get(k, k)}: {s['work'][k]}, {s['work_ms'][k]:.2f} ms alone" for k in kinds)
    title = (
        f"Scaling over node processes: {s['workers']} CPU-bound workers dealt evenly over the nodes, "
        f"{s['messages']:,} asks from a driver node ({s['in_flight']} in flight per worker), "
        f"{s['repeats']} run{'s' if s['repeats'] != 1 else ''} a row, {s['cores']} cores "
        f"({work}; speed-up against 1 node process; "
        "cores busy: CPU time of the driver and every node over the wall time, the driver's in "
        "parentheses; idle: the machine's idle cores)"
    )
    return [(title, header, rows)]


def bars(r: dict[str, Any]) -> list[Verdict]:
    """Set here, for issue 13's "the way past one GIL" (it names no figure), at
    80 % of the ideal on the most node processes that can each have a core:
    GIL-bound (native Python) workers speed up with the node processes; wasm
    workers, which one process already runs in parallel, keep the cores doing
    their work (messages/s x the work's time alone) however they are spread."""
    s = r.get("scaling")
    if not s or "2" not in next(iter(s["rows"].values())):
        return []
    cores = s["cores"]
    nodes = str(max(n for n in (1, 2, 4) if n <= max(cores, 1)))
    if nodes == "1":
        return []
    out = []
    rows = s["rows"].get("python")
    if rows:
        goal, got = 0.8 * int(nodes), rows[nodes]
        out.append(
            Verdict(
                f"GIL-bound (native Python) workers on {nodes} node processes ≥ {goal:.1f}x one node "
                f"({cores} cores; bar set here)",
                f"{got['speedup']:.2f}x ({got['messages_per_s']['median']:,.0f}/s vs "
                f"{rows['1']['messages_per_s']['median']:,.0f}/s)",
                got["speedup"] >= goal,
                "The driver node's asks share the cores with the nodes (cores busy counts them all); "
                "idle cores near 0 with fewer busy than the machine has mean other work was running.",
            )
        )
    rows = s["rows"].get("wasm")
    if rows:
        goal, got = 0.8 * int(nodes), rows[nodes]
        work = got["messages_per_s"]["median"] * s["work_ms"]["wasm"] / 1e3
        out.append(
            Verdict(
                f"wasm workers on {nodes} node processes keep ≥ {goal:.1f} of {cores} cores doing their "
                "work (messages/s x the work's time alone; bar set here)",
                f"{work:.2f} cores ({got['messages_per_s']['median']:,.0f}/s x "
                f"{s['work_ms']['wasm']:.2f} ms; {got['cores_busy']['median']:.2f} busy)",
                work >= goal,
                "Busy cores beyond the work are the driver's asks (its own column), each node's "
                "messaging in Python and the hand-offs between its loop and worker threads; the work's "
                "time alone is timed in the same run on one idle worker in one process.",
            )
        )
    return out
