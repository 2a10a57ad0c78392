"""References to actors: :class:`ActorRef` (bytes) and :class:`TypedRef` (values)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Generic, TypeVar

import anyio

from ..messaging import (
    Callback,
    Codec,
    DeliveryFailure,
    Endpoint,
    Envelope,
    PayloadDecodeError,
    Reply,
    Request,
    RequestError,
    RequestFailure,
    Tell,
)
from ..runtime import InvalidMessageError, Limits, PayloadTooLargeError, encode_metadata
from ._cell import ComponentCell
from ._errors import (
    ActorAppError,
    ActorCrashedError,
    ActorStoppedError,
    AskTimeoutError,
    MailboxFullError,
    UnknownActorError,
)

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ._observe import ActorStats
    from ._system import ActorSystem

__all__ = ["ActorRef", "TypedRef"]

#: Native actors take payloads of any size; their senders and headers are
#: still checked (they may leave the process one day).
_ANY_PAYLOAD = Limits(memory=1, fuel=1, timeout=1, max_payload=2**62)

Req = TypeVar("Req")
Resp = TypeVar("Resp")


class _AskSlot:
    """A temporary endpoint that receives the one reply to an ask."""

    __slots__ = ("event", "reply", "timed_out")

    def __init__(self) -> None:
        self.event = anyio.Event()
        self.reply: Reply | Callback | None = None
        self.timed_out = False

    def deliver_nowait(self, envelope: Envelope) -> DeliveryFailure | None:
        if self.timed_out or not isinstance(envelope, Reply | Callback):
            # Too late (an unexpected-reply dead letter), or not an answer at all.
            return DeliveryFailure.UNKNOWN_RECIPIENT
        if self.reply is None:
            self.reply = envelope
            self.event.set()
        return None

    def expire(self) -> None:
        """The ask's deadline passed (called by the system's deadline timer)."""
        if self.reply is None:
            self.timed_out = True
            self.event.set()

    async def deliver(self, envelope: Envelope) -> DeliveryFailure | None:
        return self.deliver_nowait(envelope)


class ActorRef:
    """A handle to an actor by address. Cheap; valid across restarts."""

    __slots__ = ("address", "system")

    def __init__(self, system: ActorSystem, address: str) -> None:
        self.system = system
        #: The actor's address.
        self.address = address

    def __repr__(self) -> str:
        return f"ActorRef({self.address!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorRef) and other.address == self.address and other.system is self.system

    def __hash__(self) -> int:
        return hash(self.address)

    def _endpoint(
        self, payload: bytes, sender: str | None, headers: Sequence[tuple[str, str]]
    ) -> Endpoint | None:
        """The recipient's endpoint, looked up once (``None``: unknown). Untrusted
        input is checked here, in the caller, before anything is queued: the
        payload's type and size, the sender's and headers' encoding and size."""
        endpoint = self.system.registry.lookup(self.address)
        limits = endpoint.limits if isinstance(endpoint, ComponentCell) else _ANY_PAYLOAD
        try:
            encode_metadata(limits, payload, sender, headers)
        except InvalidMessageError as exc:
            raise type(exc)(f"message to {self.address}: {exc}") from None
        return endpoint

    async def tell(
        self, payload: bytes, *, sender: str | None = None, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Queue a message, waiting for mailbox space (backpressure)."""
        endpoint = self._endpoint(payload, sender, headers)
        envelope = Tell(recipient=self.address, payload=payload, sender=sender, headers=tuple(headers))
        system = self.system
        if not system._direct:
            _raise_for(self.address, await system.transport.send(envelope, timeout=None))
            return
        # In process: straight into the mailbox, with the one lookup above.
        if endpoint is None:
            _raise_for(self.address, DeliveryFailure.UNKNOWN_RECIPIENT)
            return
        failure = endpoint.deliver_nowait(envelope)
        if failure is DeliveryFailure.MAILBOX_FULL:
            failure = await endpoint.deliver(envelope)
        _raise_for(self.address, failure)

    def tell_nowait(
        self, payload: bytes, *, sender: str | None = None, headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Queue a message now, or raise :class:`MailboxFullError`."""
        endpoint = self._endpoint(payload, sender, headers)
        envelope = Tell(recipient=self.address, payload=payload, sender=sender, headers=tuple(headers))
        if not self.system._direct:
            _raise_for(self.address, self.system.transport.send_nowait(envelope))
        elif endpoint is None:
            _raise_for(self.address, DeliveryFailure.UNKNOWN_RECIPIENT)
        else:
            _raise_for(self.address, endpoint.deliver_nowait(envelope))

    async def ask(self, payload: bytes, *, timeout: float, headers: Sequence[tuple[str, str]] = ()) -> bytes:
        """Send a request and wait for the reply bytes (``b""`` when the handler
        returned none). Raises :class:`AskTimeoutError`, :class:`ActorAppError`,
        :class:`ActorCrashedError`, :class:`ActorStoppedError` or
        :class:`UnknownActorError`."""
        system = self.system
        ask_id = next(system._ask_ids)
        reply_to = f"$ask/{ask_id}"
        slot = _AskSlot()
        endpoint = self._endpoint(payload, reply_to, headers)
        envelope = Request(
            recipient=self.address,
            payload=payload,
            sender=reply_to,
            correlation_id=ask_id,
            headers=tuple(headers),
        )
        system.registry.register(reply_to, slot)
        # One entry in the system's deadline heap instead of a fail_after per ask.
        deadline = system._deadlines.after(timeout, slot.expire)
        try:
            # A network transport reports delivery once the receiver acks it.
            failure: DeliveryFailure | None = DeliveryFailure.MAILBOX_FULL
            if system._direct:
                # An idle component takes the ask straight to a worker.
                direct = type(endpoint) is ComponentCell and endpoint.handle_now(envelope)
                failure = None if direct else system.transport.send_nowait(envelope)
            if failure is DeliveryFailure.MAILBOX_FULL:
                with anyio.move_on_after(timeout) as waiting:
                    failure = await system.transport.send(
                        envelope, timeout=None if system._direct else timeout
                    )
                if waiting.cancelled_caught:
                    raise AskTimeoutError(f"{self.address} had no mailbox space within {timeout:g} s")
            _raise_for(self.address, failure)
            await slot.event.wait()
        finally:
            deadline.cancel()
            system.registry.unregister(reply_to)
        reply = slot.reply
        if reply is None:
            raise AskTimeoutError(f"{self.address} did not answer within {timeout:g} s")
        if reply.error is not None:
            raise _error_for(self.address, reply.error)
        return reply.payload

    def stats(self) -> ActorStats:
        """A snapshot of the actor's counters."""
        return self.system.stats(self.address)

    def typed(self, request: Codec[Req], reply: Codec[Resp]) -> TypedRef[Req, Resp]:
        """This actor with typed messages: values are encoded with ``request``
        and replies decoded (and validated) with ``reply``::

            counter = ref.typed(Codec(Command), Codec(Total))
            total = await counter.ask(Add(5), timeout=1.0)  # a Total
        """
        return TypedRef(self, request, reply)


class TypedRef(Generic[Req, Resp]):
    """An :class:`ActorRef` that speaks values instead of bytes. Encoding
    errors raise :class:`~wasmactors.messaging.PayloadEncodeError` before
    anything is sent; a reply that fails validation raises
    :class:`~wasmactors.messaging.PayloadDecodeError` naming the actor."""

    __slots__ = ("ref", "reply_codec", "request_codec")

    def __init__(self, ref: ActorRef, request: Codec[Req], reply: Codec[Resp]) -> None:
        self.ref = ref
        self.request_codec = request
        self.reply_codec = reply

    def __repr__(self) -> str:
        return (
            f"TypedRef({self.ref.address!r}, {self.request_codec.type_name} -> {self.reply_codec.type_name})"
        )

    @property
    def address(self) -> str:
        return self.ref.address

    async def tell(self, message: Req, *, headers: Sequence[tuple[str, str]] = ()) -> None:
        await self.ref.tell(self.request_codec.encode(message), headers=headers)

    def tell_nowait(self, message: Req, *, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.ref.tell_nowait(self.request_codec.encode(message), headers=headers)

    async def ask(self, message: Req, *, timeout: float, headers: Sequence[tuple[str, str]] = ()) -> Resp:
        payload = await self.ref.ask(self.request_codec.encode(message), timeout=timeout, headers=headers)
        try:
            return self.reply_codec.decode(payload)
        except PayloadDecodeError as exc:
            raise PayloadDecodeError(f"reply from {self.ref.address}: {exc}") from exc


def _raise_for(address: str, failure: DeliveryFailure | None) -> None:
    if failure is None:
        return
    if failure is DeliveryFailure.UNKNOWN_RECIPIENT:
        raise UnknownActorError(f"no actor at {address!r}")
    if failure is DeliveryFailure.MAILBOX_FULL:
        raise MailboxFullError(f"{address}'s mailbox is full")
    if failure is DeliveryFailure.PAYLOAD_TOO_LARGE:  # checked by the receiving node
        raise PayloadTooLargeError(f"message to {address}: the payload exceeds its limit")
    if failure is DeliveryFailure.INVALID_MESSAGE:
        raise InvalidMessageError(f"message to {address}: refused by its node")
    raise ActorStoppedError(f"{address} is stopped")


def _error_for(address: str, error: RequestError) -> Exception:
    reason = error.reason
    if reason is RequestFailure.APP_ERROR:
        return ActorAppError(address, error.detail)
    if reason is RequestFailure.CRASHED:
        return ActorCrashedError(address, error.detail, error.message)
    if reason is RequestFailure.UNKNOWN_RECIPIENT:
        return UnknownActorError(f"no actor at {address!r}")
    if reason is RequestFailure.TIMEOUT:
        return AskTimeoutError(f"{address} timed out")
    if reason is RequestFailure.MAILBOX_FULL:
        return MailboxFullError(f"{address}'s mailbox is full")
    return ActorStoppedError(f"{address} stopped before answering")
