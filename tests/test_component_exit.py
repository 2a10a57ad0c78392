"""Normal exit for components (issue 11): a guest calls ``lifecycle.stop``, the
call's results take effect, and the incarnation ends with a normal exit that
its supervisor decides by restart type, as for a native actor's ``context.stop()``.
No message is lost: what the turn had not reached is handled by the next
incarnation, or dead-lettered (and answered ``stopped``) when the actor is removed."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import anyio
import anyio.lowlevel
import pytest

from tests.guests import wat_guest
from tests.guests.hostile import calling_guest
from wasmactors.actors import (
    ONE_FOR_ALL,
    ONE_FOR_ONE,
    PERMANENT,
    REST_FOR_ONE,
    TEMPORARY,
    TRANSIENT,
    ActorAppError,
    ActorCrashedError,
    ActorError,
    ActorStoppedError,
    ActorSystem,
    DeadLetterReason,
    EventKind,
    RestartType,
    Strategy,
    UnknownActorError,
)
from wasmactors.runtime import (
    AppError,
    Component,
    CrashKind,
    Engine,
    HostCall,
    HostContext,
    Instance,
    MemoryStorage,
    Success,
)

from .conftest import PY, WAT
from .support import assert_component_accounted, dead_tells, drain

if TYPE_CHECKING:
    from anyio.streams.memory import MemoryObjectReceiveStream

    from wasmactors.actors import Event, NativeContext
    from wasmactors.messaging import Envelope

pytestmark = pytest.mark.anyio

# By the payload's first byte: "s" stops, "m" stops 10,000 times, "x" stops
# then traps, "e" stops then returns an app error, "r" requests "peer" (its
# callback stops), "c" replies with one byte: how many messages this instance
# has handled, itself included; anything else is echoed.
_STOPPER = """(data (i32.const 512) "peer")
(global $calls (mut i32) (i32.const 0))
(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
  (local $first i32) (local $i i32)
  (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
  (if (i32.gt_u (local.get 5) (i32.const 0))
    (then (local.set $first (i32.load8_u (local.get 4)))))
  (if (i32.eq (local.get $first) (i32.const 0x63))
    (then (i32.store8 (i32.const 700) (global.get $calls))
          (return (call $reply_some (i32.const 700) (i32.const 1)))))
  (if (i32.eq (local.get $first) (i32.const 0x73)) (then (call $lifecycle.stop)))
  (if (i32.eq (local.get $first) (i32.const 0x6d))
    (then (loop $l
      (call $lifecycle.stop)
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $l (i32.lt_u (local.get $i) (i32.const 10000))))))
  (if (i32.eq (local.get $first) (i32.const 0x78)) (then (call $lifecycle.stop) unreachable))
  (if (i32.eq (local.get $first) (i32.const 0x65))
    (then (call $lifecycle.stop) (return (call $reply_err (local.get 4) (local.get 5)))))
  (if (i32.eq (local.get $first) (i32.const 0x72))
    (then (call $messaging.request (i32.const 512) (i32.const 4) (local.get 4) (local.get 5)
                                   (i32.const 0) (i32.const 600))
          (return (call $reply_none))))
  (call $reply_some (local.get 4) (local.get 5)))"""

_STOPPING_CALLBACK = """(func (export "handle-callback") (param i64 i32 i32 i32 i32) (result i32)
  (call $lifecycle.stop)
  (i32.store8 (i32.const 16) (i32.const 0))
  (i32.const 16))"""


@pytest.fixture(scope="module")
def stopper(engine: Engine) -> Component:
    source = calling_guest(_STOPPER, "lifecycle.stop", "messaging.request", callback=_STOPPING_CALLBACK)
    return engine.load(source, name="stopper")


async def next_event(events: MemoryObjectReceiveStream[Event], kinds: set[EventKind], address: str) -> Event:
    with anyio.fail_after(5):
        async for event in events:
            if event.kind in kinds and event.address == address:
                return event
    raise AssertionError("event stream ended")


# -- the runtime: what a call reports ------------------------------------------------


def test_a_call_that_stops_says_so_and_keeps_its_reply(stopper: Component) -> None:
    """``CallResult.stop`` is set by ``lifecycle.stop``; the reply is unchanged,
    and the next call starts without it."""
    with Instance(stopper, WAT) as inst:
        first = inst.handle_message(b"stop", request=True)
        assert first.stop
        assert first.outcome == Success(b"stop")
        second = inst.handle_message(b"hello", request=True)
        assert not second.stop
        assert second.outcome == Success(b"hello")


def test_stop_called_many_times_in_one_call_is_one_stop(stopper: Component) -> None:
    """Hostile: 10,000 calls to ``lifecycle.stop`` in one call cost no more than one."""
    audit: list[HostCall] = []
    with Instance(stopper, WAT, HostContext(audit=audit.append)) as inst:
        result = inst.handle_message(b"many", request=True)
    assert result.stop
    assert result.outcome == Success(b"many")
    assert result.outbox == ()
    assert len(audit) == 10_000
    assert {call.function for call in audit} == {"lifecycle.stop"}


def test_a_crash_after_stop_is_a_crash(stopper: Component) -> None:
    """A trap after ``lifecycle.stop`` in the same call is a crash, not a stop."""
    with Instance(stopper, WAT) as inst:
        result = inst.handle_message(b"x", request=True)
    assert result.crashed
    assert not result.stop


def test_stop_with_an_app_error_is_both(stopper: Component) -> None:
    """An app error is a reply: the call answers it and still asks to stop."""
    with Instance(stopper, WAT) as inst:
        result = inst.handle_message(b"err", request=True)
    assert result.stop
    assert result.outcome == AppError("err")


def test_stop_from_handle_callback(stopper: Component) -> None:
    """Hostile: ``lifecycle.stop`` from ``handle-callback`` is reported the same way."""
    with Instance(stopper, WAT) as inst:
        result = inst.handle_callback(7, b"late answer")
    assert result.stop
    assert result.ok


def test_a_guest_that_does_not_import_lifecycle_still_loads(engine: Engine) -> None:
    """The interface is optional: an older guest loads, runs and never stops by itself."""
    info = engine.inspect(wat_guest("echo"), name="echo")
    assert info.fits
    assert not any("lifecycle" in name for name in info.imports)
    with Instance(engine.load(wat_guest("echo"), name="echo"), WAT) as inst:
        result = inst.handle_message(b"hi", request=True)
    assert result.outcome == Success(b"hi")
    assert not result.stop


# -- the actor layer: the supervisor's decision -----------------------------------------


async def test_a_permanent_component_that_stops_is_restarted(system: ActorSystem, stopper: Component) -> None:
    """PERMANENT: ``lifecycle.stop`` is a normal exit followed by a restart; no crash is counted."""
    ref = await system.spawn("p", stopper, limits=WAT, restart=PERMANENT)
    async with system.events() as events:
        assert await ref.ask(b"stop", timeout=5) == b"stop"
        event = await next_event(events, {EventKind.RESTARTED, EventKind.STOPPED, EventKind.CRASHED}, "p")
    assert event.kind is EventKind.RESTARTED
    assert await ref.ask(b"again", timeout=5) == b"again"
    stats = ref.stats()
    assert stats.restarts == 1
    assert stats.crashes == {}


@pytest.mark.parametrize("restart", [TRANSIENT, TEMPORARY])
async def test_a_transient_component_that_stops_is_removed(
    system: ActorSystem, stopper: Component, restart: RestartType
) -> None:
    """TRANSIENT and TEMPORARY: ``lifecycle.stop`` removes the actor, after its reply."""
    ref = await system.spawn("t", stopper, limits=WAT, restart=restart)
    async with system.events() as events:
        assert await ref.ask(b"stop", timeout=5) == b"stop"
        event = await next_event(events, {EventKind.RESTARTED, EventKind.STOPPED, EventKind.CRASHED}, "t")
    assert event.kind is EventKind.STOPPED
    with pytest.raises(UnknownActorError):
        await ref.ask(b"x", timeout=5)


async def test_a_transient_component_that_crashes_after_stop_is_restarted(
    system: ActorSystem, stopper: Component
) -> None:
    """A trap after ``lifecycle.stop`` is an abnormal exit: TRANSIENT restarts the actor."""
    ref = await system.spawn("t", stopper, limits=WAT, restart=TRANSIENT)
    async with system.events() as events:
        with pytest.raises(ActorCrashedError) as crash:
            await ref.ask(b"x", timeout=5)
        event = await next_event(events, {EventKind.RESTARTED, EventKind.STOPPED}, "t")
    assert crash.value.kind is CrashKind.TRAP
    assert event.kind is EventKind.RESTARTED
    assert await ref.ask(b"alive", timeout=5) == b"alive"


async def test_an_app_error_then_stop_answers_the_error_then_exits(
    system: ActorSystem, stopper: Component
) -> None:
    """The asker gets the app error; the TRANSIENT actor is then removed."""
    ref = await system.spawn("t", stopper, limits=WAT, restart=TRANSIENT)
    async with system.events() as events:
        with pytest.raises(ActorAppError, match="err"):
            await ref.ask(b"err", timeout=5)
        event = await next_event(events, {EventKind.RESTARTED, EventKind.STOPPED}, "t")
    assert event.kind is EventKind.STOPPED


async def test_messages_after_the_stop_in_one_turn_go_to_the_next_incarnation(
    system: ActorSystem, stopper: Component
) -> None:
    """PERMANENT: the tells queued behind the stop in the same turn are handled
    by the restarted instance (its count starts again), none is lost."""
    ref = await system.spawn("p", stopper, limits=WAT, restart=PERMANENT)
    async with system.events() as events, system.dead_letters() as letters:
        # One turn: the mailbox is filled before the actor's task runs again.
        sent = [b"before", b"stop", *(b"after %d" % i for i in range(20))]
        for payload in sent:
            ref.tell_nowait(payload)
        count = await ref.ask(b"count", timeout=5)
        await next_event(events, {EventKind.RESTARTED}, "p")
        with anyio.fail_after(5):
            await system.wait_idle()
        dead = drain(letters)
    assert count == bytes([20 + 1])  # the 20 tells after the stop, then the ask itself
    stats = ref.stats()
    assert stats.handled == len(sent) + 1
    assert stats.restarts == 1
    assert dead == []
    assert_component_accounted(len(sent) + 1, stats, dead, "p")


async def test_messages_after_the_stop_are_dead_letters_when_removed(
    system: ActorSystem, stopper: Component
) -> None:
    """TRANSIENT: the actor is removed; the tells behind the stop become
    ``stopped`` dead letters and the asks behind it are answered ``stopped``."""
    ref = await system.spawn("t", stopper, limits=WAT, restart=TRANSIENT)
    async with system.events() as events, system.dead_letters() as letters:
        ref.tell_nowait(b"stop")
        behind = [b"after %d" % i for i in range(10)]
        for payload in behind:
            ref.tell_nowait(payload)
        results: list[BaseException | bytes] = []

        async def ask(payload: bytes) -> None:
            try:
                results.append(await ref.ask(payload, timeout=5))
            except ActorStoppedError as exc:
                results.append(exc)

        async with anyio.create_task_group() as tg:
            for i in range(5):
                tg.start_soon(ask, b"ask %d" % i)
            await next_event(events, {EventKind.STOPPED, EventKind.RESTARTED}, "t")
        dead = drain(letters)
    assert len(results) == 5
    assert all(isinstance(r, ActorStoppedError) for r in results)
    assert sorted(dead_tells(dead, "t")) == sorted(behind)
    assert {d.reason for d in dead} == {DeadLetterReason.STOPPED}
    stats = system.stopped_stats["t"]
    assert stats.handled == 1
    assert_component_accounted(1 + len(behind), stats, [d for d in dead if d.envelope.payload in behind], "t")


class Peer:
    """A native actor that answers every request with its payload."""

    async def handle_message(self, envelope: Envelope, context: NativeContext) -> bytes | None:
        return envelope.payload


async def test_a_component_can_stop_from_its_callback(system: ActorSystem, stopper: Component) -> None:
    """Hostile: ``lifecycle.stop`` called from ``handle-callback`` is a normal exit too."""
    await system.spawn_native("peer", Peer())
    ref = await system.spawn("t", stopper, limits=WAT, restart=TRANSIENT)
    async with system.events() as events:
        await ref.tell(b"request")
        event = await next_event(events, {EventKind.RESTARTED, EventKind.STOPPED, EventKind.CRASHED}, "t")
    assert event.kind is EventKind.STOPPED
    assert system.stopped_stats["t"].handled == 2  # the message and its callback


async def test_a_python_guest_stops_through_its_bindings(system: ActorSystem, kitchen: Component) -> None:
    """A componentize-py guest imports ``lifecycle`` from its generated bindings;
    its storage write in the stopping call is committed, then it is removed."""
    ref = await system.spawn("k", kitchen, limits=PY, restart=TRANSIENT)
    async with system.events() as events:
        assert await ref.ask(b"set-then-stop last words", timeout=10) == b"stopping"
        event = await next_event(events, {EventKind.RESTARTED, EventKind.STOPPED, EventKind.CRASHED}, "k")
    assert event.kind is EventKind.STOPPED
    assert system.storage is not None
    assert system.storage.get("k", "last") == b"words"


async def test_a_python_guest_that_raises_after_stop_crashes(system: ActorSystem, kitchen: Component) -> None:
    """A Python guest that calls ``lifecycle.stop`` and then raises has crashed:
    its write is rolled back and a TRANSIENT actor is restarted."""
    ref = await system.spawn("k", kitchen, limits=PY, restart=TRANSIENT)
    async with system.events() as events:
        with pytest.raises(ActorCrashedError):
            await ref.ask(b"stop-then-raise last words", timeout=10)
        event = await next_event(events, {EventKind.RESTARTED, EventKind.STOPPED}, "k")
    assert event.kind is EventKind.RESTARTED
    assert system.storage is not None
    assert system.storage.get("k", "last") is None


def test_the_stop_call_is_audited(stopper: Component) -> None:
    """``wasmactors call`` and audit hooks see ``lifecycle.stop`` like any host call."""
    audit: list[HostCall] = []
    with Instance(stopper, WAT, HostContext(audit=audit.append)) as inst:
        inst.handle_message(b"stop")
    assert [call.function for call in audit] == ["lifecycle.stop"]


# -- overlapping stops, crashes and restarts, repeated ---------------------------------------

#: Repetitions in the normal suite and under ``-m stress``; seconds one may take.
SHORT, LONG, DEADLINE = 5, 200, 10.0


async def stops_among_siblings(engine: Engine, stopper: Component, strategy: Strategy) -> None:
    """Three siblings (permanent, transient, permanent) get tells among which
    some stop and some crash right after stopping; the restarts this causes
    overlap (one-for-all and rest-for-one halt siblings mid-turn) with more
    sending. Every accepted tell is a call or a dead letter, exactly once, and
    the transient actor is gone after its first stop."""
    system = ActorSystem(engine=engine, storage=MemoryStorage(), shutdown_timeout=1.0)
    restarts = {"p0": PERMANENT, "t1": TRANSIENT, "p2": PERMANENT}
    accepted = dict.fromkeys(restarts, 0)
    async with system.dead_letters(buffer=math.inf) as dead:
        with anyio.fail_after(DEADLINE):
            async with system:
                sup = await system.spawn_supervisor("w", strategy=strategy, max_restarts=10_000, within=60)
                refs = {
                    name: await sup.spawn(name, stopper, limits=WAT, restart=r)
                    for name, r in restarts.items()
                }
                for i in range(40):
                    payload = b"stop" if i % 10 == 3 else b"x" if i % 10 == 7 else b"a%d" % i
                    for name, ref in refs.items():
                        try:
                            ref.tell_nowait(payload)
                        except ActorError:
                            continue  # the transient actor has gone: refused, not accepted
                        accepted[name] += 1
                    await anyio.lowlevel.checkpoint()  # the actors' turns interleave with the sending
                await system.wait_idle()
        letters = drain(dead)
    for name, ref in refs.items():
        assert_component_accounted(accepted[name], system.stopped_stats[ref.address], letters, ref.address)
    transient = system.stopped_stats["w/t1"]
    if strategy is ONE_FOR_ONE:
        assert transient.restarts == 0
        assert transient.crashes == {}  # its first stop (message 3) comes before its first crash (7)
    # Otherwise its stop may race with a sibling's restart, which halts it
    # first and restarts it with the others: the halt wins, as in OTP.
    for name in ("w/p0", "w/p2"):  # halts keep the mailbox: every message is handled
        permanent = system.stopped_stats[name]
        assert permanent.handled == 40
        assert permanent.restarts >= 8  # its own 4 stops and 4 crashes, and its siblings' restarts


@pytest.mark.parametrize("strategy", [ONE_FOR_ONE, ONE_FOR_ALL, REST_FOR_ONE])
async def test_stops_among_siblings(engine: Engine, stopper: Component, strategy: Strategy) -> None:
    """Normal exits overlapping crashes and sibling restarts: nothing lost, no hang."""
    for _ in range(SHORT):
        await stops_among_siblings(engine, stopper, strategy)


@pytest.mark.stress
@pytest.mark.parametrize("strategy", [ONE_FOR_ONE, ONE_FOR_ALL, REST_FOR_ONE])
async def test_stress_stops_among_siblings(engine: Engine, stopper: Component, strategy: Strategy) -> None:
    """Hundreds of repetitions of :func:`test_stops_among_siblings`."""
    for _ in range(LONG):
        await stops_among_siblings(engine, stopper, strategy)
