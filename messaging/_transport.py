"""Addresses, the registry, and the transport that moves envelopes between them.

The actor layer delivers every envelope through a :class:`Transport`. The
in-process transport looks the recipient up in a :class:`Registry` of
endpoints (actor mailboxes, pending asks); a network transport can implement
the same protocol later without the actor layer changing.
"""

from __future__ import annotations

import enum
import re
from typing import TYPE_CHECKING, Protocol

import anyio

from ._errors import MessagingError

if TYPE_CHECKING:
    from ._envelope import Envelope

__all__ = [
    "DeliveryFailure",
    "Endpoint",
    "InProcessTransport",
    "NameTakenError",
    "Registry",
    "Transport",
    "check_name",
    "child_address",
]

_NAME = re.compile(r"^[A-Za-z0-9_.\-]+$")


class NameTakenError(MessagingError, ValueError):
    """An actor with that address already exists."""


def check_name(name: str) -> str:
    """A single address segment: letters, digits, ``_ . -``."""
    if not _NAME.match(name) or len(name) > 100:
        raise ValueError(f"invalid actor name {name!r}: use letters, digits, '_', '.', '-' (at most 100)")
    return name


def child_address(parent: str | None, name: str) -> str:
    """``parent/name``, or ``name`` at the root."""
    check_name(name)
    return f"{parent}/{name}" if parent else name


class DeliveryFailure(enum.StrEnum):
    """Why a message was not delivered or not handled: the one reason every
    dead letter carries (the actor layer calls it ``DeadLetterReason``).
    Endpoints and transports return the first three."""

    #: No endpoint has the address.
    UNKNOWN_RECIPIENT = "unknown-recipient"
    #: The recipient stopped (or is stopping) before handling it.
    STOPPED = "stopped"
    #: The recipient's mailbox stayed full past the sender's wait.
    MAILBOX_FULL = "mailbox-full"
    #: The message's handler crashed; the message is not retried.
    CRASHED_HANDLER = "crashed-handler"
    #: A reply arrived after its request had timed out, or for no request.
    UNEXPECTED_REPLY = "unexpected-reply"
    #: The payload exceeds the recipient's ``max_payload``.
    PAYLOAD_TOO_LARGE = "payload-too-large"
    #: A sender or header the recipient cannot take: not valid Unicode, or
    #: over its ``max_metadata`` / ``max_headers``.
    INVALID_MESSAGE = "invalid-message"


class Endpoint(Protocol):
    """Something that accepts envelopes: an actor's mailbox, a pending ask."""

    def deliver_nowait(self, envelope: Envelope) -> DeliveryFailure | None:
        """Accept now or say why not; never blocks."""
        ...

    async def deliver(self, envelope: Envelope) -> DeliveryFailure | None:
        """Accept, waiting for room; ``None`` once accepted."""
        ...


class Registry:
    """Unique addresses to endpoints."""

    def __init__(self) -> None:
        self._endpoints: dict[str, Endpoint] = {}

    def register(self, address: str, endpoint: Endpoint) -> None:
        if address in self._endpoints:
            raise NameTakenError(f"an actor named {address!r} already exists")
        self._endpoints[address] = endpoint

    def unregister(self, address: str) -> None:
        self._endpoints.pop(address, None)

    def lookup(self, address: str) -> Endpoint | None:
        return self._endpoints.get(address)

    def __contains__(self, address: object) -> bool:
        return address in self._endpoints

    def addresses(self) -> list[str]:
        return sorted(self._endpoints)


class Transport(Protocol):
    """Moves envelopes to their recipients."""

    def knows(self, address: str) -> bool:
        """Whether ``address`` currently names a reachable endpoint."""
        ...

    def send_nowait(self, envelope: Envelope, *, wait: float = 0.0) -> DeliveryFailure | None:
        """Deliver without waiting; the reason on failure.

        ``wait`` matters only for a recipient on another node, whose answer
        cannot come at once: the receiving side may wait that many seconds
        for mailbox room, and a failure after that is reported later (a dead
        letter on this node, and a callback to a requesting actor). For a
        recipient here a full mailbox fails at once, whatever ``wait``."""
        ...

    async def send(self, envelope: Envelope, *, timeout: float | None = None) -> DeliveryFailure | None:
        """Deliver, waiting up to ``timeout`` seconds for room; the reason on failure."""
        ...


class InProcessTransport:
    """Delivers to endpoints registered in this process."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry

    def knows(self, address: str) -> bool:
        return address in self.registry

    def send_nowait(self, envelope: Envelope, *, wait: float = 0.0) -> DeliveryFailure | None:
        endpoint = self.registry.lookup(envelope.recipient)
        if endpoint is None:
            return DeliveryFailure.UNKNOWN_RECIPIENT
        return endpoint.deliver_nowait(envelope)

    async def send(self, envelope: Envelope, *, timeout: float | None = None) -> DeliveryFailure | None:
        endpoint = self.registry.lookup(envelope.recipient)
        if endpoint is None:
            return DeliveryFailure.UNKNOWN_RECIPIENT
        failure = endpoint.deliver_nowait(envelope)
        if failure is not DeliveryFailure.MAILBOX_FULL or timeout == 0:
            return failure
        with anyio.move_on_after(timeout):
            return await endpoint.deliver(envelope)
        return DeliveryFailure.MAILBOX_FULL
