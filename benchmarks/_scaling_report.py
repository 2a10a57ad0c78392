"""The scaling scenario's table and bars (benchmarks/scaling.py), for report.py."""

from __future__ import annotations

from typing import Any, NamedTuple

#: The rows of the table, in order: the peer first.
_ROWS = (("in process", "one process, no cluster"), ("1", "1 node process"), ("2", "2 node processes"),
         ("4", "4 node processes"))  # fmt: skip
_LABELS = {"wasm": "wasm guest", "python": "native Python"}


class Verdict(NamedTuple):
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
    s = r.get("scaling")
    if not s or "2" not in next(iter(s["rows"].values())):
        return []
    cores = s["cores"]
    # The most node processes that can each have a core of their own.
    nodes = str(max(n for n in (1, 2, 4) if n <= max(cores, 1)))
    if nodes == "1":
        return []
    goal = 0.8 * int(nodes)
    out = []
    for kind, rows in s["rows"].items():
        best = rows[nodes]
        note = (
            "One node already runs wasm on its worker threads with the GIL released, so one process "
            "can keep both cores busy; whether it does varies from run to run (the cores busy column), "
            "and a second process has nothing left to add then."
            if kind == "wasm"
            else "The driver node's asks and the nodes share the same cores (cores busy counts them "
            "all); a machine with idle cores near 0 was busy with other work too."
        )
        out.append(
            Verdict(
                f"{_LABELS.get(kind, kind)} workers on {nodes} node processes ≥ {goal:.1f}x one node "
                f"({cores} cores; bar set here: 80 % of the ideal)",
                f"{best['speedup']:.2f}x ({best['messages_per_s']['median']:,.0f}/s vs "
                f"{rows['1']['messages_per_s']['median']:,.0f}/s)",
                best["speedup"] >= goal,
                note,
            )
        )
    return out
