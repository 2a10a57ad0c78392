"""Messages between actors: typed payload codecs (envelopes, addresses and
transports arrive with the actor layer)."""

from ._codec import Codec
from ._errors import MessagingError, PayloadDecodeError

__all__ = ["Codec", "MessagingError", "PayloadDecodeError"]
