"""Hostile guests inside an actor system: what a guest makes the actor layer
hold stays bounded, and a bad value from a native actor costs one message."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from tests.guests import wat_guest
from tests.guests.hostile import calling_guest
from wasmactors.actors import ActorAppError, ActorSystem, NativeContext
from wasmactors.runtime import Engine, Limits, MiB

if TYPE_CHECKING:
    from wasmactors.messaging import Envelope

pytestmark = pytest.mark.anyio

LIMITS = Limits(memory=4 * MiB, fuel=10**8, timeout=2.0)

# Each message: 500 requests to "echo" with the longest timeout allowed, then
# a send to itself, so that it never stops asking.
_SPAMMER = """(data (i32.const 300) "echo") (data (i32.const 320) "spammer")
(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
  (local $i i32)
  (loop $l
    (call $messaging.request (i32.const 300) (i32.const 4) (i32.const 330) (i32.const 1)
                             (i32.const 300000) (i32.const 400))
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br_if $l (i32.lt_u (local.get $i) (i32.const 500))))
  (call $messaging.send (i32.const 320) (i32.const 7) (i32.const 330) (i32.const 1) (i32.const 400))
  (call $reply_none))"""


async def test_answered_requests_cost_no_timer(system: ActorSystem, engine: Engine) -> None:
    """Thousands of requests with a 5-minute timeout, each answered: the pending
    timers stay bounded by the requests still waiting, not by those ever made."""
    await system.spawn("echo", engine.load(wat_guest("echo"), name="echo"), limits=LIMITS)
    source = calling_guest(_SPAMMER, "messaging.request", "messaging.send")
    spammer = await system.spawn("spammer", engine.load(source, name="spammer"), limits=LIMITS)
    await spammer.tell(b"go")
    echo = system.ref("echo")
    deadlines = system._deadlines  # the one timer structure of the system
    most = 0
    with anyio.fail_after(120):
        while echo.stats().handled < 10_000:  # 10,000 requests made and answered
            await anyio.sleep(0.01)  # sampling the heap's size, not waiting for an event
            most = max(most, len(deadlines._heap))
    # Live deadlines are at most max-pending-requests; cancelled ones are
    # compacted once they are the majority and over a thousand.
    assert most <= 2 * (LIMITS.max_pending_requests + 500) + 1024
    assert spammer.stats().crashes == {}


class WrongReply:
    """A native actor whose reply is not bytes."""

    async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None:
        return bytearray(b"not bytes")  # type: ignore[return-value]


async def test_a_native_reply_that_is_not_bytes_costs_one_message(system: ActorSystem) -> None:
    """The asker gets an application error; the system and the actor go on."""
    ref = await system.spawn_native("wrong", WrongReply())
    with pytest.raises(ActorAppError, match="a reply is bytes, not bytearray"):
        await ref.ask(b"x", timeout=5)
    with pytest.raises(ActorAppError):
        await ref.ask(b"y", timeout=5)
