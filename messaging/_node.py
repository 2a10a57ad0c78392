"""The cluster transport: local addresses in process, the others over NATS.

A :class:`ClusterTransport` is a :class:`~wasmactors.messaging.Transport`:
the actor layer hands it envelopes exactly as it hands them to the
in-process transport. For an address registered here it delivers in process;
for any other it publishes it to the address's subject, in a
:class:`~._wire.Batch` with the others sent there in the same turn of the
event loop, with a reply subject unique to the batch
(``P.ack.<node>.<batch>``), on which the receiving node answers each one
(an :class:`~._wire.AckItem`, several to a message) once it is in the
recipient's mailbox (or says why not). So a remote delivery fails with the
same :class:`DeliveryFailure` as a local one:

* nobody subscribes the address: NATS answers ``503 no responders`` at once
  (``unknown-recipient``);
* the mailbox is full: the receiver waits for room as long as the sender
  said it would (``mailbox-full`` after that). Frames waiting for one
  recipient's room queue in arrival order (a backlog per recipient, at most
  ``max_in_flight`` frames each), and each one's wait starts when it reaches
  the head, as a local sender blocked on a full mailbox waits for each
  message in turn: so a pipeline across nodes is as lossless as in process;
* the actor stopped, the payload is too large, the metadata invalid: the
  receiver's own check, the same as in process.

Messages in flight (published, not yet acknowledged) to one node are bounded
by ``max_in_flight``: that is the backpressure across nodes (replies are not
counted: they answer requests already bounded). A message whose ack does not
come within the receiver's wait plus ``ack_timeout``, while nothing at all
is heard from its node for as long (the node died, the network split), is
settled as ``stopped``; a node that keeps acking a backlog is alive, so a
message deep in a backlog is not given up while it moves.

Replies to host asks go to the asking node's inbox: an ask's ``$ask/N``
sender leaves the node as ``$ask/<node>/N``.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import itertools
import logging
import math
import random
import time
from collections import Counter
from typing import TYPE_CHECKING, NamedTuple, Protocol

import anyio
import msgspec

from ._bridge import NatsBridge
from ._durable import Durable, as_durable
from ._durable_node import DurablePaths
from ._envelope import Callback, Envelope, Reply, Request, Tell
from ._errors import ClusterError
from ._leases import Leases
from ._transport import DeliveryFailure, Registry
from ._wire import (
    ACK_ALL,
    MAX_BATCH,
    MAX_DETAIL,
    Ack,
    AckItem,
    Frame,
    Item,
    WireError,
    address_token,
    batch_overhead,
    decode_acks,
    decode_batch,
    encode_acks,
    encode_batch,
    encode_item,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from anyio.abc import TaskGroup

    from ._bridge import Incoming
    from ._cluster import Cluster
    from ._durable import OutboxStore
    from ._transport import Endpoint

__all__ = ["ClusterSink", "ClusterTransport"]

log = logging.getLogger("wasmactors.cluster")

#: The address prefix of a host ask's reply endpoint.
_ASK = "$ask/"


def _is_token(name: str) -> bool:
    try:
        address_token(name)
    except ValueError:
        return False
    return "/" not in name


#: Frames waiting for room in all of a node's backlogs, at most, in multiples
#: of ``max_in_flight`` (each backlog alone holds at most ``max_in_flight``).
_BACKLOGS = 4
#: Frames whose sender is being looked up in the bucket at once, at most.
_MAX_VERIFYING = 256
#: Items a node puts in one batch, at most (a receiver takes up to ``MAX_BATCH``).
_BATCH = 256

#: Where a frame's ack goes: its batch's reply subject (``""``: nowhere) and its index there.
_AckTo = tuple[str, int]


class ClusterSink(Protocol):
    """What the transport needs from the actor layer."""

    def dead_letter(self, envelope: Envelope, reason: DeliveryFailure, detail: str) -> None:
        """Record an undeliverable or rejected message."""
        ...

    def check(self, endpoint: Endpoint, envelope: Envelope) -> tuple[DeliveryFailure, str] | None:
        """The recipient's own limits on an envelope from the wire (size, metadata)."""
        ...

    def request_failed(self, request: Request, failure: DeliveryFailure, detail: str) -> None:
        """A request sent without waiting was not delivered: answer its sender."""
        ...


class _InFlight:
    __slots__ = ("batch", "deadline", "detail", "envelope", "failure", "limit", "node", "patience", "waiter")

    def __init__(
        self, envelope: Envelope, node: str, deadline: float, patience: float, waiter: _Waiter | None
    ) -> None:
        self.envelope = envelope
        self.node = node
        #: Settled as lost past this time, if its node has also been silent for ``patience``.
        self.deadline = deadline
        self.patience = patience
        #: Settled as lost past this time, whatever its node does.
        self.limit = math.inf
        self.waiter = waiter
        self.failure: DeliveryFailure | None = None
        self.detail = ""
        #: The batch it went in (0: not published yet).
        self.batch = 0


class _Waiter(Protocol):
    """What a sender awaiting its ack waits on (an asyncio future or a trio
    event: the ack path's only allocation per message, so not anyio's
    wrapper, which costs a backend lookup each)."""

    def set(self) -> None: ...

    def wait(self) -> Awaitable[object]: ...


class _FutureWaiter:
    __slots__ = ("_future",)

    def __init__(self, future: asyncio.Future[None]) -> None:
        self._future = future

    def set(self) -> None:
        if not self._future.done():  # cancelled with its waiting task
            self._future.set_result(None)

    def wait(self) -> asyncio.Future[None]:
        return self._future


def _waiters() -> Callable[[], _Waiter]:
    """A factory of waiters for the running event loop."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:  # not asyncio: trio
        import trio

        return trio.Event
    return lambda: _FutureWaiter(loop.create_future())


class _Sent:
    """A batch published and not yet fully answered."""

    __slots__ = ("left", "seqs")

    def __init__(self, seqs: list[int]) -> None:
        #: The sequence number of each item, by index.
        self.seqs = seqs
        #: Items not settled yet.
        self.left = len(seqs)


class _Waiting(NamedTuple):
    """A frame waiting in a recipient's backlog for mailbox room."""

    endpoint: Endpoint
    envelope: Envelope
    wait: float
    #: The event loop's time past which it is refused however long it waited at the head.
    expires: float
    to: _AckTo


class ClusterTransport(DurablePaths):
    """One node's transport (see the module docstring)."""

    def __init__(self, cluster: Cluster, registry: Registry, sink: ClusterSink) -> None:
        self.cluster = cluster
        self.node = cluster.node
        self.registry = registry
        self._sink = sink
        prefix = cluster.prefix
        me = address_token(self.node)
        self._act = f"{prefix}.act."
        self._node_prefix = f"{prefix}.node."
        self._inbox = f"{prefix}.node.{me}"
        self._acks = f"{prefix}.ack.{me}."
        self._bridge = NatsBridge()
        self._pings = f"{prefix}.ping."
        self.leases = Leases(
            self._bridge,
            bucket=f"{prefix}-names",
            node=self.node,
            lease=cluster.lease,
            ping=lambda node: self._pings + address_token(node),
            lost=lambda address: self._bridge.unsubscribe(self._act + address_token(address)),
            changed=lambda: self._bridge.notify(self._owners_changed),
        )
        self._dur = f"{prefix}.dur."
        #: Durable mode: the stream, the declarations, the consumers (see ``_durable.py``).
        self.durable = Durable(self._bridge, cluster, self._bridge.enqueue)
        #: Durable publishes not yet acknowledged by the stream (``tell_nowait``'s bound).
        self._durable_load = 0
        self._outbox_wake = anyio.Event()
        self._owners: anyio.Event | None = None
        # Numbers from a random start: a late ack for a batch of this node's
        # previous run (the same name, the same ack subjects) names none of this run's.
        self._seq = itertools.count(random.SystemRandom().randrange(1, 1 << 48))
        self._pending: dict[int, _InFlight] = {}
        #: Host asks' requests in flight: ``$ask/N`` -> their sequence number.
        self._asking: dict[str, int] = {}
        #: Batches published and not fully answered, by number.
        self._sent: dict[int, _Sent] = {}
        #: Items to publish at the end of this turn of the loop, by subject: (seq, encoded item).
        self._outgoing: dict[str, list[tuple[int, bytes]]] = {}
        #: Acks to publish at the end of this turn, by reply subject.
        self._acks_out: dict[str, list[AckItem]] = {}
        self._flushing = False
        self._acks_due = False
        #: Batches and acks leave (from ``start`` until the connection closes).
        self._sending = False
        self._waiter: Callable[[], _Waiter] = anyio.Event
        self._overhead = batch_overhead(self.node)
        self._load: Counter[str] = Counter()
        self._room: dict[str, anyio.Event] = {}
        #: When an ack last came from each node (liveness for the expiry).
        self._heard: dict[str, float] = {}
        #: Frames from the wire waiting for their recipient's mailbox room, in order.
        self._backlogs: dict[str, collections.deque[_Waiting]] = {}
        #: Frames in all backlogs, bounded node-wide.
        self._waiting = 0
        #: Senders being looked up in the bucket now (see ``_on_frame``).
        self._verifying = 0
        self._tg: TaskGroup | None = None
        self._started = False
        #: Called on the caller's loop after the bucket's names changed, and
        #: periodically (a lapsed lease changes nothing in the bucket).
        self.names_changed: Callable[[], None] | None = None
        #: Counters for ``statistics()``.
        self.counts: Counter[str] = Counter()

    # -- lifetime ---------------------------------------------------------------

    async def start(self, tg: TaskGroup, *, outbox: OutboxStore | None = None) -> None:
        """Connect, join the bucket and subscribe this node's inboxes; the
        receiving and expiry tasks run in ``tg``. ``outbox``: where durable
        actors' outgoing messages wait (the node's SQLite file); its publisher
        starts by sending what a previous run left."""
        cluster = self.cluster
        me = address_token(self.node)
        try:
            await self._bridge.connect(cluster.servers, **cluster.connect_options())
        except Exception as exc:
            with anyio.CancelScope(shield=True):
                await self._bridge.aclose(drain=False)
            raise ClusterError(f"cannot connect to {', '.join(cluster.servers)}: {exc}") from exc
        try:
            await self.leases.open()
            await self.durable.open()
            await self._bridge.answer_pings(self._pings + me)
            await self._bridge.subscribe(self._inbox)
            await self._bridge.subscribe(self._acks + "*")
        except BaseException:
            with anyio.CancelScope(shield=True):
                await self._bridge.aclose(drain=False)
            raise
        self._tg = tg
        self._sending = True
        self._waiter = _waiters()
        if not self._bridge.handle_inline(self._received):
            tg.start_soon(self._receiving)
        tg.start_soon(self._expiring)
        if outbox is not None:
            tg.start_soon(self._publishing_outbox, outbox)
        self._started = True

    async def aclose(self, *, release: bool = True) -> None:
        """Leave the cluster: release this node's names, flush, disconnect."""
        if not self._started:
            return
        self._started = False
        for backlog in self._backlogs.values():
            while backlog:
                self._ack(backlog.popleft().to, Ack(DeliveryFailure.STOPPED, "the node left the cluster"))
        self._waiting = 0
        self._flush()
        with anyio.CancelScope(shield=True):
            try:
                with contextlib.suppress(Exception):  # a broken connection: the consumers end with it
                    await self.durable.close()
                await self.leases.close(release=release)
            finally:
                self._flush()  # what the receiving task answered or sent meanwhile
                self._sending = False
                await self._bridge.aclose(drain=release)
        for seq in list(self._pending):  # never acked: the waiting sender or a dead letter says so
            self._settle(seq, DeliveryFailure.STOPPED, "the node left the cluster", heard=False)
        self._asking.clear()
        self._sent.clear()
        self._outgoing.clear()
        self._acks_out.clear()

    # -- names -------------------------------------------------------------------------

    async def claim(self, address: str) -> None:
        """Own ``address`` in the cluster (``NameTakenError`` if another node does)."""
        await self.leases.claim(address)

    async def announce(self, address: str) -> None:
        """Start receiving for ``address`` (registered here); returns once
        subscribed. A durable actor is declared and its consumer bound too."""
        await self._bridge.subscribe(self._act + address_token(address))
        endpoint = as_durable(self.registry.lookup(address))
        if endpoint is not None:
            await self.durable.declare(address, endpoint.durable_window)
        elif self.durable.is_durable(address):
            await self.durable.undeclare(address)

    def release(self, address: str) -> None:
        """Stop receiving for ``address`` and free its name (never waits)."""
        if self.leases.owns(address):
            # The name is free only once this node no longer receives for it.
            subject = self._act + address_token(address)
            self.durable.stop(address)
            self.leases.release(address, after=self._bridge.unsubscribe_here(subject))

    def _owners_changed(self) -> None:
        if self._owners is not None:
            self._owners.set()
        if self.names_changed is not None:
            self.names_changed()

    async def wait_owned(self, addresses: list[str]) -> None:
        """Wait until every address has an owner somewhere in the cluster."""
        while True:
            if self._owners is None or self._owners.is_set():
                self._owners = anyio.Event()
            if all(a in self.registry or self.leases.owner(a) is not None for a in addresses):
                return
            await self._owners.wait()

    # -- the Transport protocol -------------------------------------------------------

    def knows(self, address: str) -> bool:
        """Local addresses, and any address another node may own: the sending
        node cannot tell one that does not exist from one claimed a moment
        ago elsewhere, so the receiving side decides (no responders: an
        ``unknown-recipient`` failure, dead letter or callback)."""
        return address in self.registry or self._route(address) is not None

    def send_nowait(self, envelope: Envelope, *, wait: float = 0.0) -> DeliveryFailure | None:
        if self.durable.is_durable(envelope.recipient) and isinstance(envelope, Tell | Request):
            return self._send_durable_nowait(envelope)
        endpoint = self.registry.lookup(envelope.recipient)
        if endpoint is not None:
            return endpoint.deliver_nowait(envelope)
        route = self._route(envelope.recipient)
        if route is None:
            return DeliveryFailure.UNKNOWN_RECIPIENT
        subject, node = route
        if self._load[node] >= self.cluster.max_in_flight and not isinstance(envelope, Reply):
            return DeliveryFailure.MAILBOX_FULL
        wait = min(wait, self.cluster.max_wait) if wait > 0 else 0.0
        sent = self._publish(envelope, subject, node, wait, None)
        return sent if isinstance(sent, DeliveryFailure) else None

    async def send(self, envelope: Envelope, *, timeout: float | None = None) -> DeliveryFailure | None:
        if self.durable.is_durable(envelope.recipient) and isinstance(envelope, Tell | Request):
            return await self._send_durable(envelope)
        endpoint = self.registry.lookup(envelope.recipient)
        if endpoint is not None:
            failure = endpoint.deliver_nowait(envelope)
            if failure is not DeliveryFailure.MAILBOX_FULL or timeout == 0:
                return failure
            with anyio.move_on_after(timeout):
                return await endpoint.deliver(envelope)
            return DeliveryFailure.MAILBOX_FULL
        route = self._route(envelope.recipient)
        if route is None:
            return DeliveryFailure.UNKNOWN_RECIPIENT
        subject, node = route
        limit = self.cluster.max_in_flight
        if self._load[node] >= limit:
            if timeout == 0:
                return DeliveryFailure.MAILBOX_FULL
            with anyio.move_on_after(timeout):
                while self._load[node] >= limit:
                    await self._room.setdefault(node, anyio.Event()).wait()
            if self._load[node] >= limit:
                return DeliveryFailure.MAILBOX_FULL
        wait = self.cluster.max_wait if timeout is None else min(timeout, self.cluster.max_wait)
        sent = self._publish(envelope, subject, node, wait, self._waiter())
        if isinstance(sent, DeliveryFailure):
            return sent
        assert sent.waiter is not None
        await sent.waiter.wait()
        return sent.failure

    # -- sending --------------------------------------------------------------------

    def _route(self, recipient: str) -> tuple[str, str] | None:
        """The subject and the owning node (``""``: not known) for a remote address."""
        if recipient.startswith(_ASK):
            node = self._ask_node(recipient)
            if node is None:
                return None
            try:
                return self._node_prefix + address_token(node), node
            except ValueError:  # not a node name (from the wire): nowhere to send it
                return None
        try:
            subject = self._act + address_token(recipient)
        except ValueError:
            return None
        return subject, self.leases.owner(recipient) or ""

    def _ask_node(self, address: str) -> str | None:
        parts = address.split("/")
        if len(parts) != 3 or parts[1] == self.node or not parts[1] or not parts[2].isdigit():
            return None
        return parts[1]

    def _wire(self, envelope: Envelope) -> Envelope:
        sender = envelope.sender
        if sender is not None and sender.startswith(_ASK) and sender.count("/") == 1:
            # A host ask's reply endpoint, qualified with this node for the way back.
            return msgspec.structs.replace(envelope, sender=f"{_ASK}{self.node}/{sender[len(_ASK) :]}")
        return envelope

    def _publish(
        self, envelope: Envelope, subject: str, node: str, wait: float, waiter: _Waiter | None
    ) -> DeliveryFailure | _InFlight:
        item = encode_item(Item(wait, self._wire(envelope)))
        if len(item) + self._overhead > self.cluster.max_frame:
            return DeliveryFailure.PAYLOAD_TOO_LARGE
        seq = next(self._seq)
        patience = wait + self.cluster.ack_timeout
        now = time.monotonic()
        entry = _InFlight(envelope, node, now + patience, patience, waiter)
        # However alive its node looks, no entry outlives the longest any
        # receiver holds a frame (its backlog's bound) plus the ack's way back.
        entry.limit = now + self.cluster.max_wait + self.cluster.ack_timeout
        self._pending[seq] = entry
        if type(envelope) is Request and envelope.sender is not None and envelope.sender.startswith(_ASK):
            self._asking[envelope.sender] = seq
        self._load[node] += 1
        self.counts["sent"] += 1
        queue = self._outgoing.get(subject)
        if queue is None:
            queue = self._outgoing[subject] = []
        queue.append((seq, item))
        self._flush_soon()
        return entry

    def _flush_soon(self) -> None:
        if not self._flushing and self._sending:
            self._flushing = True
            try:
                self._bridge.publish_soon(self._flushed)
            except RuntimeError:  # the loop has ended: nothing more leaves
                self._flushing = False

    def _flushed(self) -> None:
        try:
            self._flush()
        except Exception:  # a callback must not raise into the event loop
            log.exception("cluster: failed to publish a batch")

    def _flush(self) -> None:
        """Publish this turn's items, a batch per subject (split to keep each
        within ``max_frame`` and ``_BATCH`` items), and this turn's acks."""
        self._flushing = False
        outgoing, self._outgoing = self._outgoing, {}
        limit = self.cluster.max_frame
        for subject, items in outgoing.items():
            start = 0
            while start < len(items):
                size, end = self._overhead, start
                while end < len(items) and end - start < _BATCH and size + len(items[end][1]) <= limit:
                    size += len(items[end][1])
                    end += 1
                end = max(end, start + 1)  # each item fits alone (checked when queued)
                chunk = items[start:end]
                start = end
                live = [(seq, item) for seq, item in chunk if seq in self._pending]
                if not live:
                    continue
                number = next(self._seq)
                for seq, _ in live:
                    self._pending[seq].batch = number
                self._sent[number] = _Sent([seq for seq, _ in live])
                data = encode_batch(self.node, [item for _, item in live])
                self._bridge.publish(subject, data, reply=f"{self._acks}{number}")
        acks, self._acks_out = self._acks_out, {}
        for reply, answers in acks.items():
            for start in range(0, len(answers), MAX_BATCH):
                self._bridge.publish(reply, encode_acks(answers[start : start + MAX_BATCH]))

    def _settle(self, seq: int, failure: DeliveryFailure | None, detail: str, *, heard: bool = True) -> None:
        entry = self._pending.pop(seq, None)
        if entry is None:
            return  # a late or forged ack
        asker = entry.envelope.sender
        if asker is not None and self._asking.get(asker) == seq:
            del self._asking[asker]
        node = entry.node
        sent = self._sent.get(entry.batch)
        if sent is not None:
            sent.left -= 1
            if not sent.left:
                del self._sent[entry.batch]
        if heard:
            self._heard[node] = time.monotonic()
        self._load[node] -= 1
        if not self._load[node]:
            del self._load[node]
            self._heard.pop(node, None)  # nothing in flight there: nothing to keep alive
        room = self._room.pop(node, None)
        if room is not None:
            room.set()
        if failure is not None:
            self.counts[f"failed:{failure.value}"] += 1
        if entry.waiter is not None:
            entry.failure, entry.detail = failure, detail
            entry.waiter.set()
            return
        if failure is None:
            return
        envelope = entry.envelope
        if (
            failure is DeliveryFailure.UNKNOWN_RECIPIENT
            and isinstance(envelope, Reply)
            and envelope.recipient.startswith(_ASK)
        ):
            failure, detail = DeliveryFailure.UNEXPECTED_REPLY, "an ask's reply after its timeout"
        self._sink.dead_letter(envelope, failure, detail or f"remote delivery failed ({failure})")
        if isinstance(envelope, Request):
            self._sink.request_failed(envelope, failure, detail)

    async def _expiring(self) -> None:
        """Settle messages whose ack is overdue while their node is silent
        (it died or is unreachable)."""
        period = min(self.cluster.ack_timeout / 4, 1.0)
        while True:
            await anyio.sleep(period)
            if self.names_changed is not None:  # leases lapse without a change in the bucket
                self.names_changed()
            now = time.monotonic()
            heard = self._heard
            overdue = [
                seq
                for seq, entry in self._pending.items()
                if entry.limit <= now
                or (entry.deadline <= now and heard.get(entry.node, -math.inf) + entry.patience <= now)
            ]
            for seq in overdue:
                lost = "no delivery ack: the node is unreachable"
                self._settle(seq, DeliveryFailure.STOPPED, lost, heard=False)

    # -- receiving ----------------------------------------------------------------

    async def _receiving(self) -> None:
        while True:
            for incoming in await self._bridge.inbound():
                self._received(incoming)

    def _received(self, incoming: Incoming) -> None:
        try:
            self._dispatch(incoming)
        except Exception:  # a bug must cost this message, not the node
            log.exception("cluster: failed to handle a message on %s", incoming.subject)

    def _dispatch(self, incoming: Incoming) -> None:
        subject = incoming.subject
        if subject.startswith(self._acks):
            self._on_ack(incoming)
        elif subject.startswith(self._act):
            self._on_batch(incoming, subject[len(self._act) :], for_ask=False)
        elif subject == self._inbox:
            self._on_batch(incoming, "", for_ask=True)
        elif subject.startswith(self._dur):
            self._on_durable(incoming)

    def _on_ack(self, incoming: Incoming) -> None:
        try:
            sent = self._sent.get(int(incoming.subject[len(self._acks) :]))
        except ValueError:
            return
        if sent is None:
            return  # a late or forged ack
        seqs = sent.seqs
        if incoming.status == "503":  # the server's answer: says nothing of the node being alive
            unknown = DeliveryFailure.UNKNOWN_RECIPIENT
            for seq in seqs:
                self._settle(seq, unknown, "no node serves that address", heard=False)
            return
        try:
            acks = decode_acks(incoming.data)
        except WireError as exc:
            log.warning("cluster: %s on %s", exc, incoming.subject)
            return
        # An honest answer names each item once: more is a peer's flood, not read.
        for ack in acks[: len(seqs) + 1]:
            if 0 <= ack.index < len(seqs):
                self._settle(seqs[ack.index], ack.failure, ack.detail)
            elif ack.index == ACK_ALL:
                for seq in seqs:
                    self._settle(seq, ack.failure, ack.detail)
                return
            if not sent.left:
                return

    def _on_batch(self, incoming: Incoming, token: str, *, for_ask: bool) -> None:
        try:
            batch = decode_batch(incoming.data, self.cluster.max_frame)
        except WireError as exc:
            self.counts["received"] += 1
            to = (incoming.reply, ACK_ALL)
            self._reject(to, token, DeliveryFailure.INVALID_MESSAGE, str(exc), data=incoming.data)
            return
        self.counts["received"] += len(batch.items)
        origin, reply = batch.origin, incoming.reply
        for index, item in enumerate(batch.items):
            try:
                frame = Frame(origin, item.wait, item.envelope)
                self._on_frame((reply, index), frame, token, for_ask=for_ask)
            except Exception:  # a bug must cost this message, not the rest of the batch
                log.exception("cluster: failed to handle a message on %s", incoming.subject)

    def _on_frame(self, to: _AckTo, frame: Frame, token: str, *, for_ask: bool) -> None:
        envelope = frame.envelope
        problem: str | None
        if isinstance(envelope, Callback):
            problem = "a callback never crosses nodes"
        elif for_ask:
            problem = self._check_ask_reply(envelope)
        else:
            problem = self._check_recipient(envelope, token)
        if problem is None:
            sender = envelope.sender
            unseen = sender is not None and not sender.startswith(_ASK) and self.leases.owner(sender) is None
            if unseen and self._tg is not None and self._verifying < _MAX_VERIFYING:
                # Perhaps a name claimed a moment ago that the watch has not
                # shown yet: ask the bucket before calling the sender forged
                # (a bounded number at once: a flood of forged senders is
                # refused, not turned into as many lookups).
                self._verifying += 1
                self._tg.start_soon(self._verify_then_deliver, to, token, frame, for_ask)
                return
            problem = self._check_sender(envelope, frame.origin)
        if problem is not None:
            self._reject(to, token, DeliveryFailure.INVALID_MESSAGE, problem, envelope)
            return
        self._deliver(to, frame, for_ask=for_ask)

    async def _verify_then_deliver(self, to: _AckTo, token: str, frame: Frame, for_ask: bool) -> None:
        envelope = frame.envelope
        assert envelope.sender is not None
        try:
            owner = await self.leases.lookup(envelope.sender)
        except Exception as exc:  # noqa: BLE001 - the bucket did not answer: the sender stays unverified
            problem = f"cannot verify sender {envelope.sender!r}: {type(exc).__name__}: {exc}"[:300]
            self._reject(to, token, DeliveryFailure.INVALID_MESSAGE, problem, envelope)
            return
        finally:
            self._verifying -= 1
        if owner != frame.origin:
            problem = f"forged sender {envelope.sender!r}: owned by {owner or 'nobody'}, not {frame.origin!r}"
            self._reject(to, token, DeliveryFailure.INVALID_MESSAGE, problem, envelope)
            return
        self._deliver(to, frame, for_ask=for_ask)

    def _deliver(self, to: _AckTo, frame: Frame, *, for_ask: bool) -> None:
        """Deliver a frame that passed the checks, and ack it."""
        envelope = frame.envelope
        if for_ask:
            envelope = msgspec.structs.replace(envelope, recipient=_ASK + envelope.recipient.split("/")[2])
            seq = self._asking.get(envelope.recipient, 0)
            request = self._pending.get(seq)
            if request is not None and request.envelope.recipient == envelope.sender:
                # The answer is word that the request was delivered: the asker
                # need not wait for the ack (it may come in the same read, after it).
                self._settle(seq, None, "")
        endpoint = self.registry.lookup(envelope.recipient)
        if endpoint is None or not (for_ask or self.leases.owns(envelope.recipient)):
            if not for_ask:
                self._sink.dead_letter(
                    envelope, DeliveryFailure.UNKNOWN_RECIPIENT, "not an actor this node owns"
                )
            self._ack(to, Ack(DeliveryFailure.UNKNOWN_RECIPIENT, "no such actor on that node"))
            return
        check = self._sink.check(endpoint, envelope)
        if check is not None:
            self._sink.dead_letter(envelope, check[0], check[1])
            self._ack(to, Ack(check[0], check[1]))
            return
        if as_durable(endpoint) is not None and isinstance(envelope, Tell | Request) and self._tg:
            # Sent before the sender saw the actor declared durable: it joins the stream here.
            self._tg.start_soon(self._redirect, to, frame)
            return
        recipient = envelope.recipient
        backlog = self._backlogs.get(recipient)
        answer = isinstance(envelope, Reply | Callback)
        limit = self.cluster.max_in_flight
        if backlog and answer:
            # An answer never waits for room (as in process), but it stays behind
            # what its sender sent before it. Honest answers are bounded by the
            # requests made; forged ones by the node-wide bound.
            if self._waiting < _BACKLOGS * limit:
                backlog.append(_Waiting(endpoint, envelope, 0.0, math.inf, to))
                self._waiting += 1
                return
            self.counts["backlog-full"] += 1
            self._ack(to, Ack(DeliveryFailure.MAILBOX_FULL))
            return
        # Behind a backlog a frame waits its turn: delivery stays in arrival order.
        failure = DeliveryFailure.MAILBOX_FULL if backlog else endpoint.deliver_nowait(envelope)
        # The wait is the sender's word: bounded here (and NaN or negative is none).
        wait = min(frame.wait, self.cluster.max_wait) if frame.wait > 0 else 0.0
        if failure is DeliveryFailure.MAILBOX_FULL and wait > 0 and self._tg is not None:
            if (backlog is None or len(backlog) < limit) and self._waiting < _BACKLOGS * limit:
                if backlog is None:
                    backlog = self._backlogs[recipient] = collections.deque()
                    self._tg.start_soon(self._drain_backlog, recipient, backlog)
                # Its wait starts at the head, but it is never held past max_wait.
                expires = anyio.current_time() + self.cluster.max_wait  # the backend's clock
                backlog.append(_Waiting(endpoint, envelope, wait, expires, to))
                self._waiting += 1
                return
            self.counts["backlog-full"] += 1
        self._ack(to, Ack(failure))

    async def _drain_backlog(self, recipient: str, backlog: collections.deque[_Waiting]) -> None:
        """Deliver one recipient's waiting frames in order; each waits from when
        it reaches the head, up to its sender's wait."""
        try:
            while backlog:
                head = backlog[0]
                answer = isinstance(head.envelope, Reply | Callback)  # never waits for room
                failure: DeliveryFailure | None = DeliveryFailure.MAILBOX_FULL
                if answer:
                    failure = head.endpoint.deliver_nowait(head.envelope)
                else:
                    now = anyio.current_time()
                    with anyio.move_on_at(min(now + head.wait, head.expires)):
                        failure = await head.endpoint.deliver(head.envelope)
                if backlog and backlog[0] is head:
                    backlog.popleft()
                    self._waiting -= 1
                    self._ack(head.to, Ack(failure))
        finally:
            if self._backlogs.get(recipient) is backlog:
                del self._backlogs[recipient]

    def _check_recipient(self, envelope: Envelope, token: str) -> str | None:
        try:
            expected = address_token(envelope.recipient)
        except ValueError:
            return f"recipient {envelope.recipient!r} is not an address"
        if expected != token:
            return f"recipient {envelope.recipient!r} does not match the subject"
        return None

    def _check_ask_reply(self, envelope: Envelope) -> str | None:
        if not isinstance(envelope, Reply):
            return "only replies to asks come to a node's inbox"
        parts = envelope.recipient.split("/")
        if len(parts) != 3 or parts[0] != "$ask" or parts[1] != self.node or not parts[2].isdigit():
            return f"recipient {envelope.recipient!r} is not an ask of this node"
        return None

    def _check_sender(self, envelope: Envelope, origin: str) -> str | None:
        """A sender must be an address its origin node may speak for."""
        sender = envelope.sender
        if sender is None:
            return None
        if sender.startswith(_ASK):
            parts = sender.split("/")
            if len(parts) == 3 and parts[1] == origin and parts[2].isdigit() and _is_token(origin):
                return None
            return f"forged sender {sender!r}: not an ask of node {origin!r}"
        owner = self.leases.owner(sender)
        if owner != origin:
            return f"forged sender {sender!r}: owned by {owner or 'nobody'}, not by {origin!r}"
        return None

    def _reject(
        self,
        to: _AckTo,
        token: str,
        reason: DeliveryFailure,
        detail: str,
        envelope: Envelope | None = None,
        *,
        data: bytes = b"",
    ) -> None:
        """A frame this node will not deliver: a dead letter here, the reason
        to the sender. ``data``: the undecodable bytes (their start goes in the
        dead letter)."""
        self.counts["rejected"] += 1
        if envelope is None:
            from ._wire import token_address

            recipient = token_address(token) if token else self.node
            envelope = Tell(recipient=recipient, payload=data[:256])
        self._sink.dead_letter(envelope, reason, detail)
        self._ack(to, Ack(reason, detail))

    def _ack(self, to: _AckTo, ack: Ack) -> None:
        """Answer a frame, with the other acks of this turn for its batch."""
        reply, index = to
        if not reply:
            return
        answers = self._acks_out.get(reply)
        if answers is None:
            answers = self._acks_out[reply] = []
        answers.append(AckItem(index, ack.failure, ack.detail[:MAX_DETAIL]))
        if not self._acks_due and not self._flushing and self._sending:
            # One turn later than a frame would leave: what the delivery
            # set off (the handler's reply, the asker's next request) usually
            # leaves with it, in one write instead of two.
            self._acks_due = True
            try:
                self._bridge.soon(self._flush_acks)
            except RuntimeError:  # the loop has ended
                self._acks_due = False

    def _flush_acks(self) -> None:
        self._acks_due = False
        self._flush_soon()

    def statistics(self) -> dict[str, int]:
        """Counters: frames sent, received, rejected, failures by reason; in
        flight; waiting in backlogs for mailbox room."""
        waiting = sum(len(b) for b in self._backlogs.values())
        return {**self.counts, "in_flight": len(self._pending), "waiting": waiting}
