"""Envelopes (a tagged union on the wire), the failure enum, and typed payload codecs."""

from __future__ import annotations

import msgspec
import pytest

from wasmactors.actors import DeadLetterReason
from wasmactors.messaging import (
    Callback,
    Codec,
    DeliveryFailure,
    Envelope,
    Kind,
    PayloadDecodeError,
    Reply,
    Request,
    RequestError,
    RequestFailure,
    Tell,
    decode_envelope,
    encode_envelope,
)


class Add(msgspec.Struct, tag=True):
    amount: int


class Get(msgspec.Struct, tag=True):
    pass


Command = Add | Get


@pytest.mark.parametrize("fmt", ["json", "msgpack"])
def test_codec_round_trips_a_tagged_union(fmt: str) -> None:
    """Each variant of a tagged union comes back as itself."""
    codec: Codec[Command] = Codec(Command, format=fmt)  # type: ignore[arg-type]
    for value in (Add(5), Get()):
        assert codec.decode(codec.encode(value)) == value


def test_json_payloads_are_ascii() -> None:
    """JSON payloads of ASCII data cross the wasm boundary without conversion."""
    assert Codec(Add).encode(Add(5)) == b'{"type":"Add","amount":5}'


def test_invalid_and_malformed_payloads_are_reported_as_such() -> None:
    """Validation failures and garbage both raise PayloadDecodeError with msgspec's reason."""
    codec: Codec[Command] = Codec(Command)  # type: ignore[arg-type]
    with pytest.raises(PayloadDecodeError, match=r"invalid .* payload: Expected `int`, got `str`"):
        codec.decode(b'{"type":"Add","amount":"five"}')
    with pytest.raises(PayloadDecodeError, match="malformed json payload"):
        codec.decode(b"{not json")


def test_unknown_format_is_rejected() -> None:
    """Only json and msgpack are offered."""
    with pytest.raises(ValueError, match="unknown payload format"):
        Codec(Add, format="xml")  # type: ignore[arg-type]


def test_envelopes_are_a_tagged_union_on_the_wire() -> None:
    """Each kind of envelope round-trips through msgpack as itself, with the fields its kind requires."""
    envelopes: list[Envelope] = [
        Tell(recipient="a", payload=b"x", headers=(("h", "v"),)),
        Request(recipient="a", payload=b"q", sender="$ask/1", correlation_id=1),
        Reply(recipient="$ask/1", sender="a", correlation_id=1, payload=b"r"),
        Callback(recipient="b", correlation_id=2, error=RequestError(RequestFailure.TIMEOUT)),
    ]
    for envelope in envelopes:
        assert decode_envelope(encode_envelope(envelope)) == envelope
    assert [e.kind for e in envelopes] == [Kind.TELL, Kind.REQUEST, Kind.REPLY, Kind.CALLBACK]
    with pytest.raises(TypeError, match="correlation_id"):
        Request(recipient="a", sender="b")  # type: ignore[call-arg]


def test_one_failure_enum_for_every_dead_letter() -> None:
    """The actor layer's dead-letter reasons are the messaging layer's delivery failures."""
    assert DeadLetterReason is DeliveryFailure
    assert {r.value for r in DeliveryFailure} >= {"unknown-recipient", "stopped", "crashed-handler"}
