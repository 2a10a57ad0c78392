"""Storage: the backends, and one handler call as one atomic step."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from wasmactors.runtime import (
    ROW_OVERHEAD,
    Component,
    HostContext,
    Instance,
    MemoryStorage,
    SQLiteStorage,
    StorageBackend,
    StorageError,
    Success,
    Transaction,
    row_size,
)

from .conftest import LIMITS

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(params=["memory", "sqlite"])
def backend(request: pytest.FixtureRequest, db_path: Path) -> Iterator[StorageBackend]:
    store: StorageBackend = MemoryStorage() if request.param == "memory" else SQLiteStorage(db_path)
    yield store
    store.close()


def test_backend_apply_get_keys(backend: StorageBackend) -> None:
    """apply writes and deletes; keys are prefix-filtered, sorted and per namespace."""
    backend.apply("a", {"k2": b"2", "k1": b"1", "x": b"x", "%_": b"odd"})
    backend.apply("b", {"k1": b"other"})
    backend.apply("a", {"x": None})
    assert backend.get("a", "k1") == b"1"
    assert backend.get("a", "x") is None
    assert backend.keys("a", "k") == ["k1", "k2"]
    assert backend.keys("a", "%") == ["%_"]
    assert backend.keys("a", "") == ["%_", "k1", "k2"]
    assert backend.get("b", "k1") == b"other"


def test_transaction_reads_its_own_writes_and_hides_them_until_commit(backend: StorageBackend) -> None:
    """Buffered writes are visible inside the transaction only, until commit."""
    backend.apply("ns", {"a": b"1", "b": b"2"})
    txn = Transaction(backend, "ns")
    txn.set("c", b"3")
    assert txn.delete("a") is True
    assert txn.delete("zzz") is False
    assert txn.get("c") == b"3"
    assert txn.get("a") is None
    assert txn.keys("") == ["b", "c"]
    assert backend.get("ns", "c") is None
    txn.commit()
    assert backend.keys("ns", "") == ["b", "c"]


def test_sqlite_is_a_real_wal_file(db_path: Path) -> None:
    """The durable backend writes an SQLite file in WAL mode that other readers can open."""
    store = SQLiteStorage(db_path)
    store.apply("n", {"k": b"v"})
    with sqlite3.connect(db_path) as other:
        assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert other.execute("SELECT value FROM kv WHERE ns='n' AND key='k'").fetchone()[0] == b"v"
    store.close()


def test_sqlite_apply_is_atomic(db_path: Path) -> None:
    """A batch that fails midway (the database refuses its second row) leaves nothing
    behind: no row and no change of usage."""
    store = SQLiteStorage(db_path)
    store.apply("n", {"keep": b"1"})
    with sqlite3.connect(db_path) as other:
        other.execute(
            "CREATE TRIGGER refuse BEFORE INSERT ON kv WHEN NEW.key = 'b'"
            " BEGIN SELECT RAISE(ABORT, 'no'); END"
        )
    with pytest.raises(StorageError):
        store.apply("n", {"a": b"1", "b": b"2"})
    assert store.keys("n", "") == ["keep"]
    assert store.usage("n") == row_size("keep", 1)
    store.close()


def test_unopenable_database_is_a_storage_error(tmp_path: Path) -> None:
    """A path SQLite cannot open raises StorageError naming it."""
    with pytest.raises(StorageError, match="cannot open storage"):
        SQLiteStorage(tmp_path / "missing-dir" / "x.db")


def call(inst: Instance, command: str) -> bytes | None:
    result = inst.handle_message(command.encode(), request=True)
    assert isinstance(result.outcome, Success), result.outcome
    return result.outcome.reply


def test_writes_commit_when_the_call_returns(kitchen: Component, backend: StorageBackend) -> None:
    """Writes of a successful call, and of one that returned err, are applied."""
    with Instance(kitchen, LIMITS, HostContext("s/a", storage=backend)) as inst:
        call(inst, "set color blue")
        assert inst.handle_message(b"set-then-err size big").outcome.message == "rejected after writing"  # type: ignore[union-attr]
    assert backend.get("s/a", "color") == b"blue"
    assert backend.get("s/a", "size") == b"big"


def test_a_crash_discards_the_calls_writes_and_sends(kitchen: Component, backend: StorageBackend) -> None:
    """One message is one atomic step: a trap loses its writes and its outgoing messages."""
    with Instance(kitchen, LIMITS, HostContext("s/b", storage=backend)) as inst:
        call(inst, "set color blue")
        result = inst.handle_message(b"set-then-raise color red other/actor")
        assert result.crashed
        assert result.outbox == ()
    assert backend.get("s/b", "color") == b"blue"


def test_state_survives_a_new_instance_and_a_new_process_backend(kitchen: Component, db_path: Path) -> None:
    """With SQLite, a restarted actor (new Store, new backend object) sees its state."""
    first = SQLiteStorage(db_path)
    with Instance(kitchen, LIMITS, HostContext("s/c", storage=first)) as inst:
        call(inst, "set visits 3")
    first.close()
    second = SQLiteStorage(db_path)
    with Instance(kitchen, LIMITS, HostContext("s/c", storage=second)) as inst:
        assert call(inst, "get visits") == b"3"
        assert call(inst, "keys v") == b"visits"
        assert call(inst, "del visits") == b"True"
    assert second.get("s/c", "visits") is None
    second.close()


BACKEND_FAILED = b"host-error StorageError_Backend:the storage backend failed; the host logged why"


def test_actor_without_storage_gets_a_backend_error(kitchen: Component) -> None:
    """No backend configured: storage calls fail with a storage-error value, not a crash."""
    with Instance(kitchen, LIMITS) as inst:
        assert call(inst, "get k") == BACKEND_FAILED


def test_backend_error_reaches_the_guest_as_a_value(
    kitchen: Component, db_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A StorageError (here, a closed database) is reported to the guest, not a crash; its
    detail (a file path) stays in the host's log."""
    store = SQLiteStorage(db_path)
    store.close()
    with Instance(kitchen, LIMITS, HostContext("s/d", storage=store)) as inst:
        assert call(inst, "get k") == BACKEND_FAILED
        assert inst.usable
    assert str(db_path) in caplog.text
    assert str(db_path).encode() not in BACKEND_FAILED


def test_counter_example_keeps_its_total(counter: Component) -> None:
    """The counter example adds, reads and resets through storage."""
    store = MemoryStorage()
    with Instance(counter, LIMITS, HostContext("ex/counter", storage=store)) as inst:
        assert call(inst, "add 5") == b"5"
        assert call(inst, "add 7") == b"12"
        assert call(inst, "get") == b"12"
        bad = inst.handle_message(b"add lots", request=True)
        assert bad.outcome.message == "add needs a whole number, got 'lots'"  # type: ignore[union-attr]
    assert store.get("ex/counter", "total") == b"12"


_keys = st.text(st.characters(exclude_categories=["Cs"]), min_size=1, max_size=6)
_ops = st.lists(st.tuples(st.booleans(), _keys, st.binary(max_size=8)), max_size=40)


@settings(max_examples=150, deadline=None)
@given(ops=_ops, prefixes=st.lists(st.text(st.characters(exclude_categories=["Cs"]), max_size=3), max_size=6))
def test_sqlite_and_memory_backends_agree(
    tmp_path_factory: pytest.TempPathFactory, ops: list[tuple[bool, str, bytes]], prefixes: list[str]
) -> None:
    """Over the whole Unicode range (NUL and U+10FFFF included), both backends agree on
    every get and every keys(prefix), with and without a limit."""
    memory, sqlite = MemoryStorage(), SQLiteStorage(tmp_path_factory.mktemp("agree") / "s.db")
    try:
        for is_set, key, value in ops:
            for backend in (memory, sqlite):
                backend.apply("ns", {key: value if is_set else None})
        keys = {key for _, key, _ in ops}
        for key in keys:
            assert memory.get("ns", key) == sqlite.get("ns", key)
            assert memory.value_size("ns", key) == sqlite.value_size("ns", key)
        held = {k: v for k in keys if (v := memory.get("ns", k)) is not None}
        assert memory.usage("ns") == sqlite.usage("ns") == sum(row_size(k, len(v)) for k, v in held.items())
        for prefix in [
            *prefixes,
            "",
            "\U0010ffff",
            *(k[:1] for k in keys),
            *(k + "\U0010ffff" for k in keys),
        ]:
            expected = memory.keys("ns", prefix)
            assert expected == sorted(
                k for k in keys if k.startswith(prefix) and memory.get("ns", k) is not None
            )
            assert sqlite.keys("ns", prefix) == expected, prefix
            assert sqlite.keys("ns", prefix, 2) == expected[:2]
            assert memory.keys("ns", prefix, 2) == expected[:2]
    finally:
        sqlite.close()


def test_keys_of_a_transaction_see_its_writes_within_a_limit(backend: StorageBackend) -> None:
    """A limited keys() over buffered deletes and sets still returns the first keys in order."""
    backend.apply("ns", {f"k{i}": b"v" for i in range(10)})
    txn = Transaction(backend, "ns")
    for i in range(5):
        txn.delete(f"k{i}")
    txn.set("k05", b"new")
    assert txn.keys("k", 3) == ["k05", "k5", "k6", "k7"]
    assert txn.keys("k") == ["k05", "k5", "k6", "k7", "k8", "k9"]


def test_keys_after_the_last_code_point_are_found(backend: StorageBackend) -> None:
    """A key continuing its prefix with U+10FFFF is still under the prefix (SQLite range scan edge)."""
    backend.apply("ns", {"a\U0010ffff": b"1", "a\U0010ffffz": b"2", "b": b"3", "\U0010ffff": b"4"})
    assert backend.keys("ns", "a") == ["a\U0010ffff", "a\U0010ffffz"]
    assert backend.keys("ns", "\U0010ffff") == ["\U0010ffff"]
    assert backend.keys("ns", "") == ["a\U0010ffff", "a\U0010ffffz", "b", "\U0010ffff"]


def test_a_transaction_knows_what_the_namespace_will_hold(backend: StorageBackend) -> None:
    """Usage counts key bytes (UTF-8), value bytes and ROW_OVERHEAD a row, through sets,
    overwrites and deletes, before and after the commit."""
    backend.apply("ns", {"a": b"123"})
    txn = Transaction(backend, "ns")
    assert txn.usage() == row_size("a", 3) == 1 + 3 + ROW_OVERHEAD
    assert txn.usage_after("é", 10) == row_size("a", 3) + 2 + 10 + ROW_OVERHEAD
    txn.set("a", b"1")
    txn.set("é", b"x" * 10)
    assert txn.delete("missing") is False
    assert txn.usage() == row_size("a", 1) + row_size("é", 10)
    assert txn.delete("é") is True
    txn.commit()
    assert backend.usage("ns") == row_size("a", 1)
    assert backend.usage("other") == 0


def test_sqlite_counts_a_file_written_before_usage_was_kept(db_path: Path) -> None:
    """A storage file from before the usage table is counted once when opened."""
    db = sqlite3.connect(db_path)
    db.execute(
        "CREATE TABLE kv (ns TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
        " PRIMARY KEY (ns, key)) WITHOUT ROWID"
    )
    db.executemany(
        "INSERT INTO kv VALUES (?, ?, ?)", [("a", "k1", b"xx"), ("a", "k2", b""), ("b", "é", b"v")]
    )
    db.commit()
    db.close()
    with SQLiteStorage(db_path) as storage:
        assert storage.usage("a") == row_size("k1", 2) + row_size("k2", 0)
        assert storage.usage("b") == row_size("é", 1)
        storage.apply("a", {"k1": None})
    with SQLiteStorage(db_path) as storage:  # counted once, not again at each open
        assert storage.usage("a") == row_size("k2", 0)
