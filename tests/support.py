"""Helpers for the supervision, stop and stress tests: a recording native actor
and the message-accounting invariant."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, TypeVar

import anyio

from wasmactors.actors import DeadLetterReason
from wasmactors.messaging import Envelope, Kind

if TYPE_CHECKING:
    from collections.abc import Iterable

    from anyio.streams.memory import MemoryObjectReceiveStream

    from wasmactors.actors import ActorStats, DeadLetter, NativeContext

T = TypeVar("T")


class Recorder:
    """A native actor that records each message it handled successfully.

    ``boom*`` raises (a crash), ``block*`` waits for :attr:`gate`, ``exit*``
    asks to stop normally; anything else is echoed. ``handled`` may be shared
    between incarnations (pass the same list to a factory)."""

    def __init__(self, handled: list[bytes] | None = None, gate: anyio.Event | None = None) -> None:
        self.handled = [] if handled is None else handled
        self.gate = gate or anyio.Event()
        #: Set when a ``block*`` message is being handled.
        self.blocked = anyio.Event()

    async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None:
        payload = envelope.payload
        if payload.startswith(b"boom"):
            raise RuntimeError("boom")
        if payload.startswith(b"block"):
            self.blocked.set()
            await self.gate.wait()
        if payload.startswith(b"exit"):
            context.stop()
        self.handled.append(payload)
        return payload


def drain(stream: MemoryObjectReceiveStream[T]) -> list[T]:
    """Everything buffered in ``stream`` now, without waiting."""
    out: list[T] = []
    while True:
        try:
            out.append(stream.receive_nowait())
        except (anyio.WouldBlock, anyio.EndOfStream):
            return out


def dead_tells(letters: Iterable[DeadLetter], address: str) -> list[bytes]:
    """Payloads of tells to ``address`` that became dead letters (any reason)."""
    return [
        d.envelope.payload
        for d in letters
        if d.envelope.recipient == address and d.envelope.kind is Kind.TELL
    ]


def assert_native_accounted(sent: list[bytes], handled: list[bytes], dead: list[bytes]) -> None:
    """Every tell is handled or a dead letter, exactly once (crashed messages are
    dead letters with reason crashed-handler, and not in ``handled``)."""
    assert Counter(sent) == Counter(handled) + Counter(dead), (
        f"sent {len(sent)}, handled {len(handled)}, dead {len(dead)}"
    )


def assert_component_accounted(sent: int, stats: ActorStats, letters: list[DeadLetter], address: str) -> None:
    """For a component: ``handled`` counts every call, crashed ones included, and
    a crashed message is also a crashed-handler dead letter; so every tell sent
    is either a call or a dead letter for another reason."""
    other = [
        d
        for d in letters
        if d.envelope.recipient == address
        and d.envelope.kind is Kind.TELL
        and d.reason is not DeadLetterReason.CRASHED_HANDLER
    ]
    crashed = sum(stats.crashes.values())
    crash_letters = [
        d for d in letters if d.envelope.recipient == address and d.reason is DeadLetterReason.CRASHED_HANDLER
    ]
    assert len(crash_letters) == crashed
    assert sent == stats.handled + len(other), (
        f"sent {sent} != handled {stats.handled} + dead letters {len(other)}"
    )
