"""Two nodes (two ActorSystems in this process) joined through a real
nats-server: remote tell and ask behave as local ones, errors included."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from tests.conftest import PY, WAT
from tests.nats_server import node, raw_client
from tests.support import Recorder
from wasmactors.actors import (
    ActorAppError,
    ActorCrashedError,
    ActorSystem,
    AskTimeoutError,
    DeadLetterReason,
    MailboxFullError,
    Reject,
    UnknownActorError,
)
from wasmactors.messaging import NameTakenError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from tests.nats_server import NatsServer
    from wasmactors.actors import NativeContext
    from wasmactors.messaging import Envelope
    from wasmactors.runtime import Component, Engine

pytestmark = pytest.mark.anyio


class Calc:
    """``add N`` adds, ``get`` answers the total, ``bad`` rejects, ``boom`` crashes."""

    def __init__(self) -> None:
        self.total = 0
        self.senders: list[str | None] = []

    async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None:
        self.senders.append(envelope.sender)
        word, _, arg = envelope.payload.partition(b" ")
        if word == b"add":
            self.total += int(arg)
            return None
        if word == b"get":
            return str(self.total).encode()
        if word == b"bad":
            raise Reject("no such thing")
        if word == b"slow":
            await anyio.sleep(float(arg))
            return b"late"
        raise RuntimeError("boom")


async def test_remote_tell_and_ask(nats_server: NatsServer, engine: Engine, prefix: str) -> None:
    """A tell and an ask from node a reach an actor on node b, which sees the sender."""
    calc = Calc()
    async with node(nats_server, engine, prefix, "a") as a, node(nats_server, engine, prefix, "b") as b:
        await b.spawn_native("calc", calc)
        ref = a.ref("calc")
        await ref.tell(b"add 2", sender=None)
        await ref.tell(b"add 3")
        with anyio.fail_after(10):
            assert await ref.ask(b"get", timeout=5) == b"5"
        assert calc.senders[:2] == [None, None]
        assert str(calc.senders[2]).startswith("$ask/a/")


async def test_remote_errors_are_local_errors(nats_server: NatsServer, engine: Engine, prefix: str) -> None:
    """App errors, crashes, timeouts and unknown actors raise the same errors across nodes."""
    async with node(nats_server, engine, prefix, "a") as a, node(nats_server, engine, prefix, "b") as b:
        await b.spawn_native("calc", Calc)
        ref = a.ref("calc")
        with anyio.fail_after(20):
            with pytest.raises(ActorAppError, match="no such thing"):
                await ref.ask(b"bad", timeout=5)
            with pytest.raises(ActorCrashedError):
                await ref.ask(b"boom", timeout=5)
            with pytest.raises(AskTimeoutError):
                await ref.ask(b"slow 1", timeout=0.2)
            with pytest.raises(UnknownActorError):
                await a.ref("nobody").ask(b"get", timeout=5)
            with pytest.raises(UnknownActorError):
                await a.ref("nobody").tell(b"x")
            # The restarted actor still answers.
            assert await ref.ask(b"get", timeout=5) == b"0"


async def test_name_race_has_one_winner(nats_server: NatsServer, engine: Engine, prefix: str) -> None:
    """Two nodes claiming one name at once: exactly one spawns, the other gets NameTakenError."""
    async with node(nats_server, engine, prefix, "a") as a, node(nats_server, engine, prefix, "b") as b:
        results: dict[str, object] = {}

        async def claim(system: ActorSystem, who: str) -> None:
            try:
                await system.spawn_native("unique", Recorder)
                results[who] = "won"
            except NameTakenError as exc:
                results[who] = exc

        with anyio.fail_after(10):
            async with anyio.create_task_group() as tg:
                tg.start_soon(claim, a, "a")
                tg.start_soon(claim, b, "b")
        assert sorted(str(v) == "won" for v in results.values()) == [False, True]


async def test_stopped_actor_frees_its_name(nats_server: NatsServer, engine: Engine, prefix: str) -> None:
    """A normal stop releases the name at once: another node may claim it."""
    async with node(nats_server, engine, prefix, "a") as a, node(nats_server, engine, prefix, "b") as b:
        with anyio.fail_after(10):
            await a.spawn_native("worker", Recorder)
            with pytest.raises(NameTakenError):
                await b.spawn_native("worker", Recorder)
            assert b.cluster is not None
            await b.cluster.wait_owned(["worker"])
            watch = b.monitor("worker")  # a monitor across nodes
            assert not watch.down
            await a.stop("worker")
            assert await watch.wait() == "its node released it or its lease lapsed"
            while True:  # the release is a KV delete the watch shows b
                try:
                    await b.spawn_native("worker", Recorder)
                    break
                except NameTakenError:
                    await anyio.sleep(0.05)
            assert await a.ref("worker").ask(b"hi", timeout=5) == b"hi"


async def test_garbage_on_an_actor_subject_is_a_dead_letter(
    nats_server: NatsServer, engine: Engine, prefix: str
) -> None:
    """Garbage published straight to an actor's subject is dead-lettered with a reason; the node serves on."""
    async with node(nats_server, engine, prefix, "b") as b, raw_client(nats_server) as raw:
        await b.spawn_native("calc", Calc)
        async with b.dead_letters() as dead:
            raw.publish(f"{prefix}.act.calc", b"\xc1garbage")
            with anyio.fail_after(5):
                letter = await dead.receive()
        assert letter.reason is DeadLetterReason.INVALID_MESSAGE
        assert "undecodable batch" in letter.detail


class Probe:
    """Collects payloads; ``done`` is set once ``expected`` arrived."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.seen: list[bytes] = []
        self.done = anyio.Event()

    async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None:
        self.seen.append(envelope.payload)
        if len(self.seen) >= self.expected:
            self.done.set()
        return None


async def test_guest_send_request_and_callback_across_nodes(
    nats_server: NatsServer,
    engine: Engine,
    prefix: str,
    kitchen: Component,
    wat: Mapping[str, Component],
) -> None:
    """A guest's send and request reach actors on another node unchanged; replies,
    crashes and unknown recipients come back as its callbacks."""
    async with node(nats_server, engine, prefix, "a") as a, node(nats_server, engine, prefix, "b") as b:
        await b.spawn("echo", wat["echo"], limits=WAT)
        await b.spawn("crashing", wat["unreachable"], limits=WAT)
        inbox = Probe(expected=1)
        await b.spawn_native("inbox", inbox)
        probe = Probe(expected=3)
        await a.spawn_native("probe", probe)
        k = await a.spawn("k", kitchen, limits=PY)
        with anyio.fail_after(30):
            assert await k.ask(b"send inbox hello there", timeout=10) == b"sent"
            await inbox.done.wait()
            assert await k.ask(b"request echo 5000 ping", timeout=10) == b"1"
            assert await k.ask(b"request crashing 5000 ping", timeout=10) == b"2"
            assert await k.ask(b"request nobody 5000 ping", timeout=10) == b"3"
            await probe.done.wait()
        assert inbox.seen == [b"hello there"]
        assert sorted(probe.seen) == [
            b"1 ok ping",
            b"2 err RequestError_Crashed:trap",
            b"3 err RequestError_UnknownRecipient:nobody",
        ]


async def test_backpressure_and_full_remote_mailbox(
    nats_server: NatsServer, engine: Engine, prefix: str
) -> None:
    """A full remote mailbox is mailbox-full, as locally: an ask finds no room within its
    timeout, a tell_nowait past the in-flight bound fails at once."""
    gate = anyio.Event()

    class Blocked:
        async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None:
            await gate.wait()
            return b"ok"

    async with (
        node(nats_server, engine, prefix, "a", max_in_flight=2) as a,
        node(nats_server, engine, prefix, "b") as b,
    ):
        await b.spawn_native("slow", Blocked(), mailbox_size=1)
        ref = a.ref("slow")
        with anyio.fail_after(20):
            await ref.tell(b"1")  # being handled (blocked)
            await ref.tell(b"2")  # fills the mailbox
            with pytest.raises(AskTimeoutError, match="mailbox space"):
                await ref.ask(b"3", timeout=0.3)
            async with a.dead_letters() as dead:
                ref.tell_nowait(b"4")  # in flight, answered mailbox-full
                letter = await dead.receive()
            assert letter.reason is DeadLetterReason.MAILBOX_FULL
            assert letter.envelope.payload == b"4"
            async with anyio.create_task_group() as tg:
                # Two tells wait at b for room: a's two in-flight slots to b are taken.
                tg.start_soon(ref.tell, b"5")
                tg.start_soon(ref.tell, b"6")
                while a.cluster is not None and a.cluster.statistics()["in_flight"] < 2:
                    await anyio.lowlevel.checkpoint()
                with pytest.raises(MailboxFullError):
                    ref.tell_nowait(b"7")
                gate.set()
            assert await ref.ask(b"8", timeout=5) == b"ok"


async def test_a_guest_stream_to_a_slow_remote_actor_loses_nothing(
    nats_server: NatsServer, engine: Engine, prefix: str, kitchen: Component
) -> None:
    """Backpressure across nodes is as lossless as in process: a guest sends 400 messages
    in one call to a slow actor with a 4-message mailbox on another node (past a's
    in-flight bound of 16); every one arrives, in order, and nothing is a dead letter."""

    class Slow(Probe):
        async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None:
            await anyio.sleep(0.001)
            return await super().handle_message(envelope, context)

    sink = Slow(expected=400)
    async with (
        node(nats_server, engine, prefix, "a", max_in_flight=16) as a,
        node(nats_server, engine, prefix, "b") as b,
    ):
        await b.spawn_native("sink", sink, mailbox_size=4)
        k = await a.spawn("k", kitchen, limits=PY)
        with anyio.fail_after(60):
            assert await k.ask(b"send-many sink 400", timeout=30) == b"sent"
            await sink.done.wait()
        assert sink.seen == [str(i).encode() for i in range(400)]
        assert dict(a.dead_letter_counts) == {}
        assert dict(b.dead_letter_counts) == {}


_DOOMED = """
import sys, anyio
from wasmactors.actors import ActorSystem
from wasmactors.messaging import Cluster

class Echo:
    async def handle_message(self, envelope, context):
        return envelope.payload

async def main():
    cluster = Cluster(sys.argv[1], node="doomed", prefix=sys.argv[2], lease=1.0)
    async with ActorSystem(cluster=cluster) as system:
        await system.spawn_native("held", Echo())
        print("ready", flush=True)
        await anyio.sleep_forever()

anyio.run(main)
"""


async def test_a_killed_node_s_names_are_taken_over_at_once(
    nats_server: NatsServer, engine: Engine, prefix: str
) -> None:
    """kill -9 of a node: its actors are unknown at once (no responders), and its
    names (its own too) can be claimed at once, since it no longer answers pings."""
    import sys

    async with await anyio.open_process([sys.executable, "-c", _DOOMED, nats_server.url, prefix]) as process:
        await _ready(process)
        async with node(nats_server, engine, prefix, "a") as a:
            with anyio.fail_after(20):
                assert await a.ref("held").ask(b"hi", timeout=5) == b"hi"
                with pytest.raises(NameTakenError):
                    await a.spawn_native("held", Calc)
                process.kill()
                await process.wait()
                # The server drops the dead connection's subscriptions once it sees the
                # socket close; until then a message may go to it (and an ask time out).
                assert a.cluster is not None
                leases, bridge = a.cluster.leases, a.cluster._bridge
                while await bridge.call(leases._alive("doomed")):
                    pass
                with pytest.raises(UnknownActorError):
                    await a.ref("held").ask(b"hi", timeout=5)
                await a.spawn_native("held", Calc)
                assert await a.ref("held").ask(b"get", timeout=5) == b"0"
                # A node restarted under the dead one's name joins at once as well.
                async with node(nats_server, engine, prefix, "doomed") as again:
                    assert again.cluster is not None


async def _ready(process: anyio.abc.Process) -> None:
    assert process.stdout is not None
    with anyio.fail_after(30):
        ready = b""
        while not ready.endswith(b"\n"):
            ready += await process.stdout.receive(1)
    assert ready.strip() == b"ready"


async def test_names_of_a_paused_node_are_freed_when_its_lease_lapses(
    nats_server: NatsServer, engine: Engine, prefix: str
) -> None:
    """A node that stops answering (SIGSTOP: connection open, no pings answered) keeps
    its names until the lease (1 s here) lapses; then another node may claim them."""
    import signal
    import sys

    async with await anyio.open_process([sys.executable, "-c", _DOOMED, nats_server.url, prefix]) as process:
        await _ready(process)
        async with node(nats_server, engine, prefix, "a", lease=1.0) as a:
            with anyio.fail_after(30):
                watch = a.monitor("held")
                assert not watch.down
                process.send_signal(signal.SIGSTOP)
                try:
                    with pytest.raises(NameTakenError):
                        await a.spawn_native("held", Calc)
                    # Down once the lease lapses (the node is silent, its connection open).
                    assert await watch.wait() == "its node released it or its lease lapsed"
                    # The lease lapses on the server's clock: there is no event to wait for.
                    while True:
                        try:
                            await a.spawn_native("held", Calc)
                            break
                        except NameTakenError:
                            await anyio.sleep(0.1)
                finally:
                    process.send_signal(signal.SIGCONT)
                    process.kill()  # also when the test fails: the process must not outlive it
                assert a.cluster is not None
                assert a.cluster.leases.owner("held") == "a"


@pytest.mark.stress
async def test_name_races_have_one_winner_every_time(
    nats_server: NatsServer, engine: Engine, prefix: str
) -> None:
    """Hundreds of two-node races for fresh names: each has exactly one owner, the
    one whose spawn succeeded, and the bucket agrees on both nodes."""
    async with node(nats_server, engine, prefix, "a") as a, node(nats_server, engine, prefix, "b") as b:
        winners: dict[str, str] = {}

        async def claim(system: ActorSystem, who: str, name: str, lost: list[str]) -> None:
            try:
                await system.spawn_native(name, Recorder)
                winners[name] = who
            except NameTakenError:
                lost.append(who)

        with anyio.fail_after(120):
            for i in range(300):
                name, lost = f"race{i}", list[str]()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(claim, a, "a", name, lost)
                    tg.start_soon(claim, b, "b", name, lost)
                assert len(lost) == 1, (name, lost)
                assert winners[name] != lost[0]
                for system in (a, b):
                    assert system.cluster is not None
                    assert await system.cluster.leases.lookup(name) == winners[name]


async def test_monitors_of_local_actors(engine: Engine) -> None:
    """A monitor is down when the actor stops for good (not at a restart), and at once
    for a name no actor has (noproc)."""
    from wasmactors.runtime import MemoryStorage

    async with ActorSystem(engine=engine, storage=MemoryStorage(), shutdown_timeout=0.5) as system:
        assert system.monitor("nobody").reason == "noproc"
        ref = await system.spawn_native("calc", Calc)
        watch = system.monitor("calc")
        with pytest.raises(ActorCrashedError):
            await ref.ask(b"boom", timeout=5)  # crashed and restarted: still up
        assert await ref.ask(b"get", timeout=5) == b"0"
        assert not watch.down
        await system.stop(ref)
        with anyio.fail_after(5):
            assert await watch.wait() == "stopped"


async def _stop_during_a_backlog(
    nats_server: NatsServer, engine: Engine, prefix: str, kitchen: Component
) -> None:
    """A guest streams 60 messages to a slow actor on another node; the actor is
    stopped while frames wait in its node's backlog and more are in flight. Every
    message is handled once or is one dead letter (on either node), never both."""
    sent = {str(i).encode() for i in range(60)}
    seen: list[bytes] = []
    started = anyio.Event()

    class Slow:
        async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None:
            seen.append(envelope.payload)
            if len(seen) >= 10:
                started.set()
            await anyio.sleep(0.001)
            return None

    async with (
        node(nats_server, engine, prefix, "a", max_in_flight=8) as a,
        node(nats_server, engine, prefix, "b") as b,
        a.dead_letters(buffer=1000) as dead_a,
        b.dead_letters(buffer=1000) as dead_b,
    ):
        await b.spawn_native("sink", Slow(), mailbox_size=2)
        k = await a.spawn("k", kitchen, limits=PY)
        dead: list[bytes] = []
        with anyio.fail_after(30):
            assert await k.ask(b"send-many sink 60", timeout=20) == b"sent"
            await started.wait()
            await b.stop("sink")
            while len(seen) + len(dead) < len(sent):
                with anyio.move_on_after(0.05):
                    letter = await dead_a.receive()
                    if letter.envelope.recipient == "sink":
                        dead.append(letter.envelope.payload)
                while True:
                    try:
                        letter = dead_b.receive_nowait()
                    except anyio.WouldBlock:
                        break
                    if letter.envelope.recipient == "sink":
                        dead.append(letter.envelope.payload)
    assert len(seen) == len(set(seen))
    assert len(dead) == len(set(dead))
    assert not set(seen) & set(dead)
    assert set(seen) | set(dead) == sent


async def test_a_stop_during_a_backlog_loses_nothing(
    nats_server: NatsServer, engine: Engine, prefix: str, kitchen: Component
) -> None:
    for round_ in range(3):
        await _stop_during_a_backlog(nats_server, engine, f"{prefix}r{round_}", kitchen)


@pytest.mark.stress
async def test_stress_a_stop_during_a_backlog_loses_nothing(
    nats_server: NatsServer, engine: Engine, prefix: str, kitchen: Component
) -> None:
    for round_ in range(40):
        await _stop_during_a_backlog(nats_server, engine, f"{prefix}r{round_}", kitchen)


async def test_an_ask_ends_with_its_reply_even_before_the_delivery_ack(
    nats_server: NatsServer, engine: Engine, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A reply from the asked actor is word that the request was delivered: the ask
    returns at once even when the receiving node's delivery ack is late or lost (here
    b never acks a request), and the request is no longer in flight."""
    async with node(nats_server, engine, prefix, "a") as a, node(nats_server, engine, prefix, "b") as b:
        await b.spawn_native("calc", Calc())
        assert b.cluster is not None
        assert a.cluster is not None
        acked = b.cluster._ack

        def ack_all_but_requests(to: tuple[str, int], ack: object) -> None:
            if to[0].startswith(f"{prefix}.ack.a."):
                return  # a's frames (its requests) are never acked
            acked(to, ack)  # type: ignore[arg-type]

        monkeypatch.setattr(b.cluster, "_ack", ack_all_but_requests)
        with anyio.fail_after(5):  # without the reply's word: ack_timeout (5 s) + the wait
            for _ in range(3):
                assert await a.ref("calc").ask(b"get", timeout=30) == b"0"
        assert a.cluster.statistics()["in_flight"] == 0
