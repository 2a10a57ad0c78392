"""Scenario 3, a pipeline: producer -> four guest stages -> a native sink,
end-to-end throughput and peak RSS, on asyncio and on trio. The message
carries its own route, so every stage runs the same guest, makes one host
``send`` and hands its message on through the host. Two kinds of stage: a
WAT forwarder (``TO REST`` -> sends REST to TO; the actor machinery's cost)
and the kitchen Python guest (``send TO REST``; what a Python guest adds)."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import anyio

from tests.guests import python_guest
from tests.guests.hostile import calling_guest
from wasmactors.actors import ActorSystem
from wasmactors.runtime import Limits, MemoryStorage, MiB

from ._util import peak_rss_bytes, reset_peak_rss

if TYPE_CHECKING:
    from wasmactors.actors import NativeContext
    from wasmactors.messaging import Envelope
    from wasmactors.runtime import Component, Engine

LIMITS = Limits(memory=64 * MiB, fuel=10**9, timeout=10.0)
STAGES = 4
#: The kitchen guest's route: each stage runs ``send TO REST``.
ROUTE = b" ".join(b"send s%d" % i for i in range(2, STAGES + 1)) + b" send sink "
#: The forwarder's route: each stage sends what follows its first word to that word.
WAT_ROUTE = b" ".join(b"s%d" % i for i in range(2, STAGES + 1)) + b" sink "

#: Forwards ``TO REST`` to TO with one host ``send``; replies none. The send's
#: result goes to a scratch area at 64 (the shell's results live at 16).
FORWARDER = calling_guest(
    """
(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
  (local $i i32)
  (block $found (loop $scan
    (br_if $found (i32.ge_u (local.get $i) (local.get 5)))
    (br_if $found (i32.eq (i32.load8_u (i32.add (local.get 4) (local.get $i))) (i32.const 32)))
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br $scan)))
  (if (i32.lt_u (local.get $i) (local.get 5))
    (then (call $messaging.send
      (local.get 4) (local.get $i)
      (i32.add (local.get 4) (i32.add (local.get $i) (i32.const 1)))
      (i32.sub (local.get 5) (i32.add (local.get $i) (i32.const 1)))
      (i32.const 64))))
  (call $reply_none))
""",
    "messaging.send",
)


class _Sink:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.count = 0
        self.done = anyio.Event()

    async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None:
        self.count += 1
        if self.count == self.expected:
            self.done.set()
        return None


async def _run(engine: Engine, stage: Component, route: bytes, messages: int) -> dict[str, float]:
    reset_peak_rss()
    async with ActorSystem(engine=engine, storage=MemoryStorage()) as system:
        sink = _Sink(messages)
        await system.spawn_native("sink", sink)
        first = None
        for i in range(STAGES, 0, -1):
            first = await system.spawn(f"s{i}", stage, limits=LIMITS)
        assert first is not None
        start = time.perf_counter()
        for i in range(messages):
            await first.tell(route + str(i).encode())
        await sink.done.wait()
        elapsed = time.perf_counter() - start
        return {"messages_per_s": messages / elapsed, "peak_rss_mib": peak_rss_bytes() / 2**20}


def run(engine: Engine, *, quick: bool) -> dict[str, Any]:
    out: dict[str, Any] = {"stages": STAGES}
    stages = (
        ("WAT forwarders", engine.load(FORWARDER, name="forwarder"), WAT_ROUTE, 200 if quick else 100_000),
        ("Python guests", engine.load(python_guest("kitchen")), ROUTE, 200 if quick else 50_000),
    )
    for kind, stage, route, messages in stages:
        for backend in ("asyncio", "trio"):
            result = anyio.run(_run, engine, stage, route, messages, backend=backend)
            out[f"{kind}, {backend}"] = {
                "messages": messages,
                "messages_per_s": result["messages_per_s"],
                "peak_rss_mib": result["peak_rss_mib"],
            }
    return out
