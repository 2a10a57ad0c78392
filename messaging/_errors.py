"""The messaging layer's errors::

WasmActorsError
└── MessagingError
    ├── ClusterError         the cluster cannot be joined or reached (also ConnectionError)
    ├── PayloadDecodeError   a payload is malformed or fails validation (also ValueError)
    └── PayloadEncodeError   a value is not of the codec's type or cannot be encoded (also TypeError)
"""

from __future__ import annotations

from .._errors import WasmActorsError

__all__ = ["ClusterError", "MessagingError", "PayloadDecodeError", "PayloadEncodeError"]


class MessagingError(WasmActorsError):
    """Base class of the messaging layer's errors."""


class ClusterError(MessagingError, ConnectionError):
    """The NATS server cannot be reached, or the cluster cannot be joined."""


class PayloadDecodeError(MessagingError, ValueError):
    """A payload could not be decoded into the expected type."""


class PayloadEncodeError(MessagingError, TypeError):
    """A value is not of the codec's type, or cannot be encoded."""
