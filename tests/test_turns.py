"""Answers that a turn leaves for the next one are still matched to their requests."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from tests.conftest import PY
from wasmactors.actors import ActorSystem
from wasmactors.runtime import MemoryStorage

if TYPE_CHECKING:
    from wasmactors.actors import NativeContext
    from wasmactors.messaging import Envelope
    from wasmactors.runtime import Component, Engine

pytestmark = pytest.mark.anyio


class Held:
    """Answers every request only once ``gate`` opens, so the answers arrive together."""

    def __init__(self) -> None:
        self.gate = anyio.Event()
        self.waiting = 0

    async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None:
        self.waiting += 1
        await self.gate.wait()
        return envelope.payload


class Probe:
    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.seen: list[bytes] = []
        self.done = anyio.Event()

    async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None:
        self.seen.append(envelope.payload)
        if len(self.seen) >= self.expected:
            self.done.set()
        return None


async def test_answers_left_for_the_next_turn_still_match(engine: Engine, kitchen: Component) -> None:
    """With a turn budget so small that a turn runs one message, replies queued
    together are handled one per turn, each as its request's callback (none is
    refused as an unexpected reply)."""
    async with ActorSystem(engine=engine, storage=MemoryStorage(), turn_time=1e-9) as system:
        held = Held()
        await system.spawn_native("held", held, mailbox_size=16)
        probe = Probe(expected=3)
        await system.spawn_native("probe", probe)
        k = await system.spawn("k", kitchen, limits=PY)
        with anyio.fail_after(30):
            for i in (1, 2, 3):
                assert await k.ask(f"request held 10000 r{i}".encode(), timeout=10) == str(i).encode()
            # held handles one request at a time: the other two wait in its mailbox;
            # opening the gate answers all three back to back.
            held.gate.set()
            await probe.done.wait()
        assert sorted(probe.seen) == [b"1 ok r1", b"2 ok r2", b"3 ok r3"]
        assert system.dead_letter_counts["unexpected-reply"] == 0


async def test_an_ask_to_an_idle_actor_keeps_every_guarantee(system: ActorSystem, kitchen: Component) -> None:
    """An ask that goes straight to a worker (the actor is idle) still times out at
    its own timeout while the handler runs on, its late reply is an unexpected-reply
    dead letter, tells sent meanwhile are handled after it in order, and the
    actor's stats count every call."""
    from wasmactors.actors import AskTimeoutError, DeadLetterReason

    ref = await system.spawn("k", kitchen, limits=PY)
    assert await ref.ask(b"echo warm", timeout=5) == b"warm"  # idle from here on
    async with system.dead_letters() as dead:
        with anyio.fail_after(5):
            start = anyio.current_time()
            with pytest.raises(AskTimeoutError):
                await ref.ask(b"busy 400", timeout=0.1)
            assert anyio.current_time() - start < 0.35  # not the handler's 400 ms
            for i in range(3):
                await ref.tell(b"set k%d v" % i)
            letter = await dead.receive()
    assert letter.reason is DeadLetterReason.UNEXPECTED_REPLY
    assert await ref.ask(b"keys k", timeout=5) == b"k0,k1,k2"
    assert ref.stats().handled == 6
