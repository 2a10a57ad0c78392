"""Typed payload codecs."""

from __future__ import annotations

import msgspec
import pytest

from wasmactors.messaging import Codec, PayloadDecodeError


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
