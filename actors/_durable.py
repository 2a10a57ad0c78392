"""Durable actors: effectively-once processing of JetStream messages.

A :class:`DurableCell` is a component cell whose messages come from its
JetStream consumer (``messaging/_durable.py``), each with a receipt. For
each one, in order:

1. if its id is in the ``processed`` table of the node's SQLite file, the
   handler already committed it (a redelivery after a crash between commit
   and ack): ack it, skip the handler;
2. otherwise run the handler; on success the :class:`DurableJournal` (the
   runtime's commit hook) writes, in **one** SQLite transaction, the
   handler's storage writes, the id into ``processed`` and every ``send``
   into the ``outbox`` with an id derived from the input's (``id:n``);
3. after that commit, ack the JetStream message and wake the outbox
   publisher, which publishes the rows with those ids (the stream drops a
   re-run's duplicates) and deletes them.

A crash before the commit leaves nothing: the message is redelivered (after
a node's death, or a host fault such as a failed commit), or, if the guest
itself crashed, recorded as ``failed`` and dead-lettered as in core mode, so
a poison message is not retried forever.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from ..messaging import DeliveryFailure, Send, Tell
from ..runtime import CrashKind, OutboxRow, SQLiteStorage
from ..runtime import StorageError as _StorageError
from ._cell import ComponentCell
from ._errors import DurableError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from ..messaging import Envelope, SendRequest
    from ..messaging._durable import Receipt
    from ..runtime import Component, Limits, Transaction
    from ._cell import Exit, RestartType
    from ._env import CellEnv

__all__ = ["DurableCell", "DurableJournal", "check_durable"]

log = logging.getLogger("wasmactors.actors")


def check_durable(address: str, storage: object, cluster: object) -> SQLiteStorage:
    """The SQLite storage a durable actor needs, or :class:`DurableError` saying what is missing."""
    if cluster is None:
        raise DurableError(
            f"{address}: a durable actor receives through JetStream: join a cluster, "
            "ActorSystem(cluster=Cluster(...))"
        )
    if not isinstance(storage, SQLiteStorage):
        raise DurableError(
            f"{address}: a durable actor needs SQLite storage (its state, processed ids and "
            "outbox commit together): ActorSystem(storage='node.db'), not "
            f"{type(storage).__name__ if storage is not None else 'no storage'}"
        )
    return storage


class DurableJournal:
    """The commit hook of one durable actor (``runtime.Journal``).

    The cell sets :attr:`current` on the event loop before the turn that
    runs that message, and reads :attr:`committed` after it; the worker thread
    running the turn writes :attr:`committed` (the turn's thread hop orders
    both)."""

    __slots__ = ("_route", "address", "committed", "current", "storage")

    def __init__(
        self, storage: SQLiteStorage, address: str, route: Callable[[Tell], tuple[str, bytes]]
    ) -> None:
        self.storage = storage
        self.address = address
        #: The subject (``""``: core mode) and encoded frame of an outgoing message.
        self._route = route
        #: The id of the durable message being handled (``None``: a plain call).
        self.current: str | None = None
        #: The id the last commit recorded as processed.
        self.committed: str | None = None

    def begin(self, message_id: str) -> None:
        """The next turn handles ``message_id`` (on the loop, before the turn)."""
        self.current, self.committed = message_id, None

    def end(self) -> str | None:
        """After the turn: the id it committed, if it did."""
        committed, self.current, self.committed = self.committed, None, None
        return committed

    def commit(
        self, txn: Transaction | None, outbox: Sequence[Send | SendRequest]
    ) -> Sequence[Send | SendRequest]:
        message_id = self.current
        if message_id is None:  # a callback, a core-mode message: as without a journal
            if txn is not None:
                txn.commit()
            return outbox
        from ..messaging._durable import derived_id

        rows: list[OutboxRow] = []
        kept: list[Send | SendRequest] = []
        for outgoing in outbox:
            if isinstance(outgoing, Send):
                envelope = Tell(recipient=outgoing.to, payload=outgoing.payload, sender=self.address)
                subject, data = self._route(envelope)
                rows.append(OutboxRow(derived_id(self.address, message_id, len(rows)), subject, data))
            else:  # a request's answer comes back as a callback: core mode, at most once
                kept.append(outgoing)
        writes = txn.writes if txn is not None else {}
        fresh = self.storage.commit_processed(self.address, writes, message_id, rows)
        if txn is not None:
            txn.discard()
        self.committed = message_id
        return kept if fresh else ()


class DurableCell(ComponentCell):
    """A component actor that receives through JetStream, effectively once."""

    def __init__(
        self,
        env: CellEnv,
        address: str,
        component: Component,
        limits: Limits,
        *,
        storage: SQLiteStorage,
        route: Callable[[Tell], tuple[str, bytes]],
        outbox_ready: Callable[[], None],
        mailbox_size: int,
        restart: RestartType,
        shutdown: float,
    ) -> None:
        super().__init__(
            env, address, component, limits, mailbox_size=mailbox_size, restart=restart, shutdown=shutdown
        )
        #: Unacknowledged messages its consumer may hand over (``max_ack_pending``).
        self.durable_window = mailbox_size
        self._journal = DurableJournal(storage, address, route)
        self.context.journal = self._journal
        self._outbox_ready = outbox_ready
        #: Receipts of the durable messages in the mailbox, by envelope identity.
        self._receipts: dict[int, tuple[Envelope, Receipt]] = {}
        #: Counters: processed, skipped as already processed, failed (crashed, refused).
        self.durable_counts = {"processed": 0, "skipped": 0, "failed": 0}

    def deliver_durable(self, envelope: Envelope, receipt: Receipt) -> DeliveryFailure | None:
        if self._stopping or self.closed:
            return DeliveryFailure.STOPPED
        # The consumer's window (max_ack_pending = the mailbox size) bounds these.
        self.mailbox.put_nowait(envelope, force=True)
        self._receipts[id(envelope)] = (envelope, receipt)
        return None

    async def process(self, batch: list[Envelope]) -> Exit | None:
        receipts = self._receipts
        first = receipts.get(id(batch[0]))
        if first is None:  # answers to its requests, core-mode messages: as any component
            end = next((i for i, e in enumerate(batch) if id(e) in receipts), len(batch))
            if end < len(batch):
                self.mailbox.push_front(batch[end:])
            return await super().process(batch[:end])
        # One durable message per turn: its commit is the unit of the guarantee.
        if len(batch) > 1:
            self.mailbox.push_front(batch[1:])
        envelope, receipt = first
        journal = self._journal
        done = journal.storage.processed(self.address, receipt.id)  # an indexed read
        if done is not None:
            del receipts[id(envelope)]
            self.durable_counts["skipped"] += 1
            receipt.ack()
            return None
        journal.begin(receipt.id)
        try:
            exit = await super().process([envelope])
        finally:
            committed = journal.end()
        if committed == receipt.id:
            del receipts[id(envelope)]
            self.durable_counts["processed"] += 1
            receipt.ack()
            self._outbox_ready()
        elif exit is not None and exit.detail == CrashKind.HOST_FAULT.value:
            # The host failed (a storage error, a bug), not the guest: nothing
            # was committed; the stream tries again, here or at the next owner.
            del receipts[id(envelope)]
            receipt.nak(1.0)
        elif self.mailbox.head() is not envelope:
            # It ran and crashed (or was refused): dead-lettered as in core
            # mode; recorded so that a poison message is not retried forever.
            try:
                journal.storage.commit_processed(self.address, {}, receipt.id, (), outcome="failed")
            except _StorageError as exc:
                log.error("%s: cannot record the failed message %s: %s", self.address, receipt.id, exc)
                return exit  # not acked: redelivered after ack_wait
            del receipts[id(envelope)]
            self.durable_counts["failed"] += 1
            receipt.ack()
        return exit

    def discard(self, envelope: Envelope, detail: str) -> None:
        """Not handled here (the actor stopped): the stream redelivers it to the next owner."""
        entry = self._receipts.pop(id(envelope), None)
        if entry is not None:
            entry[1].nak()
            detail += "; the stream redelivers it"
        super().discard(envelope, detail)
