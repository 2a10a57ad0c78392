"""The cluster's wire format: subjects for addresses, and the frames that
carry envelopes between nodes.

Everything a node receives from NATS is decoded here, once, by one typed
decoder per subject kind, after a size check: a frame that is too large, not
msgpack, or not of the expected shape raises :class:`WireError` with the
reason, and the node dead-letters it instead of crashing.

Subjects (``P`` is the cluster's subject prefix)::

    P.act.<address tokens>     an actor's inbox; its owning node subscribes
    P.node.<node>              a node's inbox: replies to its host asks
    P.ack.<node>.<batch>       delivery acks for a batch of messages <node> sent

On the core subjects a message is a :class:`Batch`: the envelopes one node
sent to one subject within one turn of its event loop, each with its own
wait. The receiver answers on the batch's reply subject with a list of
:class:`AckItem` (each naming its envelope by index), as soon as each is
delivered or refused, several to a message. A durable stream message is one
:class:`Frame`.

An address ``a/b.c`` is the tokens ``a.b=2Ec``: ``/`` separates tokens and the
characters a name may hold but a NATS token may not (``.``) are escaped with
``=`` (which names never contain), so the mapping is one-to-one and every
address is a valid subject and a valid KV key.
"""

from __future__ import annotations

import functools
import re
from typing import TypeVar

import msgspec

from ._envelope import Envelope
from ._errors import MessagingError
from ._transport import DeliveryFailure

__all__ = [
    "ACK_ALL",
    "MAX_BATCH",
    "Ack",
    "AckItem",
    "Batch",
    "Frame",
    "Item",
    "WireError",
    "address_token",
    "batch_overhead",
    "decode_acks",
    "decode_batch",
    "decode_frame",
    "encode_acks",
    "encode_batch",
    "encode_frame",
    "encode_item",
    "token_address",
]

T = TypeVar("T")

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
    """The subject tokens (and KV key) for an actor address or a node name.
    The hot path asks for the same few many times: cached, but only for
    short strings (a peer's long ones must not stay in memory)."""
    if len(address) <= _CACHED:
        return _cached_token(address)
    return _token(address)


#: Addresses up to this long are cached (names are at most 100 characters a segment).
_CACHED = 256


@functools.lru_cache(maxsize=4096)
def _cached_token(address: str) -> str:
    return _token(address)  # an address that raises is not cached


def _token(address: str) -> str:
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
    """A receiver's answer to a frame, before it joins its batch's acks
    (:class:`AckItem`): delivered (``None``) or why not."""

    failure: DeliveryFailure | None = None
    #: More about the failure, for the sender's dead letter.
    detail: str = ""


class Item(msgspec.Struct, frozen=True, array_like=True):
    """One envelope of a :class:`Batch`."""

    #: Seconds the receiver may wait for mailbox room (0: deliver now or fail).
    wait: float
    envelope: Envelope


class Batch(msgspec.Struct, frozen=True, array_like=True):
    """Envelopes from one node to one subject, in the order they were sent."""

    #: The sending node's name (checked against who owns each sender).
    origin: str
    items: list[Item]


class _RawBatch(msgspec.Struct, array_like=True):
    origin: str
    items: list[msgspec.Raw]


class AckItem(msgspec.Struct, frozen=True, array_like=True):
    """The receiver's answer to one item of a batch (``index``; :data:`ACK_ALL`:
    to every item not answered yet): delivered (``None``) or why not."""

    index: int
    failure: DeliveryFailure | None = None
    detail: str = ""


#: An :class:`AckItem` index for every item of its batch (a batch refused whole).
ACK_ALL = -1
#: Items in one batch, at most (a receiver refuses a larger one whole).
MAX_BATCH = 1024
#: A failure's detail on the wire, at most (characters).
MAX_DETAIL = 240

_frame_encoder = msgspec.msgpack.Encoder()
_batch_decoder = msgspec.msgpack.Decoder(Batch)
_acks_decoder = msgspec.msgpack.Decoder(list[AckItem])
_frame_decoder = msgspec.msgpack.Decoder(Frame)

#: A message of acks: at most :data:`MAX_BATCH` items, each with a short detail.
MAX_ACKS = MAX_BATCH * (MAX_DETAIL * 4 + 32)


def encode_frame(frame: Frame) -> bytes:
    return _frame_encoder.encode(frame)


def _decode(decoder: msgspec.msgpack.Decoder[T], data: bytes, max_size: int, what: str) -> T:
    """``data`` decoded after a size check, or :class:`WireError` saying what is wrong."""
    if len(data) > max_size:
        raise WireError(f"{what} of {len(data)} bytes exceeds the limit of {max_size}")
    try:
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        raise WireError(f"invalid {what}: {exc}") from None
    except msgspec.DecodeError as exc:
        raise WireError(f"undecodable {what}: {exc}") from None


def decode_frame(data: bytes, max_size: int) -> Frame:
    """The frame in ``data``, or :class:`WireError` saying what is wrong."""
    return _decode(_frame_decoder, data, max_size, "frame")


def encode_item(item: Item) -> bytes:
    """One item, encoded once: a batch is assembled from the bytes."""
    return _frame_encoder.encode(item)


def encode_batch(origin: str, items: list[bytes]) -> bytes:
    return _frame_encoder.encode(_RawBatch(origin, [msgspec.Raw(i) for i in items]))


def batch_overhead(origin: str) -> int:
    """The bytes a batch adds to its items, at most."""
    return len(encode_batch(origin, [])) + 4  # a list header grows by up to 4 bytes


def decode_batch(data: bytes, max_size: int) -> Batch:
    """The batch in ``data``, or :class:`WireError` saying what is wrong."""
    batch = _decode(_batch_decoder, data, max_size, "batch")
    if not 0 < len(batch.items) <= MAX_BATCH:
        raise WireError(f"a batch of {len(batch.items)} items (from 1 to {MAX_BATCH})")
    return batch


def encode_acks(acks: list[AckItem]) -> bytes:
    return _frame_encoder.encode(acks)


def decode_acks(data: bytes) -> list[AckItem]:
    return _decode(_acks_decoder, data, MAX_ACKS, "acks")
