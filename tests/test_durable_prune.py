"""Pruning durable mode's ``processed`` table: ids are kept ``processed_retention``
after they were recorded (and while their actor has not yet been consumed for
twice ``ack_wait`` since the node started), then forgotten in small batches
that commits run between; an old file without the timestamp column is
migrated. A real SQLite file, a real nats-server, a clock the tests move."""

from __future__ import annotations

import sqlite3
import threading
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import pytest

from tests.conftest import PY
from tests.nats_server import raw_client
from tests.test_durable import probe, take
from wasmactors.actors import ActorSystem
from wasmactors.actors._durable import DurableCell
from wasmactors.messaging import Cluster, Tell
from wasmactors.messaging._durable import Pruner
from wasmactors.messaging._node import ClusterTransport
from wasmactors.messaging._wire import Frame, encode_frame
from wasmactors.runtime import SQLiteStorage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.nats_server import NatsServer
    from wasmactors.messaging._bridge import NatsBridge
    from wasmactors.runtime import Component, Engine

DAY = 24 * 3600.0
#: The default retention.
WEEK = 7 * DAY


class Clock:
    """Wall-clock seconds that move only when the test says so."""

    def __init__(self, now: float = 1.7e9) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@asynccontextmanager
async def solo_on_b(
    nats_server: NatsServer, engine: Engine, kitchen: Component, prefix: str, db: SQLiteStorage
) -> AsyncIterator[tuple[ActorSystem, ClusterTransport, NatsBridge]]:
    """Node b on ``db`` (ack_wait 2 s) running the durable kitchen actor ``solo``, and a raw client."""
    cluster = Cluster(nats_server.url, node="b", prefix=prefix, ack_wait=2.0)
    async with (
        ActorSystem(engine=engine, storage=db, shutdown_timeout=1.0, cluster=cluster) as b,
        raw_client(nats_server) as raw,
    ):
        await probe(raw, prefix)
        await b.spawn("solo", kitchen, limits=PY, durable=True)
        assert b.cluster is not None
        yield b, b.cluster, raw


def test_processed_ids_are_pruned_by_age_in_batches(tmp_path: Path) -> None:
    """Ids recorded before the cutoff go, oldest first and at most a batch at a time;
    newer ones and other namespaces stay; a pruned id can be committed again."""
    clock = Clock()
    with SQLiteStorage(tmp_path / "n.db", clock=clock) as db:
        for i in range(5):
            db.commit_processed("a", {}, f"@n|{i}", ())
            clock.now += 10
        db.commit_processed("b", {}, "@n|0", ())
        cutoff = clock.now - 25  # ids 0, 1 and 2 were recorded before it
        assert db.prune_processed("a", cutoff, limit=2) == 2
        assert [db.processed("a", f"@n|{i}") for i in range(5)] == [None, None, "ok", "ok", "ok"]
        assert db.prune_processed("a", cutoff, limit=2) == 1
        assert db.prune_processed("a", cutoff, limit=2) == 0
        assert [db.processed("a", f"@n|{i}") for i in range(5)] == [None, None, None, "ok", "ok"]
        assert db.processed("b", "@n|0") == "ok"
        assert db.commit_processed("a", {}, "@n|0", ())  # forgotten: it would run again


def test_the_pruning_query_uses_the_timestamp_index(tmp_path: Path) -> None:
    """The batch's select walks the (ns, at) index, not the whole table."""
    with SQLiteStorage(tmp_path / "n.db") as db:
        db.commit_processed("a", {}, "@n|0", ())
    with sqlite3.connect(tmp_path / "n.db") as conn:
        plan = conn.execute(
            "EXPLAIN QUERY PLAN SELECT id FROM processed WHERE ns=? AND at<? ORDER BY at LIMIT ?",
            ("a", 1.0, 10),
        ).fetchall()
    assert any("processed_at" in str(row[-1]) for row in plan), plan


def test_an_old_file_is_migrated_and_its_ids_kept_a_whole_retention(tmp_path: Path) -> None:
    """A processed table from before the timestamp column gets it (its rows count as
    recorded at the upgrade) and the index; the rows, the outbox and the kv survive."""
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as conn:  # the tables as the previous release created them
        conn.execute(
            "CREATE TABLE processed (ns TEXT NOT NULL, id TEXT NOT NULL,"
            " outcome TEXT NOT NULL, PRIMARY KEY (ns, id)) WITHOUT ROWID"
        )
        conn.execute(
            "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " ns TEXT NOT NULL, id TEXT NOT NULL UNIQUE, subject TEXT NOT NULL, data BLOB NOT NULL)"
        )
        conn.executemany("INSERT INTO processed VALUES (?, ?, ?)", [("a", f"@n|{i}", "ok") for i in range(3)])
        conn.execute("INSERT INTO outbox (ns, id, subject, data) VALUES ('a', 'a|x:0', 's', x'00')")
    clock = Clock()
    upgraded = clock.now
    with SQLiteStorage(path, clock=clock) as db:
        assert db.processed("a", "@n|1") == "ok"
        assert [r.id for r in db.outbox()] == ["a|x:0"]
        clock.now += 5
        assert db.commit_processed("a", {}, "@n|new", ())
        assert not db.commit_processed("a", {}, "@n|2", ())  # still a duplicate
        assert db.prune_processed("a", upgraded) == 0  # nothing recorded before the upgrade
        assert db.prune_processed("a", upgraded + 1) == 3
        assert db.processed("a", "@n|new") == "ok"
    with sqlite3.connect(path) as conn:
        indexes = [r[1] for r in conn.execute("PRAGMA index_list(processed)")]
        stamps = conn.execute("SELECT id, at FROM processed").fetchall()
    assert "processed_at" in indexes
    assert stamps == [("@n|new", upgraded + 5)]
    with SQLiteStorage(path, clock=clock) as db:  # opening a migrated file again changes nothing
        assert db.processed("a", "@n|new") == "ok"


def test_pruning_does_not_block_or_lose_concurrent_commits(tmp_path: Path) -> None:
    """Commits from another thread go through between the prune's batches, none is
    lost, and the prune removes exactly the old ids."""
    clock = Clock()
    path = tmp_path / "n.db"
    old = 20_000
    with SQLiteStorage(path, clock=clock) as db:
        db.processed("a", "")  # creates the tables
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO processed (ns, id, outcome, at) VALUES ('a', ?, 'ok', ?)",
            [(f"@old|{i}", clock.now - WEEK - 1 - i) for i in range(old)],
        )
    order: list[str] = []
    started = threading.Event()
    with SQLiteStorage(path, clock=clock) as db:

        def prune() -> None:
            while True:
                removed = db.prune_processed("a", clock.now - WEEK, limit=100)
                order.append("p")
                started.set()
                if removed < 100:
                    return

        def commit() -> None:
            started.wait(10)
            for i in range(200):
                assert db.commit_processed("a", {f"k{i}": b"v"}, f"@new|{i}", ())
                order.append("c")

        threads = [threading.Thread(target=prune), threading.Thread(target=commit)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert [db.processed("a", f"@new|{i}") for i in range(200)] == ["ok"] * 200
        assert all(db.get("a", f"k{i}") == b"v" for i in range(200))
    with sqlite3.connect(path) as conn:
        left = conn.execute("SELECT count(*) FROM processed WHERE id LIKE '@old|%'").fetchone()[0]
    assert left == 0
    last_prune = len(order) - 1 - order[::-1].index("p")
    assert "c" in order[:last_prune], "no commit finished while the prune was running"


def test_the_pruner_waits_for_a_grace_after_an_actor_is_first_consumed() -> None:
    """An actor's ids are due only once it has been consumed here for the grace;
    an actor that stops being consumed starts its grace again when it comes back."""
    pruner = Pruner(retention=100.0, grace=10.0)
    assert pruner.due(["a"], 1000.0) == []
    assert pruner.due(["a", "b"], 1009.0) == []
    assert pruner.due(["a", "b"], 1010.0) == [("a", 910.0)]
    assert pruner.due(["b"], 1019.0) == [("b", 919.0)]
    assert pruner.due(["a", "b"], 1020.0) == [("b", 920.0)]  # a is new again


def test_a_retention_below_the_dedup_window_or_the_redelivery_horizon_is_refused() -> None:
    """processed_retention must cover the stream's dedup window and twice ack_wait."""
    url = "nats://127.0.0.1:4222"
    assert Cluster(url, node="a").processed_retention == WEEK
    with pytest.raises(ValueError, match=r"at least the stream's dedup_window \(86400 s\)"):
        Cluster(url, node="a", processed_retention=3600)
    with pytest.raises(ValueError, match=r"twice ack_wait \(600 s\)"):
        Cluster(url, node="a", dedup_window=60, ack_wait=300, processed_retention=500)
    with pytest.raises(ValueError, match="positive number of seconds"):
        Cluster(url, node="a", processed_retention=float("nan"))
    Cluster(url, node="a", dedup_window=60, ack_wait=2, processed_retention=60)


pytestmark = pytest.mark.anyio


async def publish(raw: NatsBridge, prefix: str, message_id: str, payload: bytes) -> None:
    """A frame for "solo" straight into the stream with ``message_id``."""
    frame = encode_frame(Frame("x", 0.0, Tell(recipient="solo", payload=payload)))
    js = raw.client.jetstream()
    await raw.call(js.publish(f"{prefix}.dur.solo", frame, headers={"Nats-Msg-Id": message_id}))


async def test_a_node_prunes_past_retention_and_still_skips_newer_redeliveries(
    nats_server: NatsServer, engine: Engine, kitchen: Component, prefix: str, tmp_path: Path
) -> None:
    """A node forgets its actor's ids older than the retention (once the actor has been
    consumed for twice ack_wait) and keeps newer ones and other actors' ids: a
    redelivery of a kept id is skipped, one of a forgotten id runs again."""
    clock = Clock()
    db = SQLiteStorage(tmp_path / "b.db", clock=clock)
    db.commit_processed("solo", {}, "@x|old", ())
    db.commit_processed("gone", {}, "@x|old", ())  # an actor not running here
    clock.now += 5 * DAY
    db.commit_processed("solo", {}, "@x|new", ())
    clock.now += 2 * DAY + 60  # @x|old is a week and a minute old, @x|new two days
    try:
        async with solo_on_b(nats_server, engine, kitchen, prefix, db) as (b, transport, raw):
            assert transport.durable.dedup_window == DAY  # as the server reports the stream's
            assert await transport.prune_processed() == 0  # consumed for less than twice ack_wait
            assert db.processed("solo", "@x|old") == "ok"
            clock.now += 4.0
            assert await transport.prune_processed() == 1
            assert transport.counts["processed-pruned"] == 1
            assert db.processed("solo", "@x|old") is None
            assert db.processed("solo", "@x|new") == "ok"
            assert db.processed("gone", "@x|old") == "ok"
            await publish(raw, prefix, "@x|new", b"hop knew done")
            await publish(raw, prefix, "@x|old", b"hop kold done")
            with anyio.fail_after(30):
                got = await take(raw, prefix, 1, quiet=0.5)
            assert [payload for _, payload in got] == [b"hop kold"]  # past retention: it ran again
            cell = b.registry.lookup("solo")
            assert isinstance(cell, DurableCell)
            assert cell.durable_counts == {"processed": 1, "skipped": 1, "failed": 0}
            assert db.get("solo", "hop/knew") is None
            assert db.get("solo", "hop/kold") == b"1"
    finally:
        db.close()


async def test_durable_messages_commit_while_a_long_prune_runs(
    nats_server: NatsServer, engine: Engine, kitchen: Component, prefix: str, tmp_path: Path
) -> None:
    """A pass forgetting many ids, batch by batch on a worker thread, does not hold up
    the durable actor: its messages are handled and committed before the pass ends,
    and none of their ids is lost."""
    clock = Clock()
    path = tmp_path / "b.db"
    old = 50_000
    with SQLiteStorage(path, clock=clock) as db:
        db.processed("solo", "")
    with sqlite3.connect(path) as conn:
        conn.executemany(
            "INSERT INTO processed (ns, id, outcome, at) VALUES ('solo', ?, 'ok', ?)",
            [(f"@old|{i}", clock.now - 2 * WEEK + i) for i in range(old)],
        )
    db = SQLiteStorage(path, clock=clock)
    n = 20
    try:
        async with solo_on_b(nats_server, engine, kitchen, prefix, db) as (b, transport, raw):
            transport.prune_batch = 25
            await transport.prune_processed()  # the actor is seen: its grace starts
            clock.now += 4.0
            pruned: list[int] = []

            async def pass_() -> None:
                pruned.append(await transport.prune_processed())

            async with anyio.create_task_group() as tg:
                tg.start_soon(pass_)
                for i in range(n):
                    await b.ref("solo").tell(f"hop m{i} done".encode())
                with anyio.fail_after(60):
                    got = await take(raw, prefix, n)
                assert pruned == [], "the messages waited for the whole prune"
            assert pruned == [old]
            assert sorted(p for _, p in got) == sorted(f"hop m{i}".encode() for i in range(n))
            cell = b.registry.lookup("solo")
            assert isinstance(cell, DurableCell)
            assert cell.durable_counts["processed"] == n
        with sqlite3.connect(path) as conn:
            rows = conn.execute("SELECT id FROM processed WHERE ns='solo'").fetchall()
        assert len(rows) == n
        assert all(r[0].startswith("@b|") for r in rows)
    finally:
        db.close()


async def test_the_node_prunes_on_its_own_every_prune_every(
    nats_server: NatsServer,
    engine: Engine,
    kitchen: Component,
    prefix: str,
    tmp_path: Path,
    *,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The node's pruner runs by itself: with a short period, an id past retention goes
    without anyone calling a pass."""
    monkeypatch.setattr(ClusterTransport, "prune_every", 0.02)
    clock = Clock()
    db = SQLiteStorage(tmp_path / "b.db", clock=clock)
    db.commit_processed("solo", {}, "@x|old", ())
    clock.now += 2 * WEEK
    cluster = Cluster(nats_server.url, node="b", prefix=prefix, ack_wait=0.01, dedup_window=1.0,
                      processed_retention=1.0)  # fmt: skip
    try:
        async with ActorSystem(engine=engine, storage=db, shutdown_timeout=1.0, cluster=cluster) as b:
            transport = b.cluster
            assert transport is not None
            await b.spawn("solo", kitchen, limits=PY, durable=True)
            with anyio.fail_after(10):
                while db.processed("solo", "@x|old") is not None:
                    clock.now += 0.01
                    await anyio.sleep(0.02)  # the pruner's own period: it has no event to wait on
            assert transport.counts["processed-pruned"] == 1
    finally:
        db.close()
