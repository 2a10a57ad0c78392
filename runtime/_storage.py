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

    def keys(self, namespace: str, prefix: str) -> list[str]:
        """Keys starting with ``prefix``, ascending."""
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

    def keys(self, namespace: str, prefix: str) -> list[str]:
        with self._lock:
            return sorted(k for k in self._data.get(namespace, {}) if k.startswith(prefix))

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

    def keys(self, namespace: str, prefix: str) -> list[str]:
        # Range scan instead of LIKE: no escaping of % and _ in user keys.
        with self._lock, _wrapped(self.path):
            rows = self._db.execute(
                "SELECT key FROM kv WHERE ns=? AND key>=? AND key<? ORDER BY key",
                (namespace, prefix, prefix + "\U0010ffff"),
            ).fetchall()
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

    def keys(self, prefix: str) -> list[str]:
        found = set(self._backend.keys(self._namespace, prefix))
        for key, value in self._writes.items():
            if key.startswith(prefix):
                if value is None:
                    found.discard(key)
                else:
                    found.add(key)
        return sorted(found)

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
