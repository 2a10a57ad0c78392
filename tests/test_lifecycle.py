"""Normal exits (TRANSIENT vs PERMANENT), events for every restart and stop,
and fair turns (issue 11, defects 5, 6 and 7)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import anyio
import pytest

from wasmactors.actors import (
    ONE_FOR_ALL,
    PERMANENT,
    TEMPORARY,
    TRANSIENT,
    ActorSystem,
    AskTimeoutError,
    EventKind,
    RestartType,
    UnknownActorError,
)
from wasmactors.runtime import Component, Engine, MemoryStorage

from .conftest import PY, WAT
from .support import Recorder

if TYPE_CHECKING:
    from collections.abc import Mapping

    from anyio.streams.memory import MemoryObjectReceiveStream

    from wasmactors.actors import Event

pytestmark = pytest.mark.anyio


async def next_event(events: MemoryObjectReceiveStream[Event], kinds: set[EventKind], address: str) -> Event:
    with anyio.fail_after(5):
        async for event in events:
            if event.kind in kinds and event.address == address:
                return event
    raise AssertionError("event stream ended")


async def test_a_permanent_native_actor_that_exits_normally_is_restarted(system: ActorSystem) -> None:
    """Defect 5: a PERMANENT actor's normal exit is followed by a restart (fresh state from its factory)."""
    handled: list[bytes] = []
    ref = await system.spawn_native("p", lambda: Recorder(handled), restart=PERMANENT)
    async with system.events() as events:
        assert await ref.ask(b"exit", timeout=5) == b"exit"
        restarted = await next_event(events, {EventKind.RESTARTED, EventKind.STOPPED}, "p")
    assert restarted.kind is EventKind.RESTARTED
    assert await ref.ask(b"again", timeout=5) == b"again"
    assert ref.stats().restarts == 1
    assert ref.stats().crashes == {}


@pytest.mark.parametrize("restart", [TRANSIENT, TEMPORARY])
async def test_a_transient_native_actor_that_exits_normally_is_removed(
    system: ActorSystem, restart: RestartType
) -> None:
    """Defect 5: TRANSIENT (and TEMPORARY) actors are not restarted after a normal exit."""
    ref = await system.spawn_native("t", Recorder, restart=restart)
    async with system.events() as events:
        assert await ref.ask(b"exit", timeout=5) == b"exit"
        stopped = await next_event(events, {EventKind.RESTARTED, EventKind.STOPPED}, "t")
    assert stopped.kind is EventKind.STOPPED
    with pytest.raises(UnknownActorError):
        await ref.ask(b"x", timeout=5)


async def test_a_transient_native_actor_that_crashes_is_restarted(system: ActorSystem) -> None:
    """A crash is abnormal: TRANSIENT restarts it, as PERMANENT would."""
    ref = await system.spawn_native("t", Recorder, restart=TRANSIENT)
    async with system.events() as events:
        ref.tell_nowait(b"boom")
        restarted = await next_event(events, {EventKind.RESTARTED, EventKind.STOPPED}, "t")
    assert restarted.kind is EventKind.RESTARTED
    assert await ref.ask(b"x", timeout=5) == b"x"


async def collect_until(
    events: MemoryObjectReceiveStream[Event], kind: EventKind, address: str
) -> list[Event]:
    """Every event received up to and including the first ``kind`` of ``address``."""
    seen: list[Event] = []
    with anyio.fail_after(5):
        async for event in events:
            seen.append(event)
            if event.kind is kind and event.address == address:
                return seen
    raise AssertionError("event stream ended")


async def test_a_one_for_all_restart_emits_events_for_every_child_in_order(system: ActorSystem) -> None:
    """Defect 6: the crash, the stop half (halted, last started first) and the
    start half (restarted, in start order) of every child, timestamped."""
    sup = await system.spawn_supervisor("w", strategy=ONE_FOR_ALL, max_restarts=5, within=60)
    for name in "abc":
        await sup.spawn_native(name, Recorder)
    async with system.events(buffer=math.inf) as events:
        system.ref("w/b").tell_nowait(b"boom")
        record = await collect_until(events, EventKind.RESTARTED, "w/c")
    assert [(e.kind, e.address) for e in record] == [
        (EventKind.CRASHED, "w/b"),
        (EventKind.HALTED, "w/c"),
        (EventKind.HALTED, "w/a"),
        (EventKind.RESTARTED, "w/a"),
        (EventKind.RESTARTED, "w/b"),
        (EventKind.RESTARTED, "w/c"),
    ]
    times = [e.time for e in record]
    assert times == sorted(times)
    assert times[0] > 0


async def test_a_restarted_subtree_reports_every_child(system: ActorSystem) -> None:
    """Defect 6: restarting a nested supervisor emits events for each of its
    children, not only for the supervisor."""
    outer = await system.spawn_supervisor("o", strategy=ONE_FOR_ALL, max_restarts=5, within=60)
    inner = await outer.spawn_supervisor("i")
    await inner.spawn_native("x", Recorder)
    await inner.spawn_native("y", Recorder)
    await outer.spawn_native("z", Recorder)
    async with system.events(buffer=math.inf) as events:
        system.ref("o/z").tell_nowait(b"boom")
        record = await collect_until(events, EventKind.RESTARTED, "o/z")
    assert [(e.kind, e.address) for e in record] == [
        (EventKind.CRASHED, "o/z"),
        (EventKind.HALTED, "o/i/y"),
        (EventKind.HALTED, "o/i/x"),
        (EventKind.HALTED, "o/i"),
        (EventKind.RESTARTED, "o/i"),
        (EventKind.RESTARTED, "o/i/x"),
        (EventKind.RESTARTED, "o/i/y"),
        (EventKind.RESTARTED, "o/z"),
    ]
    assert await system.ref("o/i/x").ask(b"still", timeout=5) == b"still"


async def test_fair_turns_let_other_actors_be_served(
    engine: Engine, wat: Mapping[str, Component], kitchen: Component
) -> None:
    """Defect 7: two slow actors with long backlogs on two workers do not hold
    them for whole turns: a third actor's ask is answered within a few calls."""
    async with ActorSystem(
        engine=engine, storage=MemoryStorage(), workers=2, turn_time=0.01, shutdown_timeout=0.2
    ) as system:
        slow = [await system.spawn(f"slow{i}", kitchen, limits=PY) for i in range(2)]
        echo = await system.spawn("echo", wat["echo"], limits=WAT)
        assert await echo.ask(b"warm", timeout=5) == b"warm"
        for ref in slow:
            for _ in range(30):
                ref.tell_nowait(b"busy 30")
        await anyio.wait_all_tasks_blocked()
        with anyio.fail_after(5):
            start = anyio.current_time()
            assert await echo.ask(b"me too", timeout=5) == b"me too"
            waited = anyio.current_time() - start
    # One turn of 30 calls would take 0.9 s; a fair turn ends after one 30 ms call
    # (the bound leaves room for a loaded machine, still well under a whole turn).
    assert waited < 0.6


async def test_a_factory_that_fails_at_restart_counts_as_a_failed_restart(system: ActorSystem) -> None:
    """A native factory raising during a restart is one more restart in the
    window, retried by the supervisor; it does not take the supervisor down."""
    calls: list[int] = []

    def flaky() -> Recorder:
        calls.append(len(calls))
        if len(calls) == 2:
            raise RuntimeError("not now")
        return Recorder()

    sup = await system.spawn_supervisor("w", max_restarts=5, within=60)
    ref = await sup.spawn_native("f", flaky)
    async with system.events() as events:
        ref.tell_nowait(b"boom")
        await next_event(events, {EventKind.RESTARTED}, "w/f")
    assert await ref.ask(b"fine", timeout=5) == b"fine"
    assert len(calls) == 3


async def test_ask_timeouts_share_one_timer(system: ActorSystem, wat: Mapping[str, Component]) -> None:
    """Asks keep no timer behind once answered, and an unanswered ask still
    times out on time with AskTimeoutError (the system's deadline heap)."""
    echo = await system.spawn("echo", wat["echo"], limits=WAT)
    for i in range(200):
        assert await echo.ask(b"%d" % i, timeout=30) == b"%d" % i
    assert len(system._deadlines) == 0
    stuck = Recorder()
    ref = await system.spawn_native("stuck", stuck)
    with anyio.fail_after(5):
        start = anyio.current_time()
        with pytest.raises(AskTimeoutError):
            await ref.ask(b"block", timeout=0.1)
        assert anyio.current_time() - start >= 0.1
    stuck.gate.set()


async def test_an_ask_waiting_for_mailbox_space_times_out(system: ActorSystem) -> None:
    """An ask whose request cannot even be queued (a full mailbox) raises AskTimeoutError at its deadline."""
    stuck = Recorder()
    ref = await system.spawn_native("stuck", stuck, mailbox_size=1)
    ref.tell_nowait(b"block")
    await stuck.blocked.wait()
    ref.tell_nowait(b"fills the mailbox")
    with anyio.fail_after(5), pytest.raises(AskTimeoutError):
        await ref.ask(b"no room", timeout=0.1)
    stuck.gate.set()
