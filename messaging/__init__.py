"""Messages between actors: envelopes, addresses, the transport, and typed
payload codecs."""

from ._codec import Codec
from ._envelope import Callback, Envelope, Kind, Reply, Request, Tell, decode_envelope, encode_envelope
from ._errors import MessagingError, PayloadDecodeError, PayloadEncodeError
from ._transport import (
    DeliveryFailure,
    Endpoint,
    InProcessTransport,
    NameTakenError,
    Registry,
    Transport,
    check_name,
    child_address,
)

__all__ = [
    "Callback",
    "Codec",
    "DeliveryFailure",
    "Endpoint",
    "Envelope",
    "InProcessTransport",
    "Kind",
    "MessagingError",
    "NameTakenError",
    "PayloadDecodeError",
    "PayloadEncodeError",
    "Registry",
    "Reply",
    "Request",
    "Tell",
    "Transport",
    "check_name",
    "child_address",
    "decode_envelope",
    "encode_envelope",
]
