"""Messages between actors: envelopes, addresses, the transport, what a
handler sends, and typed payload codecs. This layer knows no wasmtime and no
actors: ``runtime`` and ``actors`` import it, never the other way round."""

from ._cluster import Cluster
from ._codec import Codec
from ._envelope import (
    Callback,
    Envelope,
    Kind,
    Reply,
    Request,
    RequestError,
    RequestFailure,
    Tell,
    decode_envelope,
    encode_envelope,
)
from ._errors import ClusterError, MessagingError, PayloadDecodeError, PayloadEncodeError
from ._node import ClusterSink, ClusterTransport
from ._outgoing import Outgoing, Send, SendRequest
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
    "Outgoing",
    "PayloadDecodeError",
    "PayloadEncodeError",
    "Registry",
    "Reply",
    "Request",
    "RequestError",
    "RequestFailure",
    "Send",
    "SendRequest",
    "Tell",
    "Transport",
    "WireError",
    "check_name",
    "child_address",
    "decode_envelope",
    "encode_envelope",
]
