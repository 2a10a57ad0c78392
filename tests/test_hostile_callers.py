"""Hostile callers: whatever a caller hands `tell`/`ask` (unencodable strings,
huge headers, wrong types), it gets a clear error and nothing is queued; the
actor and the system are untouched."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import anyio
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.guests import wat_guest
from wasmactors.runtime import (
    Engine,
    Instance,
    InvalidMessageError,
    Limits,
    MiB,
    PayloadTooLargeError,
    encode_metadata,
)

from .conftest import WAT

if TYPE_CHECKING:
    from wasmactors.actors import ActorRef, ActorSystem

pytestmark = pytest.mark.anyio

LONE_SURROGATE = "trace-\udc80"

BAD_CALLS: list[tuple[str, dict[str, Any], type[Exception], str]] = [
    ("surrogate header name", {"headers": [(LONE_SURROGATE, "v")]}, InvalidMessageError, "header name"),
    ("surrogate header value", {"headers": [("h", LONE_SURROGATE)]}, InvalidMessageError, "header value"),
    ("surrogate sender", {"sender": LONE_SURROGATE}, InvalidMessageError, "sender"),
    ("64 MiB header", {"headers": [("h", "x" * (64 * MiB))]}, InvalidMessageError, "exceed the limit"),
    ("too many headers", {"headers": [("h", "v")] * 65}, InvalidMessageError, "65 headers"),
    ("non-string header", {"headers": [("h", 5)]}, InvalidMessageError, "a string, not int"),
    ("malformed header", {"headers": ["hv"]}, InvalidMessageError, "(name, value) pair"),
    ("oversized payload", {"payload": b"x" * (WAT.max_payload + 1)}, PayloadTooLargeError, "exceeds"),
    ("str payload", {"payload": "text"}, InvalidMessageError, "bytes, not str"),
    ("bytearray payload", {"payload": bytearray(b"x")}, InvalidMessageError, "bytes, not bytearray"),
    ("memoryview payload", {"payload": memoryview(b"x")}, InvalidMessageError, "bytes, not memoryview"),
    (
        "bytes subclass",
        {"payload": type("B", (bytes,), {"isascii": lambda self: 1})(b"x")},
        InvalidMessageError,
        "not B",
    ),
    (
        "lying str subclass",
        {"sender": type("S", (str,), {"encode": lambda self, *a: b"ok"})(LONE_SURROGATE)},
        InvalidMessageError,
        "sender is not valid Unicode",
    ),
]


async def _still_serves(ref: ActorRef) -> None:
    with anyio.fail_after(10):
        assert await ref.ask(b"alive?", timeout=5) == b"alive?"


@pytest.mark.parametrize("case", BAD_CALLS, ids=[c[0] for c in BAD_CALLS])
async def test_a_bad_message_is_refused_in_the_caller_and_hurts_nothing(
    system: ActorSystem, engine: Engine, case: tuple[str, dict[str, Any], type[Exception], str]
) -> None:
    """tell, tell_nowait and ask all refuse it before queueing; the actor keeps serving."""
    _, call, error, says = case
    says = re.escape(says)
    echo = await system.spawn("echo", engine.load(wat_guest("echo"), name="echo"), limits=WAT)
    payload = call.get("payload", b"hi")
    headers = call.get("headers", ())
    sender = call.get("sender")
    with pytest.raises(error, match=says):
        await echo.tell(payload, sender=sender, headers=headers)
    with pytest.raises(error, match=says):
        echo.tell_nowait(payload, sender=sender, headers=headers)
    if sender is None:
        with pytest.raises(error, match=says):
            await echo.ask(payload, timeout=5, headers=headers)
    await _still_serves(echo)
    assert echo.stats().handled == 1
    assert echo.stats().crashes == {}
    assert sum(system.dead_letter_counts.values()) == 0


_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=20)
_headers = st.lists(st.tuples(_text, _text), max_size=5)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(payload=st.binary(max_size=64), sender=st.none() | _text, headers=_headers)
async def test_arbitrary_senders_and_headers_never_hurt_the_system(
    system: ActorSystem, engine: Engine, payload: bytes, sender: str | None, headers: list[tuple[str, str]]
) -> None:
    """Any text (lone surrogates included) is delivered intact or refused with InvalidMessageError."""
    ref = system.ref("echo")
    if system.registry.lookup("echo") is None:
        ref = await system.spawn("echo", engine.load(wat_guest("echo"), name="echo"), limits=WAT)
    try:
        await ref.tell(payload, sender=sender, headers=headers)
    except InvalidMessageError:
        assert not _valid(payload, sender, headers)
    else:
        assert _valid(payload, sender, headers)
    try:
        reply = await ref.ask(payload, timeout=5, headers=headers)
    except InvalidMessageError:
        assert not _valid(payload, "$ask/1", headers)
    else:
        assert reply == payload
    await _still_serves(ref)
    assert ref.stats().crashes == {}


def _valid(payload: bytes, sender: str | None, headers: list[tuple[str, str]]) -> bool:
    try:
        encode_metadata(WAT, payload, sender, headers)
    except InvalidMessageError:
        return False
    return True


def test_the_runtime_refuses_a_bad_message_before_touching_the_instance(engine: Engine) -> None:
    """Instance.handle_message checks too (a second line of defence) and stays usable."""
    with Instance(engine.load(wat_guest("echo")), Limits(memory=4 * MiB, fuel=10**8, timeout=2)) as instance:
        with pytest.raises(InvalidMessageError, match="sender"):
            instance.handle_message(b"x", sender=LONE_SURROGATE)
        with pytest.raises(InvalidMessageError, match="exceed the limit"):
            instance.handle_message(b"x", headers=[("h", "v" * (65 * 1024))])
        result = instance.handle_message(b"ok", request=True, sender="a/b", headers=[("k", "v")])
        assert result.ok
        assert instance.usable
