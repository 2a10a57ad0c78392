"""Durable mode over JetStream: the stream, the consumers, message ids and the outbox.

A durable actor receives through the stream ``<prefix>-durable`` (subjects
``P.dur.<address tokens>``) instead of core NATS. Its owning node binds a
durable pull consumer per actor (explicit acks, at most the actor's mailbox
size unacknowledged) and hands each message to the actor with a
:class:`Receipt`; the actor layer acks it only after the handler's SQLite
transaction, which also recorded the message id as processed, has committed.

Message ids (the ``Nats-Msg-Id`` header, which JetStream deduplicates on)
are scoped by who may speak for them::

    <sender address>|<digest of the input id>:<n>   the n-th send of a durable handler
    @<node>|<boot>-<seq>                            a host tell, a core-mode sender

The scope must match the envelope's sender (or ``@`` and the frame's origin
when there is no actor sender): one sender cannot poison another's ids. A
handler's n-th send gets the same id however often the handler is re-run, so
the stream drops the duplicates a re-run publishes.

Every durable actor's address is also declared in the KV bucket
``<prefix>-durables`` (no ttl: it outlives the owning node), which every node
watches, so senders publish to the stream even while the actor's node is down.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
from typing import TYPE_CHECKING, Protocol, cast, runtime_checkable

from ._leases import cancel_until_done, watch_entries
from ._wire import address_token, token_address

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Sequence

    from nats.aio.msg import Msg
    from nats.js.api import PubAck
    from nats.js.client import JetStreamContext
    from nats.js.kv import KeyValue

    from ._bridge import Incoming, NatsBridge
    from ._cluster import Cluster
    from ._envelope import Envelope
    from ._transport import DeliveryFailure

__all__ = [
    "MAX_ID",
    "MESSAGE_ID_HEADER",
    "Durable",
    "DurableEndpoint",
    "OutboxEntry",
    "OutboxStore",
    "Pruner",
    "Receipt",
    "as_durable",
    "check_id",
    "consumer_name",
    "derived_id",
]

log = logging.getLogger("wasmactors.cluster")

#: The header a durable handler finds its message's id in (its idempotency key).
MESSAGE_ID_HEADER = "wasmactors-message-id"
#: The longest message id accepted (an address of 255 plus the derived part).
MAX_ID = 320
#: Seconds a pull request lingers on the server waiting for messages.
_PULL_EXPIRES = 5.0


def consumer_name(address: str) -> str:
    """A durable actor's consumer: the same name on whichever node owns it."""
    return "d" + hashlib.blake2b(address.encode(), digest_size=12).hexdigest()


def derived_id(sender: str, input_id: str, n: int) -> str:
    """The id of the ``n``-th message a durable handler sent while handling ``input_id``."""
    return f"{sender}|{hashlib.blake2b(input_id.encode(), digest_size=12).hexdigest()}:{n}"


def id_scope(envelope: Envelope, origin: str) -> str:
    """Whose ids an envelope's message id must carry."""
    sender = envelope.sender
    if sender is None or sender.startswith("$ask/"):
        return "@" + origin
    return sender


def check_id(message_id: str, envelope: Envelope, origin: str) -> str | None:
    """What is wrong with a durable message's id, or ``None``."""
    if not message_id:
        return "no message id (Nats-Msg-Id)"
    if len(message_id) > MAX_ID or not message_id.isascii() or not message_id.isprintable():
        return f"invalid message id {message_id[:64]!r}"
    scope = id_scope(envelope, origin)
    if not message_id.startswith(scope + "|") or len(message_id) == len(scope) + 1:
        return f"forged message id {message_id[:64]!r}: not one of {scope!r}"
    sender = envelope.sender
    if sender is not None and sender.startswith("$ask/") and sender.split("/")[1:2] != [origin]:
        return f"forged sender {sender!r}: not an ask of node {origin!r}"
    return None


class Receipt:
    """A durable message's JetStream receipt: settle it once, after the commit."""

    __slots__ = ("_publish", "id", "reply")

    def __init__(self, message_id: str, reply: str, publish: Callable[[str, bytes], None]) -> None:
        #: The message id (``Nats-Msg-Id``).
        self.id = message_id
        self.reply = reply
        self._publish = publish

    def __repr__(self) -> str:
        return f"<Receipt {self.id}>"

    def ack(self) -> None:
        """Processed (or found processed): never deliver it again."""
        self._settle(b"+ACK")

    def term(self) -> None:
        """Refused for good (malformed, forged): never deliver it again."""
        self._settle(b"+TERM")

    def nak(self, delay: float = 0.0) -> None:
        """Not processed here: deliver it again (after ``delay`` seconds)."""
        self._settle(b"-NAK" + (b' {"delay": %d}' % int(delay * 1e9) if delay > 0 else b""))

    def _settle(self, what: bytes) -> None:
        if self.reply:
            self._publish(self.reply, what)
            self.reply = ""


@runtime_checkable
class DurableEndpoint(Protocol):
    """An actor that receives durably (the actor layer's durable cell)."""

    #: How many of its messages may be delivered and not yet acknowledged.
    durable_window: int

    def deliver_durable(self, envelope: Envelope, receipt: Receipt) -> DeliveryFailure | None:
        """Queue a durable message; the actor settles the receipt after its commit."""
        ...


def as_durable(endpoint: object) -> DurableEndpoint | None:
    """``endpoint`` if it receives durably (a protocol check mypy can follow
    across the unrelated ``Endpoint`` protocol)."""
    return cast("DurableEndpoint", endpoint) if hasattr(endpoint, "deliver_durable") else None


class OutboxEntry(Protocol):
    """A queued outgoing message (``runtime.OutboxRow``)."""

    @property
    def id(self) -> str: ...
    @property
    def subject(self) -> str: ...
    @property
    def data(self) -> bytes: ...
    @property
    def seq(self) -> int: ...


class OutboxStore(Protocol):
    """Where durable handlers' outgoing messages wait and their processed ids
    are kept (``runtime.SQLiteStorage``)."""

    #: Wall-clock seconds, as the store stamps processed ids.
    clock: Callable[[], float]

    def outbox(self, limit: int = 256) -> Sequence[OutboxEntry]: ...

    def outbox_done(self, seqs: Sequence[int]) -> None: ...

    def prune_processed(self, namespace: str, before: float, limit: int = 500) -> int: ...


class Pruner:
    """Which processed ids a node may forget, and from when (docs/cluster.md,
    "Pruning the processed table").

    An id is kept ``retention`` seconds after it was recorded, and the ids of
    an actor only once this node has consumed for it ``grace`` seconds
    (twice ``ack_wait``): a message committed before a crash whose ack was
    lost is redelivered when the consumer runs again, however long the node
    was down, so its id must outlive that first stretch of consuming. The
    ids of an actor not consumed here are kept (it may come back)."""

    def __init__(self, retention: float, grace: float) -> None:
        self.retention = retention
        self.grace = grace
        #: When each hosted actor was first seen consumed here (clock seconds).
        self._since: dict[str, float] = {}

    def due(self, hosted: Iterable[str], now: float) -> list[tuple[str, float]]:
        """``(namespace, forget ids recorded before this)`` for each actor due."""
        since = {address: self._since.get(address, now) for address in hosted}
        self._since = since
        cutoff = now - self.retention
        return [(address, cutoff) for address, start in sorted(since.items()) if now - start >= self.grace]


class Durable:
    """One node's side of durable mode: the stream, the declarations bucket,
    the consumers of the durable actors it owns, and publishing with ids.
    Everything here runs on the NATS loop (through the bridge)."""

    def __init__(self, bridge: NatsBridge, cluster: Cluster, enqueue: Callable[[Incoming], None]) -> None:
        self._bridge = bridge
        self._cluster = cluster
        #: Hands a fetched message to the receiving task (on the NATS loop).
        self._enqueue = enqueue
        prefix = cluster.prefix
        self.stream = f"{prefix}-durable"
        self.subjects = f"{prefix}.dur."
        self.bucket = f"{prefix}-durables"
        self._kv: KeyValue | None = None
        self._js: JetStreamContext | None = None
        #: Declared durable addresses (written by the watch only).
        self._declared: set[str] = set()
        self._synced = asyncio.Event()
        self._watch: asyncio.Task[None] | None = None
        self._consumers: dict[str, asyncio.Task[None]] = {}
        #: The durable actors this node consumes for (replaced whole, never
        #: changed in place: the receiving loop reads it from another thread).
        self.hosted: frozenset[str] = frozenset()
        #: The stream's deduplication window as the server has it (the first
        #: node to create the stream chose it), in seconds.
        self.dedup_window = cluster.dedup_window
        #: This run's part of host message ids.
        self.boot = os.urandom(6).hex()
        self._seq = 0

    # -- lifetime -------------------------------------------------------------------

    async def open(self) -> None:
        """Create or bind the stream and the bucket, and watch the bucket."""
        await self._bridge.call(self._open())

    async def _open(self) -> None:
        from nats.js.api import KeyValueConfig, StorageType, StreamConfig
        from nats.js.errors import BucketNotFoundError, NotFoundError

        js = self._js = self._bridge.client.jetstream()
        try:
            await js.stream_info(self.stream)
        except NotFoundError:
            config = StreamConfig(
                name=self.stream,
                subjects=[self.subjects + ">"],
                storage=StorageType.FILE,
                duplicate_window=self._cluster.dedup_window,
            )
            with contextlib.suppress(Exception):  # created meanwhile by another node: bind below
                await js.add_stream(config)
        info = await js.stream_info(self.stream)
        if info.config.duplicate_window:
            self.dedup_window = float(info.config.duplicate_window)
        try:
            self._kv = await js.key_value(self.bucket)
        except BucketNotFoundError:
            self._kv = await js.create_key_value(KeyValueConfig(bucket=self.bucket, history=1))
        self._watch = asyncio.get_running_loop().create_task(self._watching())
        await asyncio.wait_for(self._synced.wait(), 10)

    async def close(self) -> None:
        """Stop the consumers and the watch (the consumers stay on the server)."""
        await self._bridge.call(self._close())

    async def _close(self) -> None:
        tasks = {*self._consumers.values(), *([self._watch] if self._watch is not None else [])}
        self._consumers.clear()
        self.hosted = frozenset()
        await cancel_until_done(tasks)

    async def _watching(self) -> None:
        assert self._kv is not None
        watcher = await self._kv.watchall()

        def apply(entry: KeyValue.Entry) -> None:
            address = token_address(entry.key)
            if entry.operation in ("DEL", "PURGE") or entry.value is None:
                self._declared.discard(address)
            else:
                self._declared.add(address)

        try:
            await watch_entries(watcher, self._synced, apply)
        finally:
            with contextlib.suppress(Exception):  # the connection may be gone
                await watcher.stop()  # type: ignore[no-untyped-call]

    # -- actors ---------------------------------------------------------------------

    def is_durable(self, address: str) -> bool:
        """Whether ``address`` was declared durable (by any node, ever)."""
        return address in self._declared

    def subject(self, address: str) -> str:
        return self.subjects + address_token(address)

    async def declare(self, address: str, window: int) -> None:
        """Declare ``address`` durable and start consuming its messages here."""
        await self._bridge.call(self._declare(address, window))

    async def _declare(self, address: str, window: int) -> None:
        from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy

        assert self._kv is not None
        assert self._js is not None
        token = address_token(address)
        if address not in self._declared:
            await self._kv.put(token, self._cluster.node.encode())
            self._declared.add(address)
        name = consumer_name(address)
        config = ConsumerConfig(
            durable_name=name,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            filter_subject=self.subjects + token,
            ack_wait=self._cluster.ack_wait,
            max_ack_pending=window,
            max_deliver=-1,
        )
        await self._js.add_consumer(self.stream, config)
        old = self._consumers.pop(address, None)
        if old is not None:
            old.cancel()
        task = asyncio.get_running_loop().create_task(self._consuming(name, window))
        self._consumers[address] = task
        self.hosted = frozenset(self._consumers)

    async def undeclare(self, address: str) -> None:
        """``address`` is no longer durable (spawned again in core mode)."""

        async def delete() -> None:
            assert self._kv is not None
            await self._kv.delete(address_token(address))
            self._declared.discard(address)

        await self._bridge.call(delete())

    def stop(self, address: str) -> None:
        """Stop consuming for ``address`` (never waits; unacked messages are redelivered)."""

        def cancel() -> None:
            task = self._consumers.pop(address, None)
            if task is not None:
                task.cancel()
            self.hosted = frozenset(self._consumers)

        with contextlib.suppress(RuntimeError):  # closed
            self._bridge.run_soon(cancel)

    async def _consuming(self, name: str, window: int) -> None:
        """Pull from the consumer: one lingering request for up to ``window``
        messages at a time (the server also holds back past ``max_ack_pending``),
        the next as soon as it is fulfilled or expires. nats-py's ``fetch``
        waits out its whole timeout when the window is full, so it is not used."""
        from ._bridge import Incoming

        nc = self._bridge.client
        inbox = nc.new_inbox()
        request = json.dumps({"batch": window, "expires": int(_PULL_EXPIRES * 1e9)}).encode()
        subject = f"$JS.API.CONSUMER.MSG.NEXT.{self.stream}.{name}"
        done = asyncio.Event()
        left = window

        async def received(msg: Msg) -> None:
            nonlocal left
            headers = msg.headers or {}
            status = headers.get("Status", "")
            if status:  # 404 no messages, 408 expired, 409 ...: this request is over (100: heartbeat)
                if status != "100":
                    done.set()
                return
            self._enqueue(Incoming(msg.subject, msg.reply, msg.data, "", headers.get("Nats-Msg-Id", "")))
            left -= 1
            if left <= 0:
                done.set()

        sub = await nc.subscribe(inbox, cb=received)
        try:
            while True:
                done.clear()
                left = window
                with contextlib.suppress(Exception):  # a broken connection: nats-py reconnects
                    await nc.publish(subject, request, reply=inbox)
                with contextlib.suppress(TimeoutError):  # a request lost in a reconnect: ask again
                    await asyncio.wait_for(done.wait(), _PULL_EXPIRES * 2)
        finally:
            with contextlib.suppress(Exception):  # the connection may be gone
                await sub.unsubscribe()

    # -- publishing ----------------------------------------------------------------

    def fresh_id(self, scope: str) -> str:
        """A new id in ``scope`` for a message sent on no durable handler's
        behalf (unique: this run's random ``boot`` and a counter)."""
        self._seq += 1
        return f"{scope}|{self.boot}-{self._seq}"

    async def publish(self, subject: str, message_id: str, data: bytes) -> str | None:
        """Publish into the stream and wait for its ack: ``None``, or what went wrong."""
        return (await self.publish_many([(subject, message_id, data)]))[0]

    async def publish_many(self, messages: Sequence[tuple[str, str, bytes]]) -> list[str | None]:
        """Publish several at once (pipelined); one result per message."""
        return await self._bridge.call(self._publish_many(messages))

    async def _publish_many(self, messages: Sequence[tuple[str, str, bytes]]) -> list[str | None]:
        assert self._js is not None
        js = self._js
        futures: list[asyncio.Future[PubAck] | BaseException] = []
        for subject, message_id, data in messages:
            try:
                futures.append(await js.publish_async(subject, data, headers={"Nats-Msg-Id": message_id}))
            except Exception as exc:  # noqa: BLE001 - reported per message
                futures.append(exc)
        results: list[str | None] = []
        for future in futures:
            if isinstance(future, BaseException):
                results.append(f"{type(future).__name__}: {future}")
                continue
            try:
                await asyncio.wait_for(future, 10)
            except Exception as exc:  # noqa: BLE001 - reported per message
                results.append(f"{type(exc).__name__}: {exc}")
            else:
                results.append(None)
        return results
