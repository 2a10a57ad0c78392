"""What a cluster transport needs from the actor layer (:class:`ClusterSink`):
the dead-letter sink, the recipient's own limits, and how to answer a
request that could not be delivered."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..messaging import Callback, DeliveryFailure, Envelope, Request, RequestError, RequestFailure
from ..runtime import InvalidMessageError, PayloadTooLargeError, encode_metadata
from ._cell import ComponentCell
from ._ref import _ANY_PAYLOAD as ANY_PAYLOAD

if TYPE_CHECKING:
    from ..messaging import Endpoint, Registry
    from ._observe import DeadLetterReason

__all__ = ["ActorSink"]

_REQUEST_FAILURE = {
    DeliveryFailure.UNKNOWN_RECIPIENT: RequestFailure.UNKNOWN_RECIPIENT,
    DeliveryFailure.MAILBOX_FULL: RequestFailure.MAILBOX_FULL,
}


class ActorSink:
    """The actor system's side of a :class:`~wasmactors.messaging.ClusterTransport`."""

    def __init__(self, registry: Registry, dead_letter: _DeadLetter) -> None:
        self._registry = registry
        self._dead_letter = dead_letter

    def dead_letter(self, envelope: Envelope, reason: DeliveryFailure, detail: str) -> None:
        self._dead_letter(envelope, reason, detail)

    def check(self, endpoint: Endpoint, envelope: Envelope) -> tuple[DeliveryFailure, str] | None:
        """The checks a local caller's message passes in ``ActorRef``, for one from the wire."""
        limits = endpoint.limits if isinstance(endpoint, ComponentCell) else ANY_PAYLOAD
        try:
            encode_metadata(limits, envelope.payload, envelope.sender, envelope.headers)
        except PayloadTooLargeError as exc:
            return DeliveryFailure.PAYLOAD_TOO_LARGE, f"message to {envelope.recipient}: {exc}"
        except InvalidMessageError as exc:
            return DeliveryFailure.INVALID_MESSAGE, f"message to {envelope.recipient}: {exc}"
        return None

    def request_failed(self, request: Request, failure: DeliveryFailure, detail: str) -> None:
        """The sender of an undelivered request gets its callback, as in process."""
        endpoint = self._registry.lookup(request.sender)
        if endpoint is None:
            return
        reason = _REQUEST_FAILURE.get(failure, RequestFailure.STOPPED)
        callback = Callback(
            recipient=request.sender,
            correlation_id=request.correlation_id,
            error=RequestError(reason, request.recipient),
        )
        if endpoint.deliver_nowait(callback) is not None:
            self._dead_letter(callback, DeliveryFailure.STOPPED, "the requester stopped")


if TYPE_CHECKING:
    from collections.abc import Callable

    _DeadLetter = Callable[[Envelope, DeadLetterReason, str], None]
