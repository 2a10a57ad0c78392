"""The cluster's wire format: subjects for addresses, and the frames that
carry envelopes between nodes.

Everything a node receives from NATS is decoded here, once, by one typed
decoder per subject kind, after a size check: a frame that is too large, not
msgpack, or not of the expected shape raises :class:`WireError` with the
reason, and the node dead-letters it instead of crashing.

Subjects (``P`` is the cluster's subject prefix)::

    P.act.<address tokens>     an actor's inbox; its owning node subscribes
    P.node.<node>              a node's inbox: replies to its host asks
    P.ack.<node>.<seq>         delivery acks for the messages <node> sent

An address ``a/b.c`` is the tokens ``a.b=2Ec``: ``/`` separates tokens and the
characters a name may hold but a NATS token may not (``.``) are escaped with
``=`` (which names never contain), so the mapping is one-to-one and every
address is a valid subject and a valid KV key.
"""

from __future__ import annotations

import re

import msgspec

from ._envelope import Envelope
from ._errors import MessagingError
from ._transport import DeliveryFailure

__all__ = [
    "Ack",
    "Frame",
    "WireError",
    "address_token",
    "decode_ack",
    "decode_frame",
    "encode_ack",
    "encode_frame",
    "token_address",
]

_ESCAPES = {".": "=2E"}
_TOKEN = re.compile(r"^[A-Za-z0-9_\-=]+$")
_PREFIX = re.compile(r"^[A-Za-z0-9_\-]{1,32}$")


class WireError(MessagingError, ValueError):
    """A frame from the wire is oversize, malformed or of the wrong shape."""


def check_prefix(prefix: str) -> str:
    """A cluster's subject prefix: letters, digits, ``_``, ``-`` (at most 32)."""
    if not _PREFIX.match(prefix):
        raise ValueError(f"invalid cluster prefix {prefix!r}: use letters, digits, '_', '-' (at most 32)")
    return prefix


def address_token(address: str) -> str:
    """The subject tokens (and KV key) for an actor address or a node name."""
    segments = address.split("/")
    if not all(segments):
        raise ValueError(f"address {address!r} has an empty segment")
    out = []
    for segment in segments:
        token = segment
        for char, escape in _ESCAPES.items():
            token = token.replace(char, escape)
        if not _TOKEN.match(token):
            raise ValueError(f"address {address!r} cannot be carried on the wire")
        out.append(token)
    return ".".join(out)


def token_address(token: str) -> str:
    """The inverse of :func:`address_token`."""
    segments = token.split(".")
    out = []
    for segment in segments:
        name = segment
        for char, escape in _ESCAPES.items():
            name = name.replace(escape, char)
        out.append(name)
    return "/".join(out)


class Frame(msgspec.Struct, frozen=True, array_like=True):
    """One envelope on its way to another node."""

    #: The sending node's name (checked against who owns the sender).
    origin: str
    #: Seconds the receiver may wait for mailbox room (0: deliver now or fail).
    wait: float
    #: The envelope, as the sender built it.
    envelope: Envelope


class Ack(msgspec.Struct, frozen=True, array_like=True):
    """The receiver's answer to a frame: delivered (``None``) or why not."""

    failure: DeliveryFailure | None = None
    #: More about the failure, for the sender's dead letter.
    detail: str = ""


_frame_encoder = msgspec.msgpack.Encoder()
_frame_decoder = msgspec.msgpack.Decoder(Frame)
_ack_decoder = msgspec.msgpack.Decoder(Ack)

#: Acks are tiny; anything bigger is not one of ours.
MAX_ACK = 4096


def encode_frame(frame: Frame) -> bytes:
    return _frame_encoder.encode(frame)


def decode_frame(data: bytes, max_size: int) -> Frame:
    """The frame in ``data``, or :class:`WireError` saying what is wrong."""
    if len(data) > max_size:
        raise WireError(f"frame of {len(data)} bytes exceeds the limit of {max_size}")
    try:
        return _frame_decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise WireError(f"invalid frame: {exc}") from None
    except msgspec.DecodeError as exc:
        raise WireError(f"undecodable frame: {exc}") from None


def encode_ack(ack: Ack) -> bytes:
    return _frame_encoder.encode(ack)


def decode_ack(data: bytes) -> Ack:
    if len(data) > MAX_ACK:
        raise WireError(f"ack of {len(data)} bytes exceeds the limit of {MAX_ACK}")
    try:
        return _ack_decoder.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise WireError(f"invalid ack: {exc}") from None
