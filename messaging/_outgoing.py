"""What a handler sends: the messages a guest queued with ``messaging.send``
and ``messaging.request`` during one call, as a tagged union.

The runtime records them while the call runs; the actor layer turns each
into an envelope (``Send`` into a :class:`~wasmactors.messaging.Tell`,
``SendRequest`` into a :class:`~wasmactors.messaging.Request`) if the call
did not crash. A request's id and timeout are required by its type, so no
code has to check that an optional field happens to be set. They are built
on the call path, once per message sent: plain frozen Structs, checked by
the host function that makes them, not again here.
"""

from __future__ import annotations

import msgspec

__all__ = ["Outgoing", "Send", "SendRequest"]


class Send(msgspec.Struct, frozen=True, tag="send"):
    """A fire-and-forget message (``messaging.send``)."""

    #: Recipient address.
    to: str
    #: Message body.
    payload: bytes


class SendRequest(msgspec.Struct, frozen=True, tag="request"):
    """A request (``messaging.request``): its answer comes back as a callback."""

    #: Recipient address.
    to: str
    #: Message body.
    payload: bytes
    #: The id the guest got back from ``request``.
    request_id: int
    #: How long the guest is willing to wait, in seconds (``None``: the host's default).
    timeout: float | None = None


#: A message a handler queued.
Outgoing = Send | SendRequest
