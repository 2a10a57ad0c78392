"""Two nodes (two ActorSystems in this process) joined through a real
nats-server: remote tell and ask behave as local ones, errors included."""

from __future__ import annotations

import itertools
from contextlib import asynccontextmanager
from typing import TYPE_CHECKING

import anyio
import pytest

from tests.support import Recorder
from wasmactors.actors import (
    ActorAppError,
    ActorCrashedError,
    ActorSystem,
    AskTimeoutError,
    DeadLetterReason,
    Reject,
    UnknownActorError,
)
from wasmactors.messaging import Cluster, NameTakenError
from wasmactors.messaging._bridge import NatsBridge
from wasmactors.runtime import MemoryStorage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.nats_server import NatsServer
    from wasmactors.actors import NativeContext
    from wasmactors.messaging import Envelope
    from wasmactors.runtime import Engine

pytestmark = pytest.mark.anyio

_prefixes = itertools.count()


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A cluster namespace of this test's own (subjects and KV bucket)."""
    return f"t{next(_prefixes)}"


@asynccontextmanager
async def node(
    server: NatsServer, engine: Engine, prefix: str, name: str, **options: object
) -> AsyncIterator[ActorSystem]:
    cluster = Cluster(server.url, node=name, prefix=prefix, **options)  # type: ignore[arg-type]
    async with ActorSystem(
        engine=engine, storage=MemoryStorage(), shutdown_timeout=0.5, cluster=cluster
    ) as system:
        yield system


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
            await a.stop("worker")
            while True:  # the release is a KV delete the watch shows b
                try:
                    await b.spawn_native("worker", Recorder)
                    break
                except NameTakenError:
                    await anyio.sleep(0.05)
            assert await a.ref("worker").ask(b"hi", timeout=5) == b"hi"


@asynccontextmanager
async def raw_client(server: NatsServer) -> AsyncIterator[NatsBridge]:
    """A plain NATS client (on its own thread, so it works under trio too)."""
    bridge = NatsBridge()
    await bridge.connect(server.url)
    try:
        yield bridge
    finally:
        await bridge.aclose()


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
        assert "frame" in letter.detail
