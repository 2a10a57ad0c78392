"""Scenario 6, the cost of the limits: a compute-heavy guest (the fuel-burner
WAT guest, 30 million loop iterations a call) on engines with no limits, fuel
metering only, epoch interruption only, and both (what wasmactors runs)."""

from __future__ import annotations

import time
from typing import Any

import wasmtime
from wasmtime import component as wc

from tests.guests import wat_guest

from ._util import summary

CONFIGS = {
    "no limits": (False, False),
    "fuel only": (True, False),
    "epoch only": (False, True),
    "fuel + epoch": (True, True),
}


def _time_call(fuel: bool, epoch: bool, iterations_m: int, repeats: int) -> dict[str, float]:
    config = wasmtime.Config()
    config.consume_fuel = fuel
    config.epoch_interruption = epoch
    engine = wasmtime.Engine(config)
    component = wc.Component(engine, wat_guest("fuel_burner"))
    store = wasmtime.Store(engine)
    if fuel:  # instantiating the guest's core modules may run wasm
        store.set_fuel(10**9)
    if epoch:
        store.set_epoch_deadline(10**6)
    instance = wc.Linker(engine).instantiate(store, component)
    iface = instance.get_export_index(store, "wasmactors:actor/handler@0.1.0")
    func = instance.get_func(store, instance.get_export_index(store, "handle-message", iface))
    assert func is not None
    env = wc.Record()
    env.sender, env.kind, env.payload, env.headers = None, "tell", "x" * iterations_m, []
    samples = []
    for i in range(repeats + 1):
        if fuel:
            store.set_fuel(10**12)
        if epoch:
            store.set_epoch_deadline(10**6)
        start = time.perf_counter()
        func(store, env)
        elapsed = time.perf_counter() - start
        func.post_return(store)
        if i:  # the first call is the warm-up
            samples.append(elapsed * 1e3)
    return summary(samples)


def run(*, quick: bool) -> dict[str, Any]:
    iterations_m, repeats = (2, 2) if quick else (30, 7)
    rows = {name: _time_call(fuel, epoch, iterations_m, repeats) for name, (fuel, epoch) in CONFIGS.items()}
    base = rows["no limits"]["median"]
    return {
        "iterations": iterations_m * 1_000_000,
        "ms": rows,
        "slowdown": {name: row["median"] / base for name, row in rows.items()},
    }
