"""Durable mode: a handler's processed id and outbox commit with its storage
writes; redeliveries are skipped and acked; the outbox is republished with
the same ids; the durable subjects refuse hostile messages. Real SQLite, a
real nats-server, the kitchen guest."""

from __future__ import annotations

import io
import sqlite3
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING, Any

import anyio
import msgspec
import pytest

from tests.conftest import PY
from tests.nats_server import raw_client
from wasmactors._clustercli import cluster_status
from wasmactors.actors import ActorSystem, DeadLetter, DeadLetterReason, DurableError, Topology
from wasmactors.actors._durable import DurableCell, DurableJournal
from wasmactors.messaging import Cluster, Reply, Request, Tell
from wasmactors.messaging._durable import consumer_name, derived_id
from wasmactors.messaging._wire import Frame, address_token, encode_frame
from wasmactors.runtime import HostContext, Instance, MemoryStorage, OutboxRow, SQLiteStorage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

    from tests.nats_server import NatsServer
    from wasmactors.messaging._bridge import NatsBridge
    from wasmactors.runtime import Component, Engine


def test_the_journal_commits_id_outbox_and_writes_together(kitchen: Component, tmp_path: Path) -> None:
    """A durable call's storage writes, its processed id and its sends land in one
    transaction; a crash before the commit leaves none of them; an id already
    processed commits nothing at all."""
    db = SQLiteStorage(tmp_path / "node.db")
    routed: list[Tell] = []

    def route(envelope: Tell) -> tuple[str, bytes]:
        routed.append(envelope)
        return "p.dur." + envelope.recipient, encode_frame(Frame("n", 0.0, envelope))

    journal = DurableJournal(db, "me", route)
    instance = Instance(kitchen, PY, HostContext("me", storage=db, journal=journal))
    try:
        journal.begin("@n|m1")
        result = instance.handle_message(b"hop k1 next")
        assert journal.end() == "@n|m1"
        assert result.outbox == ()  # the send is in the outbox table, not delivered by the cell
        assert db.processed("me", "@n|m1") == "ok"
        assert db.get("me", "hop/k1") == b"1"
        [row] = db.outbox()
        assert (row.id, row.subject) == (derived_id("me", "@n|m1", 0), "p.dur.next")
        assert routed == [Tell(recipient="next", payload=b"hop k1", sender="me")]

        journal.begin("@n|m2")
        crashed = instance.handle_message(b"set-then-raise k2 v next")
        assert journal.end() is None
        assert type(crashed.outcome).__name__ == "Crash"
        assert db.processed("me", "@n|m2") is None
        assert db.get("me", "k2") is None
        assert len(db.outbox()) == 1
    finally:
        instance.close()
    instance = Instance(kitchen, PY, HostContext("me", storage=db, journal=journal))
    try:
        journal.begin("@n|m1")  # a redelivery that slipped past the check: nothing is written
        instance.handle_message(b"hop k1 next")
        journal.end()
        assert db.get("me", "hop/k1") == b"1"
        assert len(db.outbox()) == 1
        # Without a current message (a callback, a core-mode message) it is a plain commit.
        instance.handle_message(b"set plain yes")
        assert db.get("me", "plain") == b"yes"
        assert db.processed("me", "") is None
    finally:
        instance.close()
        db.close()


def test_durable_tables_survive_a_reopen(tmp_path: Path) -> None:
    """Processed ids and outbox rows are in the file: a new process sees them, in commit order."""
    path = tmp_path / "node.db"
    with SQLiteStorage(path) as db:
        rows = [OutboxRow(f"a|x:{i}", "s", b"d") for i in range(3)]
        assert db.commit_processed("a", {"k": b"v"}, "@n|1", rows)
        assert not db.commit_processed("a", {"k": b"w"}, "@n|1", rows)  # the same id: refused whole
    with SQLiteStorage(path) as db:
        assert db.processed("a", "@n|1") == "ok"
        assert db.get("a", "k") == b"v"
        assert [r.id for r in db.outbox()] == [f"a|x:{i}" for i in range(3)]
        db.outbox_done([r.seq for r in db.outbox()[:2]])
        assert [r.id for r in db.outbox()] == ["a|x:2"]
        assert db.usage("a") > 0


def test_topology_durable_is_inherited_by_a_subtree(tmp_path: Path) -> None:
    """`durable = true` on a supervisor makes its actors durable; a child may opt out."""
    from tests.guests import ROOT

    manifest = ROOT / "examples" / "echo" / "component.toml"
    path = tmp_path / "t.toml"
    path.write_text(
        f"""
[[child]]
type = "supervisor"
name = "s"
durable = true
  [[child.child]]
  type = "actor"
  name = "x"
  component = "{manifest}"
  [[child.child]]
  type = "actor"
  name = "y"
  durable = false
  component = "{manifest}"
[[child]]
type = "actor"
name = "z"
component = "{manifest}"
"""
    )
    topo = Topology.load(path)
    [sup, z] = topo.children
    assert [c.durable for c in sup.children] == [True, False]  # type: ignore[union-attr]
    assert z.durable is False  # type: ignore[union-attr]


pytestmark = pytest.mark.anyio


@asynccontextmanager
async def durable_node(
    server: NatsServer, engine: Engine, prefix: str, name: str, db: Path, **options: Any
) -> AsyncIterator[ActorSystem]:
    """A node with its own SQLite file, as durable actors need."""
    options.setdefault("ack_wait", 2.0)
    cluster = Cluster(server.url, node=name, prefix=prefix, **options)
    async with ActorSystem(engine=engine, storage=db, shutdown_timeout=1.0, cluster=cluster) as system:
        yield system


async def probe(raw: NatsBridge, prefix: str, address: str = "done") -> None:
    """Declare ``address`` durable and read its messages with a consumer of the test's own."""
    from nats.js.api import AckPolicy, ConsumerConfig

    async def setup() -> None:
        js = raw.client.jetstream()
        kv = await js.key_value(f"{prefix}-durables")
        await kv.put(address_token(address), b"test")
        config = ConsumerConfig(
            durable_name="probe", ack_policy=AckPolicy.EXPLICIT, filter_subject=f"{prefix}.dur.{address}"
        )
        await js.add_consumer(f"{prefix}-durable", config)

    await raw.call(setup())


async def take(raw: NatsBridge, prefix: str, count: int, *, quiet: float = 0.0) -> list[tuple[str, bytes]]:
    """``count`` messages from the probe (message id, payload); then, with
    ``quiet``, that nothing more comes for that long."""
    from nats.errors import TimeoutError as NatsTimeout

    decoder = msgspec.msgpack.Decoder(Frame)

    async def fetch(want: int, timeout: float) -> list[tuple[str, bytes]]:
        js = raw.client.jetstream()
        sub = await js.pull_subscribe_bind(durable="probe", stream=f"{prefix}-durable")
        got: list[tuple[str, bytes]] = []
        try:
            while len(got) < want:
                try:
                    msgs = await sub.fetch(min(want - len(got), 256), timeout=timeout)
                except (NatsTimeout, TimeoutError):
                    if quiet:
                        return got
                    continue
                for msg in msgs:
                    await msg.ack()
                    got.append(
                        (
                            (msg.headers or {}).get("Nats-Msg-Id", ""),
                            decoder.decode(msg.data).envelope.payload,
                        )
                    )
        finally:
            await sub.unsubscribe()
        return got

    got = await raw.call(fetch(count, 5.0))
    if quiet:
        got += await raw.call(fetch(1, quiet))
    return got


async def test_durable_needs_sqlite_and_a_cluster(
    nats_server: NatsServer, engine: Engine, kitchen: Component, prefix: str
) -> None:
    """`durable=True` is refused with a clear error without SQLite storage or without a cluster."""
    cluster = Cluster(nats_server.url, node="a", prefix=prefix)
    async with ActorSystem(engine=engine, storage=MemoryStorage(), cluster=cluster) as system:
        with pytest.raises(DurableError, match="needs SQLite storage"):
            await system.spawn("k", kitchen, limits=PY, durable=True)
    async with ActorSystem(engine=engine, storage=":memory:") as system:
        with pytest.raises(DurableError, match="join a cluster"):
            await system.spawn("k", kitchen, limits=PY, durable=True)


async def test_a_durable_pipeline_over_two_nodes_handles_each_message_once(
    nats_server: NatsServer, engine: Engine, kitchen: Component, prefix: str, tmp_path: Path
) -> None:
    """Tells to a durable actor on node a travel through the stream; its sends reach a
    durable actor on node b and then the probe, each message once, with derived ids."""
    n = 200
    async with (
        durable_node(nats_server, engine, prefix, "a", tmp_path / "a.db") as a,
        durable_node(nats_server, engine, prefix, "b", tmp_path / "b.db") as b,
        raw_client(nats_server) as raw,
    ):
        await probe(raw, prefix)
        await b.spawn("last", kitchen, limits=PY, durable=True)
        await a.spawn("first", kitchen, limits=PY, durable=True)
        ref = b.ref("first")  # from the other node: it publishes to the stream
        for i in range(n):
            await ref.tell(f"hop m{i} last done".encode())
        with anyio.fail_after(60):
            got = await take(raw, prefix, n, quiet=0.5)
        assert sorted(payload for _, payload in got) == sorted(f"hop m{i}".encode() for i in range(n))
        assert all(mid.startswith("last|") for mid, _ in got)
        cells = [a.registry.lookup("first"), b.registry.lookup("last")]
        status = io.StringIO()
        await cluster_status(nats_server.url, prefix, status)
        shown = status.getvalue()
        assert f"durable stream {prefix}-durable: " in shown
        assert "  first  lag 0  delivered, not acked 0" in shown
        assert "  last  lag 0  delivered, not acked 0" in shown
        for system, cell in zip((a, b), cells, strict=True):
            assert isinstance(cell, DurableCell)
            assert cell.durable_counts == {"processed": n, "skipped": 0, "failed": 0}
            assert system.storage is not None
            for i in range(n):
                assert system.storage.get(cell.address, f"hop/m{i}") == b"1"


async def test_a_redelivered_message_is_skipped_and_acked(
    nats_server: NatsServer, engine: Engine, kitchen: Component, prefix: str, tmp_path: Path
) -> None:
    """A message whose id the actor's SQLite already records as processed (a crash
    between commit and ack) is acked without running the handler."""
    path = tmp_path / "b.db"
    with SQLiteStorage(path) as db:
        db.commit_processed("solo", {}, "@x|1", ())
    async with (
        durable_node(nats_server, engine, prefix, "b", path) as b,
        raw_client(nats_server) as raw,
    ):
        await probe(raw, prefix)
        await b.spawn("solo", kitchen, limits=PY, durable=True)
        js_publish = raw.client.jetstream().publish
        for mid, key in (("@x|1", "k1"), ("@x|2", "k2")):
            frame = encode_frame(Frame("x", 0.0, Tell(recipient="solo", payload=f"hop {key} done".encode())))
            await raw.call(js_publish(f"{prefix}.dur.solo", frame, headers={"Nats-Msg-Id": mid}))
        with anyio.fail_after(30):
            got = await take(raw, prefix, 1, quiet=0.5)
        assert [payload for _, payload in got] == [b"hop k2"]
        cell = b.registry.lookup("solo")
        assert isinstance(cell, DurableCell)
        assert cell.durable_counts == {"processed": 1, "skipped": 1, "failed": 0}
        # An ask travels durably too; the handler sees its message id in a header.
        with anyio.fail_after(20):
            headers = await b.ref("solo").ask(b"headers", timeout=15)
        assert headers.startswith(b"wasmactors-message-id=@b|"), headers
        assert cell.durable_counts["processed"] == 2
        assert b.storage is not None
        assert b.storage.get("solo", "hop/k1") is None
        assert b.storage.get("solo", "hop/k2") == b"1"

    # The node drained its connection when it left: the server has every ack it sent.
    async with raw_client(nats_server) as raw:
        js = raw.client.jetstream()
        info = await raw.call(js.consumer_info(f"{prefix}-durable", consumer_name("solo")))
        assert (info.num_ack_pending, info.num_redelivered, info.num_pending) == (0, 0, 0)


async def test_the_outbox_is_republished_at_start_with_the_same_ids(
    nats_server: NatsServer, engine: Engine, prefix: str, tmp_path: Path
) -> None:
    """Outbox rows a killed node left are published when it starts again, with their
    ids: the stream drops the one it already had, the other arrives once."""
    path = tmp_path / "b.db"
    frames = [
        encode_frame(Frame("b", 0.0, Tell(recipient="done", payload=f"out {i}".encode(), sender="solo")))
        for i in range(2)
    ]
    ids = [derived_id("solo", "@x|1", i) for i in range(2)]
    subject = f"{prefix}.dur.done"
    with SQLiteStorage(path) as db:
        db.commit_processed(
            "solo", {}, "@x|1", [OutboxRow(i, subject, f) for i, f in zip(ids, frames, strict=True)]
        )
    async with raw_client(nats_server) as raw:
        async with durable_node(nats_server, engine, prefix, "a", tmp_path / "a.db"):
            pass  # creates the stream and the bucket
        await probe(raw, prefix)
        # Published before the crash, its row not yet deleted:
        await raw.call(raw.client.jetstream().publish(subject, frames[0], headers={"Nats-Msg-Id": ids[0]}))
        async with durable_node(nats_server, engine, prefix, "b", path) as b:
            with anyio.fail_after(30):
                got = await take(raw, prefix, 2, quiet=1.0)
            assert got == [(ids[0], b"out 0"), (ids[1], b"out 1")]
            assert b.cluster is not None
    with SQLiteStorage(path) as db:
        assert db.outbox() == []


def abuse(prefix: str) -> list[tuple[bytes, str, str]]:
    """(frame, message id, words expected in the dead letter) for the durable subject of "solo"."""
    ok = Tell(recipient="solo", payload=b"hop k done")
    return [
        (b"\xc1\xc1 not msgpack", "@m|1", "undecodable frame"),
        (msgspec.msgpack.encode({"what": 1}), "@m|2", "invalid frame"),
        (b"x" * 5000, "@m|3", "exceeds the limit"),
        (encode_frame(Frame("m", 0, ok)), "", "no message id"),
        (encode_frame(Frame("m", 0, ok)), "@other|4", "forged message id"),
        (encode_frame(Frame("m", 0, Tell(recipient="solo", sender="first"))), "@m|5", "forged message id"),
        (encode_frame(Frame("m", 0, ok)), "@m|\x01bad", "invalid message id"),
        (encode_frame(Frame("m", 0, ok)), "@m|" + "x" * 400, "invalid message id"),
        (encode_frame(Frame("m", 0, Tell(recipient="other"))), "@m|6", "does not match"),
        (
            encode_frame(Frame("m", 0, Reply(recipient="solo", correlation_id=1))),
            "@m|7",
            "only tells and requests",
        ),
        (
            encode_frame(Frame("m", 0, Request(recipient="solo", sender="$ask/zz/1", correlation_id=1))),
            "@m|8",
            "forged sender",
        ),
    ]


async def test_hostile_messages_on_a_durable_subject_are_dead_letters(
    nats_server: NatsServer, engine: Engine, kitchen: Component, prefix: str, tmp_path: Path
) -> None:
    """Garbage, oversize, id-less, forged and misaddressed messages in the stream are
    dead-lettered with a reason and terminated (never redelivered); the actor then
    handles a good message."""
    async with (
        durable_node(nats_server, engine, prefix, "b", tmp_path / "b.db", max_frame=4096) as b,
        raw_client(nats_server) as raw,
    ):
        await probe(raw, prefix)
        await b.spawn("solo", kitchen, limits=PY, durable=True)
        cases = abuse(prefix)
        js = raw.client.jetstream()
        letters: list[DeadLetter] = []
        async with b.dead_letters() as dead:
            for data, mid, _ in cases:
                headers = {"Nats-Msg-Id": mid} if mid else None
                await raw.call(js.publish(f"{prefix}.dur.solo", data, headers=headers))
            with anyio.fail_after(30):
                while len(letters) < len(cases):
                    letters.append(await dead.receive())
        details = [letter.detail for letter in letters]
        for _, _, words in cases:
            match = next((d for d in details if words in d), None)
            assert match is not None, f"no dead letter saying {words!r}: {details}"
            details.remove(match)
        assert {letter.reason for letter in letters} == {DeadLetterReason.INVALID_MESSAGE}
        good = encode_frame(Frame("m", 0, Tell(recipient="solo", payload=b"hop good done")))
        await raw.call(js.publish(f"{prefix}.dur.solo", good, headers={"Nats-Msg-Id": "@m|good"}))
        with anyio.fail_after(30):
            assert [p for _, p in await take(raw, prefix, 1)] == [b"hop good"]
        assert b.storage is not None
        assert b.storage.get("solo", "hop/k") is None
        info = await raw.call(js.consumer_info(f"{prefix}-durable", consumer_name("solo")))
        assert (info.num_redelivered or 0) == 0


def test_processed_and_outbox_are_plain_sqlite(tmp_path: Path) -> None:
    """The tables can be read with sqlite3 (the end-to-end tests count with it)."""
    path = tmp_path / "n.db"
    with SQLiteStorage(path) as db:
        db.commit_processed("a", {}, "@n|1", [OutboxRow("a|x:0", "", b"f")])
    with sqlite3.connect(path) as conn:
        assert conn.execute("SELECT ns, id, outcome FROM processed").fetchall() == [("a", "@n|1", "ok")]
        assert conn.execute("SELECT id FROM outbox").fetchall() == [("a|x:0",)]


async def test_a_crashing_message_is_recorded_and_not_redelivered(
    nats_server: NatsServer, engine: Engine, kitchen: Component, prefix: str, tmp_path: Path
) -> None:
    """A message whose handler crashes is a dead letter as in core mode, recorded as
    failed and acked (a poison message is not retried forever); the restarted actor
    handles the next one."""
    async with (
        durable_node(nats_server, engine, prefix, "b", tmp_path / "b.db") as b,
        raw_client(nats_server) as raw,
    ):
        await probe(raw, prefix)
        await b.spawn("solo", kitchen, limits=PY, durable=True)
        async with b.dead_letters() as dead:
            await b.ref("solo").tell(b"raise")
            with anyio.fail_after(20):
                letter = await dead.receive()
        assert letter.reason is DeadLetterReason.CRASHED_HANDLER
        await b.ref("solo").tell(b"hop after done")
        with anyio.fail_after(30):
            assert [p for _, p in await take(raw, prefix, 1, quiet=0.5)] == [b"hop after"]
        cell = b.registry.lookup("solo")
        assert isinstance(cell, DurableCell)
        assert cell.durable_counts == {"processed": 1, "skipped": 0, "failed": 1}
    async with raw_client(nats_server) as raw:
        js = raw.client.jetstream()
        info = await raw.call(js.consumer_info(f"{prefix}-durable", consumer_name("solo")))
        assert (info.num_ack_pending, info.num_redelivered, info.num_pending) == (0, 0, 0)
    with SQLiteStorage(tmp_path / "b.db") as db, sqlite3.connect(db.path) as conn:
        outcomes = sorted(r[0] for r in conn.execute("SELECT outcome FROM processed WHERE ns='solo'"))
    assert outcomes == ["failed", "ok"]
