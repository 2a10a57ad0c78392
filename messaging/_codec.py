"""Typed payloads: msgspec Structs encoded to and from payload bytes."""

from __future__ import annotations

import types
import typing
from typing import Generic, Literal, TypeVar

import msgspec

from ._errors import PayloadDecodeError, PayloadEncodeError

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
        self._classes = _classes(type)

    def encode(self, value: T) -> bytes:
        """The payload bytes for ``value``; :class:`PayloadEncodeError` if it is
        not of the codec's type (checked for classes and unions of classes)."""
        if self._classes and not isinstance(value, self._classes):
            raise PayloadEncodeError(f"expected {self.type_name}, got {type(value).__name__}")
        try:
            return self._encoder.encode(value)
        except (msgspec.EncodeError, TypeError) as exc:
            raise PayloadEncodeError(f"cannot encode {type(value).__name__} as {self.format}: {exc}") from exc

    def decode(self, payload: bytes) -> T:
        """The value in ``payload``; :class:`PayloadDecodeError` if it is malformed or invalid."""
        try:
            return self._decoder.decode(payload)
        except msgspec.ValidationError as exc:
            raise PayloadDecodeError(f"invalid {self.type_name} payload: {exc}") from exc
        except msgspec.DecodeError as exc:
            raise PayloadDecodeError(f"malformed {self.format} payload for {self.type_name}: {exc}") from exc

    @property
    def type_name(self) -> str:
        """The name of the codec's type, for messages."""
        return getattr(self.type, "__name__", repr(self.type))


def _classes(tp: object) -> tuple[type, ...]:
    """The classes a value of ``tp`` must be an instance of: user classes
    (Structs, dataclasses, enums) and unions of them. ``()`` means unchecked:
    builtins (msgspec accepts an int for a float), generics, literals."""
    if isinstance(tp, type) and typing.get_origin(tp) is None:
        return () if tp.__module__ == "builtins" else (tp,)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        members = [_classes(arg) for arg in typing.get_args(tp)]
        if all(members):
            return tuple(c for m in members for c in m)
    return ()
