"""Scenario 1, the call floor: one ``handle-message`` round trip with 16 B,
4 KiB and 64 KiB payloads through the wasmactors runtime layer, stock
wasmtime-py ``Func.__call__`` on the same component, and the Extism Python SDK
echoing through an equivalent plugin."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import wasmtime
from wasmtime import component as wc

from tests.guests import python_guest, wat_guest
from wasmactors.runtime import Engine, Instance, Limits, MiB

from ._util import per_call_us

if TYPE_CHECKING:
    from collections.abc import Callable

LIMITS = Limits(memory=64 * MiB, fuel=10**9, timeout=10.0)
SIZES = (16, 4096, 65536)


def stock_echo(engine: Engine, text: bytes) -> Callable[[bytes], Callable[[], object]]:
    """The same WAT echo called through wasmtime-py's stock ``Func.__call__``."""
    comp = wc.Component(engine.raw, text)
    store = wasmtime.Store(engine.raw)
    inst = wc.Linker(engine.raw).instantiate(store, comp)
    iface = inst.get_export_index(store, "wasmactors:actor/handler@0.1.0")
    func = inst.get_func(store, inst.get_export_index(store, "handle-message", iface))
    assert func is not None

    def make(payload: bytes) -> Callable[[], object]:
        env = wc.Record()
        env.sender, env.kind, env.payload, env.headers = None, "request", payload.decode("latin-1"), []

        def call() -> object:
            store.set_fuel(LIMITS.fuel)
            store.set_epoch_deadline(1000)
            out = func(store, env)
            func.post_return(store)
            return out

        return call

    return make


def extism_echo() -> Callable[[bytes], Callable[[], object]] | None:
    try:
        import extism  # type: ignore[import-untyped]
    except ImportError:
        return None
    plugin = extism.Plugin(bytes(wasmtime.wat2wasm((Path(__file__).parent / "extism_echo.wat").read_text())))

    def make(payload: bytes) -> Callable[[], object]:
        assert bytes(plugin.call("echo", payload)) == payload
        return lambda: plugin.call("echo", payload)

    return make


def run(engine: Engine, *, quick: bool) -> dict[str, Any]:
    calls, repeats = (50, 3) if quick else (2000, 15)
    py = engine.load(python_guest("echo"))
    wat = engine.load(wat_guest("echo"), name="echo.wat")
    stock = stock_echo(engine, wat_guest("echo"))
    ext = extism_echo()
    out: dict[str, Any] = {}
    with Instance(wat, LIMITS) as wat_inst, Instance(py, LIMITS) as py_inst:
        for size in SIZES:
            payload = b"x" * size
            assert wat_inst.handle_message(payload, request=True).outcome.reply == payload  # type: ignore[union-attr]
            row = {
                "wasmactors (WAT echo)": per_call_us(
                    lambda p=payload: wat_inst.handle_message(p, request=True), calls=calls, repeats=repeats
                ),
                "wasmactors (Python echo)": per_call_us(
                    lambda p=payload: py_inst.handle_message(p, request=True), calls=calls, repeats=repeats
                ),
                "wasmtime-py stock (WAT echo)": per_call_us(
                    stock(payload), calls=max(calls // 10, 5), repeats=repeats
                ),
            }
            if ext is not None:
                row["Extism (echo plugin)"] = per_call_us(ext(payload), calls=calls, repeats=repeats)
            out[str(size)] = row
    return out
