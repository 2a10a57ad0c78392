"""Messages between actors: envelopes, addresses, the transport, and typed
payload codecs."""

from ._cluster import Cluster
from ._codec import Codec
from ._envelope import Callback, Envelope, Kind, Reply, Request, Tell, decode_envelope, encode_envelope
from ._errors import ClusterError, MessagingError, PayloadDecodeError, PayloadEncodeError
from ._node import ClusterSink, ClusterTransport
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
from ._wire import WireError

__all__ = [
    "Callback",
    "Cluster",
    "ClusterError",
    "ClusterSink",
    "ClusterTransport",
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
    "WireError",
    "check_name",
    "child_address",
    "decode_envelope",
    "encode_envelope",
]
