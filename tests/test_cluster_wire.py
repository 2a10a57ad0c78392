"""Wire abuse: garbage, oversize, wrongly shaped and forged frames published
straight to a node's subjects are dead-lettered there with a reason, and the
node keeps serving."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import msgspec
import pytest

from tests.nats_server import node, raw_client
from tests.test_cluster import Calc
from wasmactors.actors import DeadLetter, DeadLetterReason
from wasmactors.messaging import (
    Callback,
    DeliveryFailure,
    Reply,
    Request,
    RequestError,
    RequestFailure,
    Tell,
)
from wasmactors.messaging._wire import (
    MAX_BATCH,
    Frame,
    Item,
    address_token,
    decode_acks,
    encode_batch,
    encode_item,
    token_address,
)

TIMEOUT = RequestFailure.TIMEOUT

if TYPE_CHECKING:
    from tests.nats_server import NatsServer
    from wasmactors.runtime import Engine

pytestmark = pytest.mark.anyio


def test_address_tokens_round_trip() -> None:
    """Names may hold '.', which NATS tokens may not: the mapping escapes it, one to one."""
    for address in ["a", "a/b", "my.actor/x.y.z", "a-b_c/d", ".x/y."]:
        token = address_token(address)
        assert "/" not in token
        assert all(part and "." not in part for part in token.replace("=2E", "").split("."))
        assert token_address(token) == address
    assert address_token("a.b") != address_token("a/b")
    with pytest.raises(ValueError, match="cannot be carried"):
        address_token("a b")


def test_long_addresses_from_the_wire_are_not_cached() -> None:
    """Tokens are cached for the hot path, but a peer's long recipients (each refused)
    must not stay in memory: only short addresses are kept."""
    from wasmactors.messaging._wire import _cached_token

    before = _cached_token.cache_info().currsize
    for i in range(50):
        assert address_token(f"{i}/" + "x" * 10_000).startswith(f"{i}.")
    assert _cached_token.cache_info().currsize == before
    address_token("short/name")
    assert _cached_token.cache_info().currsize <= before + 1


def encode_frame(frame: Frame) -> bytes:
    """A batch of one, as a node sends a frame alone."""
    return encode_batch(frame.origin, [encode_item(Item(frame.wait, frame.envelope))])


def first_ack(data: bytes) -> DeliveryFailure | None:
    """The failure of the only ack in an answer to a batch of one."""
    (ack,) = decode_acks(data)
    assert ack.index == 0
    return ack.failure


def forged(prefix: str) -> list[tuple[str, bytes, str]]:
    """(subject, data, expected words in the dead letter's detail)."""
    act = f"{prefix}.act.calc"
    return [
        (act, b"\xc1\xc1 not msgpack", "undecodable batch"),
        (act, msgspec.msgpack.encode({"what": 1}), "invalid batch"),
        (act, msgspec.msgpack.encode(["b", "soon", {"kind": "tell", "recipient": "calc"}]), "invalid batch"),
        (
            act,
            msgspec.msgpack.encode(["b", [["soon", {"kind": "tell", "recipient": "calc"}]]]),
            "invalid batch",
        ),
        (act, encode_batch("b", []), "a batch of 0 items"),
        (act, b"x" * 5000, "exceeds the limit"),
        (act, encode_frame(Frame("b", 0, Tell(recipient="other", payload=b"add 1"))), "does not match"),
        (act, encode_frame(Frame("m", 0, Tell(recipient="calc", sender="ghost"))), "forged sender"),
        (act, encode_frame(Frame("m", 0, Tell(recipient="calc", sender="calc"))), "forged sender"),
        (act, encode_frame(Frame("m", 0, Tell(recipient="calc", sender="$ask/a/1"))), "forged sender"),
        # An origin that is no node name: the reply would have nowhere to go.
        (
            act,
            encode_frame(
                Frame(
                    "x y", 0, Request(recipient="calc", sender="$ask/x y/1", correlation_id=1, payload=b"get")
                )
            ),
            "forged sender",
        ),
        (
            act,
            encode_frame(
                Frame(
                    "m",
                    0,
                    Callback(recipient="calc", correlation_id=1, error=RequestError(RequestFailure.TIMEOUT)),
                )
            ),
            "never crosses",
        ),
        (f"{prefix}.node.b", encode_frame(Frame("m", 0, Tell(recipient="calc"))), "only replies"),
        (
            f"{prefix}.node.b",
            encode_frame(Frame("m", 0, Reply(recipient="$ask/zz/1", correlation_id=1))),
            "not an ask of this node",
        ),
    ]


async def test_forged_and_malformed_frames_are_dead_letters(
    nats_server: NatsServer, engine: Engine, prefix: str
) -> None:
    """Each bad frame is one dead letter with its reason; the actor handled none; asks still work."""
    calc = Calc()
    async with node(nats_server, engine, prefix, "b", max_frame=4096) as b, raw_client(nats_server) as raw:
        await b.spawn_native("calc", calc)
        cases = forged(prefix)
        letters: list[DeadLetter] = []
        async with b.dead_letters() as dead:
            for subject, data, _ in cases:
                raw.publish(subject, data)
            with anyio.move_on_after(30):
                while len(letters) < len(cases):
                    letters.append(await dead.receive())
        got = [letter.detail for letter in letters]
        missing = [words for _, _, words in cases if not any(words in d for d in got)]
        stats = b.cluster.statistics() if b.cluster else None
        assert len(letters) == len(cases), f"no dead letter for {missing}; got {got}; {stats}"
        assert {letter.reason for letter in letters} == {DeadLetterReason.INVALID_MESSAGE}
        # One letter per case (a sender the watch has not seen is checked in the bucket
        # first, so the order may differ).
        details = [letter.detail for letter in letters]
        for _, _, words in cases:
            match = next(d for d in details if words in d)
            details.remove(match)
        assert calc.senders == []
        async with node(nats_server, engine, prefix, "a") as a:
            with anyio.fail_after(10):
                assert await a.ref("calc").ask(b"get", timeout=5) == b"0"


async def test_a_batch_is_checked_item_by_item(nats_server: NatsServer, engine: Engine, prefix: str) -> None:
    """In one batch, good items are delivered and each bad one is refused alone (its ack
    says why, by index); a batch of more than MAX_BATCH items is refused whole, with one
    dead letter and one ack for all; forged acks naming no item are ignored."""
    from wasmactors.messaging._wire import ACK_ALL, AckItem, encode_acks

    calc = Calc()
    good = encode_item(Item(0, Tell(recipient="calc", payload=b"add 1")))
    bad = encode_item(Item(0, Tell(recipient="calc", sender="ghost", payload=b"add 100")))
    elsewhere = encode_item(Item(0, Tell(recipient="other", payload=b"add 1000")))
    async with node(nats_server, engine, prefix, "b") as b, raw_client(nats_server) as raw:
        await b.spawn_native("calc", calc)
        await raw.subscribe(f"{prefix}.ack.m.*")
        async with b.dead_letters() as dead:
            act = f"{prefix}.act.calc"
            raw.publish(act, encode_batch("m", [good, bad, good, elsewhere, good]), reply=f"{prefix}.ack.m.1")
            raw.publish(act, encode_batch("m", [good] * (MAX_BATCH + 1)), reply=f"{prefix}.ack.m.2")
            acks: dict[tuple[int, int], DeliveryFailure | None] = {}
            with anyio.fail_after(20):
                while len(acks) < 6:
                    for incoming in await raw.inbound():
                        batch = int(incoming.subject.rsplit(".", 1)[1])
                        acks.update(((batch, a.index), a.failure) for a in decode_acks(incoming.data))
            letters = [await dead.receive() for _ in range(3)]
        invalid = DeliveryFailure.INVALID_MESSAGE
        assert acks == {
            (1, 0): None,
            (1, 1): invalid,
            (1, 2): None,
            (1, 3): invalid,
            (1, 4): None,
            (2, ACK_ALL): invalid,
        }
        details = sorted(letter.detail for letter in letters)
        assert any("forged sender" in d for d in details)
        assert any("does not match" in d for d in details)
        assert any(f"a batch of {MAX_BATCH + 1} items" in d for d in details)
        # Acks sent to b for batches it never sent, or naming items that do not exist.
        raw.publish(f"{prefix}.ack.b.1", encode_acks([AckItem(7), AckItem(-5), AckItem(ACK_ALL)]))
        raw.publish(f"{prefix}.ack.b.999999", b"\xc1 garbage")
        a_ref = b.ref("calc")
        with anyio.fail_after(10):
            assert await a_ref.ask(b"get", timeout=5) == b"3"


async def test_oversize_payload_is_refused_by_the_receiver(
    nats_server: NatsServer, engine: Engine, prefix: str
) -> None:
    """The recipient's own limits apply to messages from the wire: a payload past its
    max_payload is refused with the same error as in process."""
    from wasmactors.runtime import PayloadTooLargeError

    async with node(nats_server, engine, prefix, "a") as a, node(nats_server, engine, prefix, "b") as b:
        await b.spawn_native("calc", Calc)
        with anyio.fail_after(10), pytest.raises(PayloadTooLargeError):
            await a.ref("calc").tell(b"x" * (2 * 1024 * 1024))


async def test_a_flood_of_waiting_frames_is_bounded(
    nats_server: NatsServer, engine: Engine, prefix: str
) -> None:
    """Frames that may wait for room (any ``wait``, NaN and infinity included) queue at most
    ``max_in_flight`` deep per recipient; the rest are answered mailbox-full at once; the
    queued ones are delivered in order once there is room."""

    gate = anyio.Event()
    seen: list[bytes] = []

    class Blocked:
        async def handle_message(self, envelope: object, context: object) -> None:
            seen.append(envelope.payload)  # type: ignore[attr-defined]
            await gate.wait()

    waits = [float("nan"), float("inf"), -1.0, 1e308, 30.0]
    async with node(nats_server, engine, prefix, "b", max_in_flight=8) as b, raw_client(nats_server) as raw:
        await b.spawn_native("slow", Blocked(), mailbox_size=1)
        await raw.subscribe(f"{prefix}.ack.m.*")
        subject = f"{prefix}.act.slow"
        for i in range(50):
            frame = Frame("m", waits[i % len(waits)], Tell(recipient="slow", payload=str(i).encode()))
            raw.publish(subject, encode_frame(frame), reply=f"{prefix}.ack.m.{i}")
        acks: dict[int, DeliveryFailure | None] = {}

        def full() -> int:
            return sum(1 for failure in acks.values() if failure is DeliveryFailure.MAILBOX_FULL)

        with anyio.fail_after(20):
            while full() < 50 - 10:  # one being handled, one in the mailbox, eight waiting
                for incoming in await raw.inbound():
                    acks[int(incoming.subject.rsplit(".", 1)[1])] = first_ack(incoming.data)
        assert b.cluster is not None
        assert 7 <= b.cluster.statistics()["waiting"] <= 8
        assert set(acks.values()) <= {DeliveryFailure.MAILBOX_FULL, None}
        gate.set()
        with anyio.fail_after(20):
            while len(acks) < 50:
                for incoming in await raw.inbound():
                    acks[int(incoming.subject.rsplit(".", 1)[1])] = first_ack(incoming.data)
        delivered = sorted(i for i, failure in acks.items() if failure is None)
        # Nine when all fifty arrived before the actor took the first from its mailbox.
        assert len(delivered) in (9, 10)
        assert full() == 50 - len(delivered)
        assert [int(p) for p in seen] == delivered  # in publish order


async def test_a_flood_of_answers_into_a_backlog_is_bounded_node_wide(
    nats_server: NatsServer, engine: Engine, prefix: str
) -> None:
    """Answers skip the wait for room but queue behind a recipient's backlog; a peer
    flooding replies (its own asks' senders pass the checks) gets mailbox-full past the
    node-wide bound (4 x max_in_flight frames in all backlogs), and the node serves on."""

    gate = anyio.Event()

    class Blocked:
        async def handle_message(self, envelope: object, context: object) -> None:
            await gate.wait()

    async with node(nats_server, engine, prefix, "b", max_in_flight=8) as b, raw_client(nats_server) as raw:
        await b.spawn_native("slow", Blocked(), mailbox_size=1)
        await raw.subscribe(f"{prefix}.ack.m.*")
        subject = f"{prefix}.act.slow"
        for i in range(10):  # one handled, one in the mailbox, the rest in the backlog
            frame = Frame("m", 30.0, Tell(recipient="slow", payload=b"t"))
            raw.publish(subject, encode_frame(frame), reply=f"{prefix}.ack.m.{i}")
        # One connection: b takes the replies after the tells, behind their backlog.
        for i in range(100, 200):
            frame = Frame("m", 0.0, Reply(recipient="slow", sender=f"$ask/m/{i}", correlation_id=i))
            raw.publish(subject, encode_frame(frame), reply=f"{prefix}.ack.m.{i}")
        acks: dict[int, DeliveryFailure | None] = {}

        def refused() -> int:
            return sum(1 for seq, f in acks.items() if seq >= 100 and f is DeliveryFailure.MAILBOX_FULL)

        with anyio.fail_after(20):
            while refused() < 100 - 25:
                for incoming in await raw.inbound():
                    acks[int(incoming.subject.rsplit(".", 1)[1])] = first_ack(incoming.data)
        assert b.cluster is not None
        assert 4 * 8 - 1 <= b.cluster.statistics()["waiting"] <= 4 * 8  # the head may have moved on
        assert refused() in (75, 76)  # 24 or 25 answers fit beside 8 or 7 waiting tells
        gate.set()
        with anyio.fail_after(20):  # then every frame is answered, the backlog empties
            while len(acks) < 110:
                for incoming in await raw.inbound():
                    acks[int(incoming.subject.rsplit(".", 1)[1])] = first_ack(incoming.data)
        assert b.cluster.statistics()["waiting"] == 0


async def test_a_flood_of_forged_acks_is_read_once_per_batch(
    nats_server: NatsServer, engine: Engine, prefix: str
) -> None:
    """A megabyte of forged 'every item' acks for a live batch of 256 is read no further
    than the batch: the sender settles each item once (as the forger said) and its loop
    does not stall (each of the 60,000 answers walking the batch again took seconds)."""
    from wasmactors.actors import MailboxFullError
    from wasmactors.messaging._wire import ACK_ALL, AckItem, encode_acks

    gate = anyio.Event()

    class Blocked:
        async def handle_message(self, envelope: object, context: object) -> None:
            await gate.wait()

    outcomes: list[str] = []
    changed = anyio.Event()

    async def outcomes_reach(n: int) -> None:
        nonlocal changed
        while len(outcomes) < n:
            await changed.wait()
            changed = anyio.Event()

    async with (
        node(nats_server, engine, prefix, "b") as b,
        node(nats_server, engine, prefix, "a") as a,
        raw_client(nats_server) as raw,
    ):
        await b.spawn_native("slow", Blocked(), mailbox_size=1)
        await a.spawn_native("calc", Calc())
        assert a.cluster is not None

        async def tell() -> None:
            try:
                await a.ref("slow").tell(b"t")
                outcomes.append("delivered")
            except MailboxFullError:
                outcomes.append("full")
            changed.set()

        async with anyio.create_task_group() as tg:
            for _ in range(256):
                tg.start_soon(tell)
            with anyio.fail_after(10):  # one batch of 256, most of it waiting in b's backlog
                await outcomes_reach(2)
            (number,) = a.cluster._sent
            flood = encode_acks([AckItem(ACK_ALL, DeliveryFailure.MAILBOX_FULL)] * 60_000)
            raw.publish(f"{prefix}.ack.a.{number}", flood)
            with anyio.fail_after(2):  # the loop answers at once (it took seconds before)
                await outcomes_reach(256)
                assert await a.ref("calc").ask(b"get", timeout=1) == b"0"
            gate.set()
        assert outcomes.count("delivered") in (1, 2)  # in the mailbox, and perhaps being handled
        assert outcomes.count("full") == 256 - outcomes.count("delivered")
        assert not a.cluster._sent
