"""Per-actor key-value storage: backends and the per-call transaction.

A backend only needs three operations on a namespace (the actor address):
read a key, list keys by prefix, and apply a batch of writes atomically.
Each handler call gets a :class:`Transaction` that buffers its writes,
serves its own reads from the buffer first, and is applied as one batch when
the call returns, or dropped when it crashes.
"""

from __future__ import annotations

import sqlite3
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from ._errors import StorageError

if TYPE_CHECKING:
    import os
    from collections.abc import Mapping

__all__ = ["MemoryStorage", "SQLiteStorage", "StorageBackend", "Transaction"]

#: A write: the new value, or ``None`` to delete the key.
Write = bytes | None


@runtime_checkable
class StorageBackend(Protocol):
    """Where actors' key-value state lives. Implementations must be safe to
    call from several worker threads."""

    def get(self, namespace: str, key: str) -> bytes | None:
        """The value at ``key``, or ``None``."""
        ...

    def keys(self, namespace: str, prefix: str, limit: int | None = None) -> list[str]:
        """Keys starting with ``prefix``, ascending; the first ``limit`` of
        them when a limit is given."""
        ...

    def apply(self, namespace: str, writes: Mapping[str, Write]) -> None:
        """Apply every write or none of them."""
        ...

    def close(self) -> None:
        """Release the backend's resources."""
        ...


class MemoryStorage:
    """Volatile storage in a dict; state is lost with the process."""

    def __init__(self) -> None:
        self._data: dict[str, dict[str, bytes]] = {}
        self._lock = threading.Lock()

    def get(self, namespace: str, key: str) -> bytes | None:
        with self._lock:
            return self._data.get(namespace, {}).get(key)

    def keys(self, namespace: str, prefix: str, limit: int | None = None) -> list[str]:
        with self._lock:
            found = sorted(k for k in self._data.get(namespace, {}) if k.startswith(prefix))
        return found if limit is None else found[:limit]

    def apply(self, namespace: str, writes: Mapping[str, Write]) -> None:
        with self._lock:
            table = self._data.setdefault(namespace, {})
            for key, value in writes.items():
                if value is None:
                    table.pop(key, None)
                else:
                    table[key] = value

    def close(self) -> None:
        with self._lock:
            self._data.clear()


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
    short and writes are batched one transaction per call.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        try:
            self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS kv (ns TEXT NOT NULL, key TEXT NOT NULL,"
                " value BLOB NOT NULL, PRIMARY KEY (ns, key)) WITHOUT ROWID"
            )
        except sqlite3.Error as exc:
            raise StorageError(f"cannot open storage {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def get(self, namespace: str, key: str) -> bytes | None:
        with self._lock, _wrapped(self.path):
            row = self._db.execute("SELECT value FROM kv WHERE ns=? AND key=?", (namespace, key)).fetchone()
        return None if row is None else bytes(row[0])

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
        sets = [(namespace, k, v) for k, v in writes.items() if v is not None]
        deletes = [(namespace, k) for k, v in writes.items() if v is None]
        with self._lock, _wrapped(self.path):
            try:
                self._db.execute("BEGIN IMMEDIATE")
                self._db.executemany("INSERT OR REPLACE INTO kv (ns, key, value) VALUES (?, ?, ?)", sets)
                self._db.executemany("DELETE FROM kv WHERE ns=? AND key=?", deletes)
                self._db.execute("COMMIT")
            except BaseException:
                if self._db.in_transaction:
                    self._db.execute("ROLLBACK")
                raise

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> SQLiteStorage:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


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

    __slots__ = ("_backend", "_namespace", "_writes")

    def __init__(self, backend: StorageBackend, namespace: str) -> None:
        self._backend = backend
        self._namespace = namespace
        self._writes: dict[str, Write] = {}

    def get(self, key: str) -> bytes | None:
        if key in self._writes:
            return self._writes[key]
        return self._backend.get(self._namespace, key)

    def set(self, key: str, value: bytes) -> None:
        self._writes[key] = value

    def delete(self, key: str) -> bool:
        existed = self.get(key) is not None
        self._writes[key] = None
        return existed

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
    def pending(self) -> int:
        """Buffered writes not yet applied."""
        return len(self._writes)

    def commit(self) -> None:
        """Apply the buffered writes atomically."""
        if self._writes:
            self._backend.apply(self._namespace, self._writes)
        self._writes = {}

    def discard(self) -> None:
        self._writes = {}
