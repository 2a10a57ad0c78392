"""Per-actor key-value storage: backends and the per-call transaction.

A backend needs five operations on a namespace (the actor address): read a
key, the size of a key's value, list keys by prefix, the bytes the
namespace holds, and apply a batch of writes atomically. Each handler call
gets a :class:`Transaction` that buffers its writes, serves its own reads
from the buffer first, tracks what the namespace will hold once they are
applied (so a guest's total state can be bounded, not only one call's
writes), and is applied as one batch when the call returns, or dropped when
it crashes.

What a namespace holds is counted as :func:`row_size` of each row: the key's
UTF-8 bytes, the value's bytes and ``ROW_OVERHEAD``, so a million empty rows
are not free.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, Protocol, runtime_checkable

from ._errors import StorageError

if TYPE_CHECKING:
    import os
    from collections.abc import Callable, Mapping, Sequence

__all__ = [
    "ROW_OVERHEAD",
    "MemoryStorage",
    "OutboxRow",
    "SQLiteStorage",
    "StorageBackend",
    "Transaction",
    "row_size",
]

#: A write: the new value, or ``None`` to delete the key.
Write = bytes | None

#: What a stored row costs beyond its key and value bytes (the index entry,
#: the row header): the same 64 bytes the per-call budgets charge a write.
ROW_OVERHEAD = 64


def row_size(key: str, value_size: int) -> int:
    """The bytes a row counts against its namespace's total."""
    return len(key.encode()) + value_size + ROW_OVERHEAD


class OutboxRow(NamedTuple):
    """A durable handler's outgoing message, queued in the transaction that
    recorded its input as processed (see ``SQLiteStorage.commit_processed``)."""

    #: Its message id (``Nats-Msg-Id``): derived from the input's, so a re-run repeats it.
    id: str
    #: Where it goes: a durable subject, or ``""`` for a core-mode delivery.
    subject: str
    #: The encoded frame.
    data: bytes
    #: Its place in the outbox (0 until stored).
    seq: int = 0


class _AlreadyProcessed(Exception):
    """The message id is in ``processed`` already (the transaction is rolled back)."""


@runtime_checkable
class StorageBackend(Protocol):
    """Where actors' key-value state lives. Implementations must be safe to
    call from several worker threads."""

    def get(self, namespace: str, key: str) -> bytes | None:
        """The value at ``key``, or ``None``."""
        ...

    def value_size(self, namespace: str, key: str) -> int | None:
        """The length of the value at ``key``, or ``None``, without reading it."""
        ...

    def keys(self, namespace: str, prefix: str, limit: int | None = None) -> list[str]:
        """Keys starting with ``prefix``, ascending; the first ``limit`` of
        them when a limit is given."""
        ...

    def usage(self, namespace: str) -> int:
        """The bytes ``namespace`` holds: the sum of :func:`row_size` over its rows."""
        ...

    def apply(self, namespace: str, writes: Mapping[str, Write]) -> None:
        """Apply every write or none of them (and the usage they change)."""
        ...

    def close(self) -> None:
        """Release the backend's resources."""
        ...


class MemoryStorage:
    """Volatile storage in a dict; state is lost with the process."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, bytes]] = {}
        self._usage: dict[str, int] = {}
        self._lock = threading.Lock()

    def get(self, namespace: str, key: str) -> bytes | None:
        with self._lock:
            return self._data.get(namespace, {}).get(key)

    def value_size(self, namespace: str, key: str) -> int | None:
        value = self.get(namespace, key)
        return None if value is None else len(value)

    def usage(self, namespace: str) -> int:
        with self._lock:
            return self._usage.get(namespace, 0)

    def keys(self, namespace: str, prefix: str, limit: int | None = None) -> list[str]:
        with self._lock:
            found = sorted(k for k in self._data.get(namespace, {}) if k.startswith(prefix))
        return found if limit is None else found[:limit]

    def apply(self, namespace: str, writes: Mapping[str, Write]) -> None:
        with self._lock:
            table = self._data.setdefault(namespace, {})
            used = self._usage.get(namespace, 0)
            for key, value in writes.items():
                old = table.pop(key, None)
                if old is not None:
                    used -= row_size(key, len(old))
                if value is not None:
                    table[key] = value
                    used += row_size(key, len(value))
            self._usage[namespace] = used

    def close(self) -> None:
        with self._lock:
            self._data.clear()
            self._usage.clear()


def _successor(prefix: str) -> str | None:
    """The least string above every string that starts with ``prefix``
    (``None``: there is none, every string from ``prefix`` on qualifies)."""
    while prefix:
        code = ord(prefix[-1]) + 1
        if code <= 0x10FFFF:
            return prefix[:-1] + chr(0xE000 if 0xD800 <= code <= 0xDFFF else code)
        prefix = prefix[:-1]
    return None


class SQLiteStorage:
    """Durable storage in one SQLite file (WAL mode), the default backend.

    One connection serves every actor, guarded by a lock: handler calls are
    short and writes are batched one transaction per call. A second table
    keeps each namespace's :meth:`usage`, updated in the same transaction as
    the rows (a file written before it existed is counted once, at open).

    ``clock`` (seconds, ``time.time`` by default) stamps each processed
    message id, for :meth:`prune_processed`; tests pass a clock they move.
    """

    def __init__(self, path: str | os.PathLike[str], *, clock: Callable[[], float] = time.time) -> None:
        self.path = Path(path)
        #: Wall-clock seconds: when a message id was recorded as processed.
        self.clock = clock
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS kv (ns TEXT NOT NULL, key TEXT NOT NULL,"
                " value BLOB NOT NULL, PRIMARY KEY (ns, key)) WITHOUT ROWID"
            )
            if self._db.execute("PRAGMA user_version").fetchone()[0] < _SCHEMA:
                self._db.execute(
                    "CREATE TABLE IF NOT EXISTS usage (ns TEXT PRIMARY KEY,"
                    " bytes INTEGER NOT NULL) WITHOUT ROWID"
                )
                self._db.execute("DELETE FROM usage")
                self._db.execute(
                    "INSERT INTO usage (ns, bytes) SELECT ns,"
                    f" SUM(length(CAST(key AS BLOB)) + length(value) + {ROW_OVERHEAD}) FROM kv GROUP BY ns"
                )
                self._db.execute(f"PRAGMA user_version={_SCHEMA}")
            self._db.execute("COMMIT")
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open storage {self.path}: {exc}") from exc
        self._lock = threading.Lock()
        self._durable_ready = False

    def get(self, namespace: str, key: str) -> bytes | None:
        with self._lock, _wrapped(self.path):
            row = self._db.execute("SELECT value FROM kv WHERE ns=? AND key=?", (namespace, key)).fetchone()
        return None if row is None else bytes(row[0])

    def value_size(self, namespace: str, key: str) -> int | None:
        with self._lock, _wrapped(self.path):
            row = self._db.execute(
                "SELECT length(value) FROM kv WHERE ns=? AND key=?", (namespace, key)
            ).fetchone()
        return None if row is None else int(row[0])

    def usage(self, namespace: str) -> int:
        with self._lock, _wrapped(self.path):
            row = self._db.execute("SELECT bytes FROM usage WHERE ns=?", (namespace,)).fetchone()
        return 0 if row is None else int(row[0])

    def keys(self, namespace: str, prefix: str, limit: int | None = None) -> list[str]:
        # Range scan instead of LIKE: no escaping of % and _ in user keys.
        # SQLite compares TEXT as UTF-8 bytes, which orders as code points do.
        upper = _successor(prefix)
        query = "SELECT key FROM kv WHERE ns=? AND key>=?" + (" AND key<?" if upper is not None else "")
        params: tuple[object, ...] = (namespace, prefix) if upper is None else (namespace, prefix, upper)
        query += " ORDER BY key LIMIT ?"
        with self._lock, _wrapped(self.path):
            rows = self._db.execute(query, (*params, -1 if limit is None else limit)).fetchall()
        return [r[0] for r in rows]

    def apply(self, namespace: str, writes: Mapping[str, Write]) -> None:
        if not writes:
            return
        with self._lock, _wrapped(self.path):
            self._in_transaction(lambda: self._write(namespace, writes))

    def _in_transaction(self, body: Callable[[], object]) -> None:
        """Run ``body`` in one immediate transaction (the lock is held)."""
        try:
            self._db.execute("BEGIN IMMEDIATE")
            body()
            self._db.execute("COMMIT")
        except BaseException:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
            raise

    def _write(self, namespace: str, writes: Mapping[str, Write]) -> None:
        """The key-value writes and the usage they change (inside a transaction)."""
        sets = [(namespace, k, v) for k, v in writes.items() if v is not None]
        deletes = [(namespace, k) for k, v in writes.items() if v is None]
        # What the rows held before, to move the usage by the difference.
        size = "SELECT length(value) FROM kv WHERE ns=? AND key=?"
        delta = 0
        for key, value in writes.items():
            row = self._db.execute(size, (namespace, key)).fetchone()
            if row is not None:
                delta -= row_size(key, row[0])
            if value is not None:
                delta += row_size(key, len(value))
        self._db.executemany("INSERT OR REPLACE INTO kv (ns, key, value) VALUES (?, ?, ?)", sets)
        self._db.executemany("DELETE FROM kv WHERE ns=? AND key=?", deletes)
        if delta:
            self._db.execute(
                "INSERT INTO usage (ns, bytes) VALUES (?, ?)"
                " ON CONFLICT (ns) DO UPDATE SET bytes = bytes + excluded.bytes",
                (namespace, delta),
            )

    # -- durable mode: processed message ids and the outbox ------------------------

    def _durable_tables(self) -> None:
        """Create the durable-mode tables on first use (files without them stay
        as they were), and migrate a ``processed`` table from before its ``at``
        column: its rows count as recorded now, so they are kept a whole
        retention from the upgrade."""
        if self._durable_ready:
            return

        def body() -> None:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS processed (ns TEXT NOT NULL, id TEXT NOT NULL,"
                " outcome TEXT NOT NULL, at REAL NOT NULL, PRIMARY KEY (ns, id)) WITHOUT ROWID"
            )
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(processed)")}
            if "at" not in columns:
                # A constant default: SQLite adds the column without rewriting the rows.
                now = float(self.clock())
                self._db.execute(f"ALTER TABLE processed ADD COLUMN at REAL NOT NULL DEFAULT {now!r}")
            self._db.execute("CREATE INDEX IF NOT EXISTS processed_at ON processed (ns, at)")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                " ns TEXT NOT NULL, id TEXT NOT NULL UNIQUE, subject TEXT NOT NULL, data BLOB NOT NULL)"
            )

        with self._lock, _wrapped(self.path):
            self._in_transaction(body)
        self._durable_ready = True

    def processed(self, namespace: str, message_id: str) -> str | None:
        """How ``namespace`` handled ``message_id`` (``"ok"``, ``"crashed"``...), or ``None``."""
        self._durable_tables()
        with self._lock, _wrapped(self.path):
            row = self._db.execute(
                "SELECT outcome FROM processed WHERE ns=? AND id=?", (namespace, message_id)
            ).fetchone()
        return None if row is None else str(row[0])

    def commit_processed(
        self,
        namespace: str,
        writes: Mapping[str, Write],
        message_id: str,
        outbox: Sequence[OutboxRow],
        outcome: str = "ok",
    ) -> bool:
        """In one transaction: a handler's writes, ``message_id`` recorded as
        processed and its outgoing messages queued in the outbox. ``False``
        (nothing written) when the id was already processed."""
        self._durable_tables()
        now = float(self.clock())

        def body() -> None:
            try:
                self._db.execute(
                    "INSERT INTO processed (ns, id, outcome, at) VALUES (?, ?, ?, ?)",
                    (namespace, message_id, outcome, now),
                )
            except sqlite3.IntegrityError:
                raise _AlreadyProcessed from None
            self._write(namespace, writes)
            self._db.executemany(
                "INSERT INTO outbox (ns, id, subject, data) VALUES (?, ?, ?, ?)",
                [(namespace, row.id, row.subject, row.data) for row in outbox],
            )

        with self._lock, _wrapped(self.path):
            try:
                self._in_transaction(body)
            except _AlreadyProcessed:
                return False
        return True

    def prune_processed(self, namespace: str, before: float, limit: int = 500) -> int:
        """Forget up to ``limit`` of ``namespace``'s processed ids recorded
        before ``before`` (clock seconds), oldest first, in one short
        transaction; how many went. A caller prunes a namespace in batches
        so that commits run in between."""
        self._durable_tables()
        with self._lock, _wrapped(self.path):
            cursor = self._db.execute(
                "DELETE FROM processed WHERE ns=? AND id IN (SELECT id FROM processed"
                " WHERE ns=? AND at<? ORDER BY at LIMIT ?)",
                (namespace, namespace, before, limit),
            )
            return max(cursor.rowcount, 0)

    def outbox(self, limit: int = 256) -> list[OutboxRow]:
        """The oldest queued outgoing messages of every namespace, in commit order."""
        self._durable_tables()
        with self._lock, _wrapped(self.path):
            rows = self._db.execute(
                "SELECT seq, id, subject, data FROM outbox ORDER BY seq LIMIT ?", (limit,)
            ).fetchall()
        return [OutboxRow(str(r[1]), str(r[2]), bytes(r[3]), int(r[0])) for r in rows]

    def outbox_done(self, seqs: Sequence[int]) -> None:
        """Remove sent outbox rows."""
        if not seqs:
            return
        with self._lock, _wrapped(self.path):
            self._in_transaction(
                lambda: self._db.executemany("DELETE FROM outbox WHERE seq=?", [(s,) for s in seqs])
            )

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SQLiteStorage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


#: The file's schema version (``PRAGMA user_version``): 1 added the usage table.
_SCHEMA = 1


class _wrapped:
    """Turn sqlite3 errors into StorageError, naming the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, typ: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if isinstance(exc, sqlite3.Error):
            raise StorageError(f"storage {self.path}: {exc}") from exc


class Transaction:
    """The writes of one handler call, invisible to others until applied."""

    __slots__ = ("_backend", "_namespace", "_usage", "_writes")

    def __init__(self, backend: StorageBackend, namespace: str) -> None:
        self._backend = backend
        self._namespace = namespace
        self._writes: dict[str, Write] = {}
        self._usage: int | None = None

    def usage(self) -> int:
        """The bytes the namespace will hold once the writes are applied."""
        if self._usage is None:
            self._usage = self._backend.usage(self._namespace)
        return self._usage

    def usage_after(self, key: str, value_size: int | None) -> int:
        """:meth:`usage` after setting ``key`` to a value of ``value_size``
        bytes (``None``: deleting it)."""
        if key in self._writes:
            value = self._writes[key]
            old = None if value is None else len(value)
        else:
            old = self._backend.value_size(self._namespace, key)
        used = self.usage()
        if old is not None:
            used -= row_size(key, old)
        if value_size is not None:
            used += row_size(key, value_size)
        return used

    def get(self, key: str) -> bytes | None:
        if key in self._writes:
            return self._writes[key]
        return self._backend.get(self._namespace, key)

    def set(self, key: str, value: bytes) -> None:
        self._usage = self.usage_after(key, len(value))
        self._writes[key] = value

    def delete(self, key: str) -> bool:
        before = self.usage()
        self._usage = self.usage_after(key, None)
        self._writes[key] = None
        return self._usage < before

    def keys(self, prefix: str, limit: int | None = None) -> list[str]:
        """Keys starting with ``prefix``, in order; at most ``limit`` + 1 of
        them when a limit is given (so a caller can tell it was exceeded)."""
        # Buffered deletes may hide up to len(writes) of the backend's keys.
        fetch = None if limit is None else limit + 1 + len(self._writes)
        found = set(self._backend.keys(self._namespace, prefix, fetch))
        for key, value in self._writes.items():
            if key.startswith(prefix):
                if value is None:
                    found.discard(key)
                else:
                    found.add(key)
        ordered = sorted(found)
        return ordered if limit is None else ordered[: limit + 1]

    @property
    def writes(self) -> Mapping[str, Write]:
        """The buffered writes (a durable commit applies them with its own rows)."""
        return self._writes

    @property
    def pending(self) -> int:
        """Buffered writes not yet applied."""
        return len(self._writes)

    def commit(self) -> None:
        """Apply the buffered writes atomically."""
        if self._writes:
            self._backend.apply(self._namespace, self._writes)
        self._writes = {}
        self._usage = None

    def discard(self) -> None:
        self._writes = {}
        self._usage = None
