"""The durable-mode paths of :class:`~._node.ClusterTransport` (a mixin,
to keep each module small): sending into the stream, receiving from a
durable actor's consumer with its checks, the redirect of core frames, and
the outbox publisher. docs/cluster.md describes the whole."""

from __future__ import annotations

import contextlib
import logging
from typing import TYPE_CHECKING, cast

import anyio
import msgspec

from ._durable import MESSAGE_ID_HEADER, Pruner, Receipt, as_durable, check_id, id_scope
from ._envelope import Envelope, Request, Tell
from ._transport import DeliveryFailure
from ._wire import Ack, Frame, WireError, decode_frame, encode_frame

if TYPE_CHECKING:
    from collections import Counter

    from anyio.abc import TaskGroup

    from ._bridge import Incoming, NatsBridge
    from ._cluster import Cluster
    from ._durable import Durable, OutboxStore
    from ._leases import Leases
    from ._node import ClusterSink
    from ._transport import Endpoint, Registry

__all__ = ["DurablePaths"]

log = logging.getLogger("wasmactors.cluster")

#: The address prefix of a host ask's reply endpoint.
_ASK = "$ask/"
#: An outbox row's frame is ours; oversize ones are refused by the send that follows.
_MAX_OUTBOX_FRAME = 1 << 30


class DurablePaths:
    """Durable mode inside the cluster transport (see the module docstring)."""

    # Provided by ClusterTransport.
    node: str
    cluster: Cluster
    registry: Registry
    leases: Leases
    durable: Durable
    counts: Counter[str]
    _sink: ClusterSink
    _bridge: NatsBridge
    _tg: TaskGroup | None
    _dur: str
    _durable_load: int
    _outbox_wake: anyio.Event

    #: Seconds between two passes of the processed-table pruner.
    prune_every: float = 600.0
    #: Processed ids forgotten per SQLite transaction (commits run in between).
    prune_batch: int = 500
    #: Set when the outbox publisher starts (with ``start(outbox=...)``).
    _store: OutboxStore | None = None
    _pruner: Pruner | None = None

    def _wire(self, envelope: Envelope) -> Envelope:
        raise NotImplementedError

    def _check_recipient(self, envelope: Envelope, token: str) -> str | None:
        raise NotImplementedError

    def _ack(self, to: tuple[str, int], ack: Ack) -> None:
        raise NotImplementedError

    async def send(self, envelope: Envelope, *, timeout: float | None = None) -> DeliveryFailure | None:
        raise NotImplementedError

    def _durable_frame(self, envelope: Tell | Request) -> tuple[str, str, bytes] | DeliveryFailure:
        """The subject, a fresh message id and the frame for a durable message sent here."""
        try:
            subject = self.durable.subject(envelope.recipient)
        except ValueError:
            return DeliveryFailure.UNKNOWN_RECIPIENT
        wire = self._wire(envelope)
        data = encode_frame(Frame(self.node, 0.0, wire))
        if len(data) > self.cluster.max_frame:
            return DeliveryFailure.PAYLOAD_TOO_LARGE
        return subject, self.durable.fresh_id(id_scope(wire, self.node)), data

    def _send_durable_nowait(self, envelope: Tell | Request) -> DeliveryFailure | None:
        built = self._durable_frame(envelope)
        if isinstance(built, DeliveryFailure):
            return built
        if self._durable_load >= self.cluster.max_in_flight or self._tg is None:
            return DeliveryFailure.MAILBOX_FULL
        self._durable_load += 1
        self._tg.start_soon(self._publish_durable, envelope, built)
        return None

    async def _publish_durable(self, envelope: Tell | Request, built: tuple[str, str, bytes]) -> None:
        try:
            problem = await self.durable.publish(*built)
        finally:
            self._durable_load -= 1
        if problem is not None:
            self._durable_failed(envelope, problem)

    async def _send_durable(self, envelope: Tell | Request) -> DeliveryFailure | None:
        built = self._durable_frame(envelope)
        if isinstance(built, DeliveryFailure):
            return built
        problem = await self.durable.publish(*built)
        if problem is not None:
            log.warning("durable: publishing to %s failed: %s", envelope.recipient, problem)
            return DeliveryFailure.STOPPED
        return None

    def _durable_failed(self, envelope: Envelope, problem: str) -> None:
        self.counts["failed:durable-publish"] += 1
        detail = f"the durable stream refused it: {problem}"
        self._sink.dead_letter(envelope, DeliveryFailure.STOPPED, detail)
        if isinstance(envelope, Request):
            self._sink.request_failed(envelope, DeliveryFailure.STOPPED, detail)

    async def _redirect(self, to: tuple[str, int], frame: Frame) -> None:
        """A core frame for a durable actor: into the stream, then the delivery ack."""
        envelope = frame.envelope
        message_id = self.durable.fresh_id(id_scope(envelope, frame.origin))
        problem = await self.durable.publish(
            self.durable.subject(envelope.recipient), message_id, encode_frame(frame)
        )
        self.counts["durable-redirected"] += 1
        self._ack(to, Ack() if problem is None else Ack(DeliveryFailure.STOPPED, problem))

    def outbox_route(self, envelope: Tell) -> tuple[str, bytes]:
        """Where a durable handler's send goes (the durable subject, or ``""``
        for a core-mode recipient) and its frame, as the outbox stores it."""
        data = encode_frame(Frame(self.node, 0.0, envelope))
        recipient = envelope.recipient
        if len(data) <= self.cluster.max_frame and self.durable.is_durable(recipient):
            with contextlib.suppress(ValueError):  # not an address: a core send reports it
                return self.durable.subject(recipient), data
        return "", data

    def outbox_ready(self) -> None:
        """Durable handlers committed outgoing messages: wake the outbox publisher."""
        self._outbox_wake.set()

    async def _publishing_outbox(self, store: OutboxStore) -> None:
        """The node's durable store: its outbox publisher and its pruner."""
        cluster = self.cluster
        retention = max(cluster.processed_retention, self.durable.dedup_window)
        if retention > cluster.processed_retention:
            log.warning(
                "durable: the stream's dedup window (%g s) is longer than processed_retention:"
                " keeping processed ids that long",
                retention,
            )
        self._store = store
        self._pruner = Pruner(retention, 2 * cluster.ack_wait)
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._pruning)
            await self._publishing(store)

    async def _pruning(self) -> None:
        while True:
            try:
                await self.prune_processed()
            except Exception:  # a failed pass (a storage error) is tried again at the next
                log.exception("durable: pruning the processed ids failed")
            await anyio.sleep(self.prune_every)  # a period, not a wait for an event

    async def prune_processed(self) -> int:
        """One pass of the pruner (every ``prune_every`` seconds): forget the
        processed ids past their retention of each durable actor consumed
        here long enough, in batches of ``prune_batch`` on a worker thread;
        how many went."""
        store, pruner = self._store, self._pruner
        if store is None or pruner is None:
            return 0
        total = 0
        for namespace, before in pruner.due(self.durable.hosted, store.clock()):
            while True:
                removed = await anyio.to_thread.run_sync(
                    store.prune_processed, namespace, before, self.prune_batch
                )
                total += removed
                if removed < self.prune_batch:
                    break
        if total:
            self.counts["processed-pruned"] += total
        return total

    async def _publishing(self, store: OutboxStore) -> None:
        """Send what durable handlers committed to the outbox, oldest first,
        and remove each row once the stream (or a core delivery) took it. At
        start, what a previous run left: the ids repeat, the stream drops
        what it already has."""
        while True:
            wake = self._outbox_wake = anyio.Event()
            rows = await anyio.to_thread.run_sync(store.outbox, 512)
            if not rows:
                await wake.wait()
                continue
            durable = [r for r in rows if r.subject]
            results = await self.durable.publish_many([(r.subject, r.id, r.data) for r in durable])
            done = [r.seq for r, problem in zip(durable, results, strict=True) if problem is None]
            failed = [problem for problem in results if problem is not None]
            for row in rows:
                if not row.subject:  # to a core-mode actor: at least once
                    try:
                        envelope = decode_frame(row.data, _MAX_OUTBOX_FRAME).envelope
                    except WireError as exc:
                        log.error("durable: dropping an unreadable outbox row %s: %s", row.id, exc)
                    else:
                        failure = await self.send(envelope, timeout=self.cluster.max_wait)
                        if failure is not None:
                            self._sink.dead_letter(envelope, failure, "from a durable handler's outbox")
                    done.append(row.seq)
            self.counts["outbox-sent"] += len(done)
            await anyio.to_thread.run_sync(store.outbox_done, done)
            if failed:
                log.warning(
                    "durable: %d outbox messages not published (%s); retrying", len(failed), failed[0]
                )
                await anyio.sleep(1.0)  # a retry's back-off, not a wait for an event

    def _on_durable(self, incoming: Incoming) -> None:
        """A message from a durable actor's consumer: checked, then queued with its receipt."""
        self.counts["durable-received"] += 1
        receipt = Receipt(incoming.msgid, incoming.reply, self._bridge.publish)
        token = incoming.subject[len(self._dur) :]
        try:
            frame = decode_frame(incoming.data, self.cluster.max_frame)
        except WireError as exc:
            self._refuse(receipt, incoming, token, str(exc))
            return
        envelope = frame.envelope
        if not isinstance(envelope, Tell | Request):
            problem: str | None = "only tells and requests travel durably"
        else:
            problem = self._check_recipient(envelope, token) or check_id(
                incoming.msgid, envelope, frame.origin
            )
        if problem is not None:
            self._refuse(receipt, incoming, token, problem, envelope)
            return
        endpoint = as_durable(self.registry.lookup(envelope.recipient))
        if endpoint is None or not self.leases.owns(envelope.recipient):
            # Ownership moved (a takeover, a stop): the stream redelivers it to the owner.
            detail = "not a durable actor this node owns: left to its owner"
            self._sink.dead_letter(envelope, DeliveryFailure.UNKNOWN_RECIPIENT, detail)
            receipt.nak(1.0)
            return
        check = self._sink.check(cast("Endpoint", endpoint), envelope)
        if check is not None:
            self._refuse(receipt, incoming, token, check[1], envelope, reason=check[0])
            return
        # The guest sees the id: the key for its own idempotent effects outside wasmactors.
        headers = (
            *(h for h in envelope.headers if h[0] != MESSAGE_ID_HEADER),
            (MESSAGE_ID_HEADER, receipt.id),
        )
        sender = envelope.sender
        mine = f"{_ASK}{self.node}/"
        if sender is not None and sender.startswith(mine):  # this node's own ask: its local reply endpoint
            sender = _ASK + sender[len(mine) :]
        envelope = msgspec.structs.replace(envelope, headers=headers, sender=sender)
        if endpoint.deliver_durable(envelope, receipt) is not None:
            receipt.nak(0.5)  # stopping or full: again later, here or at the next owner

    def _refuse(
        self,
        receipt: Receipt,
        incoming: Incoming,
        token: str,
        detail: str,
        envelope: Envelope | None = None,
        *,
        reason: DeliveryFailure = DeliveryFailure.INVALID_MESSAGE,
    ) -> None:
        """A durable message that can never be processed: a dead letter, and terminated."""
        self.counts["rejected"] += 1
        if envelope is None:
            from ._wire import token_address

            envelope = Tell(recipient=token_address(token), payload=incoming.data[:256])
        self._sink.dead_letter(envelope, reason, detail)
        receipt.term()
