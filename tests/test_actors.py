"""The actor layer: messaging, requests, dead letters and shutdown, on asyncio and trio."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import msgspec
import pytest

from wasmactors.actors import (
    ActorAppError,
    ActorCrashedError,
    ActorStoppedError,
    ActorSystem,
    AskTimeoutError,
    DeadLetterReason,
    MailboxFullError,
    NativeContext,
    UnknownActorError,
)
from wasmactors.messaging import Codec, Envelope, NameTakenError, PayloadDecodeError, PayloadEncodeError
from wasmactors.runtime import Component, CrashKind, Engine, MemoryStorage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

from .conftest import PY, WAT

pytestmark = pytest.mark.anyio


class Gate:
    """A native actor that records messages and blocks until released."""

    def __init__(self) -> None:
        self.open = anyio.Event()
        self.seen: list[bytes] = []

    async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None:
        await self.open.wait()
        self.seen.append(envelope.payload)
        return b"seen " + envelope.payload


class Collector:
    """A native actor that records every message and replies with nothing."""

    def __init__(self) -> None:
        self.seen: list[tuple[str | None, bytes]] = []

    async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None:
        self.seen.append((envelope.sender, envelope.payload))
        return None


@pytest.fixture
async def system(engine: Engine) -> AsyncIterator[ActorSystem]:
    async with ActorSystem(
        engine=engine, storage=MemoryStorage(), push_timeout=0.2, shutdown_timeout=0.5
    ) as sys:
        yield sys


async def test_tell_and_ask(system: ActorSystem, wat: Mapping[str, Component]) -> None:
    """ask returns the reply; tell is handled in order."""
    echo = await system.spawn("echo", wat["echo"], limits=WAT)
    await echo.tell(b"one")
    assert await echo.ask(b"two", timeout=5) == b"two"
    assert echo.stats().handled == 2


async def test_ask_errors_are_precise(system: ActorSystem, wat: Mapping[str, Component]) -> None:
    """App error, crash and unknown actor each raise their own error; a crash does not stop the actor."""
    rejecting = await system.spawn("rejecting", wat["app_error"], limits=WAT)
    with pytest.raises(ActorAppError, match="rejected") as app:
        await rejecting.ask(b"x", timeout=5)
    assert app.value.message == "rejected"
    crashing = await system.spawn("crashing", wat["unreachable"], limits=WAT)
    with pytest.raises(ActorCrashedError) as crash:
        await crashing.ask(b"x", timeout=5)
    assert crash.value.kind is CrashKind.TRAP
    with pytest.raises(UnknownActorError):
        await system.ref("nobody").ask(b"x", timeout=5)
    with pytest.raises(UnknownActorError):
        await system.ref("nobody").tell(b"x")


async def test_ask_timeout(system: ActorSystem) -> None:
    """No reply in time raises AskTimeoutError; the late reply becomes an unexpected-reply dead letter."""
    gate = Gate()
    ref = await system.spawn_native("gate", gate)
    async with system.dead_letters() as dead:
        with pytest.raises(AskTimeoutError):
            await ref.ask(b"slow", timeout=0.05)
        gate.open.set()
        with anyio.fail_after(5):
            letter = await dead.receive()
    assert letter.reason is DeadLetterReason.UNEXPECTED_REPLY
    assert letter.envelope.payload == b"seen slow"


async def test_names_are_unique(system: ActorSystem, wat: Mapping[str, Component]) -> None:
    """A second actor with the same address is refused."""
    await system.spawn("twin", wat["echo"], limits=WAT)
    with pytest.raises(NameTakenError, match="twin"):
        await system.spawn("twin", wat["echo"], limits=WAT)


async def test_tell_nowait_on_a_full_mailbox(system: ActorSystem) -> None:
    """tell_nowait raises MailboxFullError instead of waiting."""
    gate = Gate()
    ref = await system.spawn_native("gate", gate, mailbox_size=1)
    await ref.tell(b"a")  # taken by the loop, blocked in the handler
    await anyio.wait_all_tasks_blocked()
    ref.tell_nowait(b"b")  # fills the mailbox
    with pytest.raises(MailboxFullError):
        ref.tell_nowait(b"c")
    gate.open.set()


async def test_tell_waits_for_space(system: ActorSystem) -> None:
    """A producer is held back by a slow consumer's bounded mailbox (backpressure)."""
    gate = Gate()
    ref = await system.spawn_native("gate", gate, mailbox_size=2)
    sent = 0

    async def produce() -> None:
        nonlocal sent
        for i in range(10):
            await ref.tell(str(i).encode())
            sent += 1

    async with anyio.create_task_group() as tg:
        tg.start_soon(produce)
        await anyio.wait_all_tasks_blocked()
        # The turn in the handler holds what it took; the mailbox is full and
        # the producer waits: memory stays bounded.
        assert ref.stats().mailbox_depth == 2
        assert sent < 10
        gate.open.set()
    await system.wait_idle()
    assert gate.seen == [str(i).encode() for i in range(10)]


async def test_native_actor_talks_to_a_component(system: ActorSystem, wat: Mapping[str, Component]) -> None:
    """A host-native actor asks a component actor and relays the answer."""

    class Relay:
        async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None:
            return b"relayed " + await context.ask("echo", envelope.payload, timeout=5)

    await system.spawn("echo", wat["echo"], limits=WAT)
    relay = await system.spawn_native("relay", Relay())
    assert await relay.ask(b"hello", timeout=5) == b"relayed hello"


async def test_guest_sends_are_delivered_after_the_handler(system: ActorSystem, kitchen: Component) -> None:
    """send() from a guest reaches its recipient, with the sender's address."""
    sink = Collector()
    await system.spawn_native("sink", sink)
    k = await system.spawn("k", kitchen, limits=PY)
    assert await k.ask(b"send sink hello there", timeout=5) == b"sent"
    await system.wait_idle()
    assert sink.seen == [("k", b"hello there")]


async def test_crashed_handler_discards_its_sends_and_writes(system: ActorSystem, kitchen: Component) -> None:
    """One message, one atomic step: a trap loses the call's storage writes and messages."""
    sink = Collector()
    await system.spawn_native("sink", sink)
    k = await system.spawn("k", kitchen, limits=PY)
    await k.ask(b"set color blue", timeout=5)
    async with system.dead_letters() as dead:
        with pytest.raises(ActorCrashedError):
            await k.ask(b"set-then-raise color red sink", timeout=5)
        letter = dead.receive_nowait()
    assert letter.reason is DeadLetterReason.CRASHED_HANDLER
    assert await k.ask(b"get color", timeout=5) == b"blue"
    await system.wait_idle()
    assert sink.seen == []


class Probe:
    """A native actor that collects messages and signals when it has enough."""

    def __init__(self, expected: int) -> None:
        self.expected = expected
        self.seen: list[bytes] = []
        self.done = anyio.Event()

    async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None:
        self.seen.append(envelope.payload)
        if len(self.seen) >= self.expected:
            self.done.set()
        return None


async def test_guest_request_gets_its_callback(system: ActorSystem, kitchen: Component,
                                               wat: Mapping[str, Component]) -> None:  # fmt: skip
    """request() -> the reply, the callee's crash, or a timeout arrives as handle-callback."""
    await system.spawn("echo", wat["echo"], limits=WAT)
    await system.spawn("crashing", wat["unreachable"], limits=WAT)
    silent = Gate()
    await system.spawn_native("silent", silent)
    probe = Probe(expected=3)
    await system.spawn_native("probe", probe)
    k = await system.spawn("k", kitchen, limits=PY)
    assert await k.ask(b"request echo 1000 ping", timeout=5) == b"1"
    assert await k.ask(b"request crashing 1000 ping", timeout=5) == b"2"
    assert await k.ask(b"request silent 50 ping", timeout=5) == b"3"
    with anyio.fail_after(5):
        await probe.done.wait()
    assert sorted(probe.seen) == [
        b"1 ok ping",
        b"2 err RequestError_Crashed:trap",
        b"3 err RequestError_Timeout",
    ]
    assert await k.ask(b"get callback/3", timeout=5) == b"err RequestError_Timeout"
    silent.open.set()


async def test_mailbox_full_becomes_a_dead_letter(system: ActorSystem, kitchen: Component) -> None:
    """Delivery that waits past the push timeout is recorded as a dead letter, not dropped."""
    gate = Gate()
    await system.spawn_native("gate", gate, mailbox_size=1)
    k = await system.spawn("k", kitchen, limits=PY)
    async with system.dead_letters() as dead:
        await k.ask(b"send-many gate 3", timeout=5)
        with anyio.fail_after(5):
            letter = await dead.receive()
    assert letter.reason is DeadLetterReason.MAILBOX_FULL
    assert system.dead_letter_counts["mailbox-full"] >= 1
    gate.open.set()


async def test_stopped_actor_refuses_messages(system: ActorSystem, wat: Mapping[str, Component]) -> None:
    """After stop(), the address is free and calls say the actor is unknown."""
    echo = await system.spawn("echo", wat["echo"], limits=WAT)
    await system.stop(echo)
    with pytest.raises((UnknownActorError, ActorStoppedError)):
        await echo.ask(b"x", timeout=5)


async def test_shutdown_releases_every_store(engine: Engine, wat: Mapping[str, Component]) -> None:
    """Leaving the system closes every instance and empties the registry."""
    async with ActorSystem(engine=engine) as system:
        refs = [await system.spawn(f"e{i}", wat["echo"], limits=WAT) for i in range(3)]
        for ref in refs:
            await ref.tell(b"x")
        cells = [system.registry.lookup(r.address) for r in refs]
    assert all(cell.instance is None for cell in cells)  # type: ignore[union-attr]
    assert system.registry.addresses() == []


async def test_shutdown_drains_mailboxes(engine: Engine, wat: Mapping[str, Component]) -> None:
    """Queued messages are handled before the system stops."""
    sink = Collector()
    async with ActorSystem(engine=engine) as system:
        ref = await system.spawn_native("sink", sink)
        for i in range(50):
            ref.tell_nowait(str(i).encode())
    assert len(sink.seen) == 50


async def test_recipient_gone_at_delivery_time(system: ActorSystem, kitchen: Component) -> None:
    """A guest's send checked at call time whose recipient stops before delivery is a dead letter."""
    await system.spawn_native("sink", Collector())
    k = await system.spawn("k", kitchen, limits=PY)
    async with system.dead_letters() as dead:
        # One turn: the send is buffered, then the busy wait holds the turn
        # while the recipient stops; delivery happens after the turn.
        k.tell_nowait(b"send sink hello")
        k.tell_nowait(b"busy 300")
        await anyio.sleep(0.05)
        await system.stop("sink")
        with anyio.fail_after(5):
            letter = await dead.receive()
    assert letter.reason is DeadLetterReason.UNKNOWN_RECIPIENT
    assert (letter.envelope.sender, letter.envelope.payload) == ("k", b"hello")


async def test_requests_queued_at_a_stopping_actor_are_answered(engine: Engine) -> None:
    """Stopping an actor answers the requests still in its mailbox (and the one
    cut off mid-handler) with `stopped`, rather than leaving askers to time out."""
    async with ActorSystem(engine=engine, shutdown_timeout=0.1) as system:
        gate = await system.spawn_native("gate", Gate())
        errors: list[type[Exception]] = []

        async def ask() -> None:
            try:
                await gate.ask(b"x", timeout=5)
            except Exception as exc:  # noqa: BLE001 - recorded for the assertion
                errors.append(type(exc))

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)  # taken by the loop, blocked in the handler
            tg.start_soon(ask)  # queued
            await anyio.wait_all_tasks_blocked()
            with anyio.fail_after(2):
                await system.stop(gate)
        assert errors == [ActorStoppedError, ActorStoppedError]


async def test_guest_request_to_a_stopped_callee(system: ActorSystem, kitchen: Component) -> None:
    """A guest's request whose callee stops before answering gets a `stopped` callback."""
    await system.spawn_native("gate", Gate())
    probe = Probe(expected=1)
    await system.spawn_native("probe", probe)
    k = await system.spawn("k", kitchen, limits=PY)
    assert await k.ask(b"request gate 10000 ping", timeout=5) == b"1"
    await system.stop("gate")
    with anyio.fail_after(5):
        await probe.done.wait()
    assert probe.seen == [b"1 err RequestError_Stopped:gate"]


class Tally:
    """A native actor with in-memory state that crashes on `boom`."""

    def __init__(self) -> None:
        self.count = 0

    async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None:
        if envelope.payload == b"boom":
            raise RuntimeError("boom")
        self.count += 1
        return str(self.count).encode()


async def test_native_actor_restarts_from_its_factory(system: ActorSystem) -> None:
    """Spawned from a factory (its class), a native actor restarts with fresh state;
    spawned from an object, the object (and its state) is kept."""
    fresh = await system.spawn_native("fresh", Tally)
    kept = await system.spawn_native("kept", Tally())
    for ref in (fresh, kept):
        await ref.ask(b"+", timeout=5)
        with pytest.raises(ActorCrashedError) as crash:
            await ref.ask(b"boom", timeout=5)
        assert crash.value.kind is CrashKind.HOST_FAULT
    assert await fresh.ask(b"+", timeout=5) == b"1"
    assert await kept.ask(b"+", timeout=5) == b"2"
    assert fresh.stats().restarts == 1


class Add(msgspec.Struct, tag=True):
    amount: int


class Total(msgspec.Struct):
    total: int


async def test_typed_refs_encode_and_validate(system: ActorSystem, wat: Mapping[str, Component]) -> None:
    """A typed ref encodes values, decodes replies, and reports validation errors as such."""
    echo = await system.spawn("echo", wat["echo"], limits=WAT)
    same = echo.typed(Codec(Add), Codec(Add))
    assert await same.ask(Add(5), timeout=5) == Add(5)
    with pytest.raises(PayloadEncodeError, match="expected Add, got Total"):
        await same.tell(Total(1))  # type: ignore[arg-type]
    mismatched = echo.typed(Codec(Add), Codec(Total))
    with pytest.raises(PayloadDecodeError, match="reply from echo: invalid Total payload"):
        await mismatched.ask(Add(5), timeout=5)
    assert echo.stats().handled == 2  # the badly typed tell never left


async def test_answer_to_a_request_reaches_the_restarted_requester(
    system: ActorSystem, kitchen: Component
) -> None:
    """Request ids belong to the cell: an answer that arrives after the requester
    crashed and restarted is handed to the new instance as its callback."""
    gate = Gate()
    await system.spawn_native("gate", gate)
    probe = Probe(expected=1)
    await system.spawn_native("probe", probe)
    k = await system.spawn("k", kitchen, limits=PY)
    assert await k.ask(b"request gate 10000 ping", timeout=5) == b"1"
    with pytest.raises(ActorCrashedError):
        await k.ask(b"raise", timeout=5)
    gate.open.set()
    with anyio.fail_after(5):
        await probe.done.wait()
    assert probe.seen == [b"1 ok seen ping"]
    assert k.stats().restarts == 1


async def test_a_send_that_waits_for_room_holds_back_the_rest_of_the_turn(
    engine: Engine, kitchen: Component
) -> None:
    """Once a guest's send must wait for mailbox room, its later sends and its
    reply wait behind it and arrive in order, none overtaking another."""
    async with ActorSystem(engine=engine, storage=MemoryStorage(), push_timeout=30) as system:
        gate = Gate()
        g = await system.spawn_native("gate", gate, mailbox_size=1)
        await g.tell(b"first")
        await anyio.wait_all_tasks_blocked()  # the gate's handler holds "first"
        k = await system.spawn("k", kitchen, limits=PY)
        answers: list[bytes] = []

        async def ask() -> None:
            answers.append(await k.ask(b"send-many gate 3", timeout=30))

        async with anyio.create_task_group() as tg:
            tg.start_soon(ask)
            with anyio.fail_after(10):
                while k.stats().handled < 1:  # the turn ran; "0" filled the mailbox, "1" waits
                    await anyio.wait_all_tasks_blocked()
            await anyio.wait_all_tasks_blocked()
            assert answers == []  # the reply waits behind the send that waits
            assert g.stats().mailbox_depth == 1
            gate.open.set()
        assert answers == [b"sent"]
        await system.wait_idle()
        assert gate.seen == [b"first", b"0", b"1", b"2"]
