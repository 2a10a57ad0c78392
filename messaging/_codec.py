"""Typed payloads: msgspec Structs encoded to and from payload bytes."""

from __future__ import annotations

from typing import Generic, Literal, TypeVar

import msgspec

from ._errors import PayloadDecodeError

__all__ = ["Codec"]

T = TypeVar("T")


class Codec(Generic[T]):
    """Encodes values of one type (typically a msgspec Struct or a tagged
    union of Structs) as payloads, and decodes and validates them back.

    JSON is the default because its output is ASCII for ASCII data, which
    crosses the wasm boundary without conversion (see ``payload`` in the
    WIT); msgpack is more compact for binary-heavy messages::

        class Add(msgspec.Struct, tag=True):
            amount: int

        codec = Codec(Add)
        codec.decode(codec.encode(Add(5)))  # Add(amount=5)
    """

    def __init__(self, type: type[T], *, format: Literal["json", "msgpack"] = "json") -> None:
        self.type = type
        self.format = format
        if format == "json":
            self._encoder: msgspec.json.Encoder | msgspec.msgpack.Encoder = msgspec.json.Encoder()
            self._decoder: msgspec.json.Decoder[T] | msgspec.msgpack.Decoder[T] = msgspec.json.Decoder(type)
        elif format == "msgpack":
            self._encoder = msgspec.msgpack.Encoder()
            self._decoder = msgspec.msgpack.Decoder(type)
        else:
            raise ValueError(f"unknown payload format {format!r}; use 'json' or 'msgpack'")

    def encode(self, value: T) -> bytes:
        """The payload bytes for ``value``."""
        return self._encoder.encode(value)

    def decode(self, payload: bytes) -> T:
        """The value in ``payload``; :class:`PayloadDecodeError` if it is malformed or invalid."""
        try:
            return self._decoder.decode(payload)
        except msgspec.ValidationError as exc:
            raise PayloadDecodeError(f"invalid {self._name()} payload: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise PayloadDecodeError(f"malformed {self.format} payload for {self._name()}: {exc}") from exc

    def _name(self) -> str:
        return getattr(self.type, "__name__", repr(self.type))
