"""Failures that overlap: concurrent crashes, a crash while stopping, a sibling
stuck in its handler (issue 11, defects 1, 3 and 4). Each test has a hard
deadline: a hang fails it."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import anyio
import pytest

from wasmactors.actors import (
    ONE_FOR_ALL,
    ONE_FOR_ONE,
    REST_FOR_ONE,
    ActorCrashedError,
    ActorStoppedError,
    ActorSystem,
    DeadLetterReason,
    EventKind,
    Strategy,
)
from wasmactors.runtime import Component, Engine, MemoryStorage

from .conftest import PY, WAT
from .support import Recorder, assert_component_accounted, assert_native_accounted, dead_tells, drain

if TYPE_CHECKING:
    from collections.abc import Mapping

pytestmark = pytest.mark.anyio

STRATEGIES = [ONE_FOR_ONE, ONE_FOR_ALL, REST_FOR_ONE]


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_two_siblings_crashing_together_are_both_restarted(engine: Engine, strategy: Strategy) -> None:
    """Defect 1: two children crashing at about the same time do not hang the
    subtree; both are restarted and serve again."""
    with anyio.fail_after(10):
        async with ActorSystem(engine=engine, storage=MemoryStorage()) as system:
            sup = await system.spawn_supervisor("w", strategy=strategy, max_restarts=10, within=60)
            a = await sup.spawn_native("a", Recorder)
            b = await sup.spawn_native("b", Recorder)
            async with system.events() as events:
                a.tell_nowait(b"boom")
                b.tell_nowait(b"boom")
                restarted: set[str] = set()
                while restarted != {"w/a", "w/b"}:
                    event = await events.receive()
                    if event.kind is EventKind.RESTARTED:
                        restarted.add(event.address)
            assert await a.ask(b"a", timeout=5) == b"a"
            assert await b.ask(b"b", timeout=5) == b"b"


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_concurrent_component_crashes_do_not_hang(
    engine: Engine, wat: Mapping[str, Component], strategy: Strategy
) -> None:
    """Defect 1 with components: three crashing siblings, queued work behind each
    crash, and every message accounted for."""
    with anyio.fail_after(15):
        async with ActorSystem(engine=engine, storage=MemoryStorage()) as system:
            async with system.dead_letters(buffer=math.inf) as dead:
                sup = await system.spawn_supervisor("w", strategy=strategy, max_restarts=50, within=60)
                refs = [await sup.spawn(f"c{i}", wat["crash_on_x"], limits=WAT) for i in range(3)]
                for round_ in range(3):
                    for ref in refs:
                        ref.tell_nowait(b"x")
                        ref.tell_nowait(b"after %d" % round_)
                for ref in refs:
                    assert await ref.ask(b"alive", timeout=5) == b"alive"
                await system.wait_idle()
                letters = drain(dead)
            for ref in refs:
                assert_component_accounted(7, ref.stats(), letters, ref.address)


async def test_a_crash_while_draining_is_not_restarted(engine: Engine, kitchen: Component) -> None:
    """Defect 3: a child that crashes while its supervisor stops it is not
    restarted; what was queued behind the crash becomes dead letters and the
    stop does not wait for its shutdown time."""
    system = ActorSystem(engine=engine, storage=MemoryStorage(), shutdown_timeout=30)
    with anyio.fail_after(10):
        async with system.dead_letters(buffer=math.inf) as dead, system.events(buffer=math.inf) as events:
            async with system:
                k = await system.spawn("k", kitchen, limits=PY)
                assert await k.ask(b"echo up", timeout=5) == b"up"
                for _ in range(3):
                    k.tell_nowait(b"busy 20")
                k.tell_nowait(b"raise")
                for _ in range(5):
                    k.tell_nowait(b"echo later")
            letters = drain(dead)
            kinds = [e.kind for e in drain(events) if e.address == "k"]
    assert EventKind.CRASHED in kinds
    assert EventKind.RESTARTED not in kinds
    assert kinds[-1] is EventKind.STOPPED
    assert dead_tells(letters, "k").count(b"echo later") == 5
    assert_component_accounted(10, system.stopped_stats["k"], letters, "k")


async def test_a_sibling_stuck_in_its_handler_is_killed_after_its_shutdown_time(engine: Engine) -> None:
    """Defect 4: a one-for-all restart does not wait forever for a native sibling
    blocked in its handler: after the shutdown time it is cancelled, its
    requester is answered `stopped`, and both children restart."""
    with anyio.fail_after(10):
        async with ActorSystem(engine=engine, storage=MemoryStorage(), shutdown_timeout=0.2) as system:
            sup = await system.spawn_supervisor("w", strategy=ONE_FOR_ALL, max_restarts=5, within=60)
            stuck = Recorder()
            a = await sup.spawn_native("stuck", stuck)
            b = await sup.spawn_native("b", Recorder)
            errors: list[type[Exception]] = []

            async def ask_stuck() -> None:
                try:
                    await a.ask(b"block", timeout=30)
                except Exception as exc:  # noqa: BLE001 - recorded for the assertion
                    errors.append(type(exc))

            async with system.events() as events, anyio.create_task_group() as tg:
                tg.start_soon(ask_stuck)
                await stuck.blocked.wait()
                with pytest.raises(ActorCrashedError):
                    await b.ask(b"boom", timeout=5)
                restarted: set[str] = set()
                while restarted != {"w/stuck", "w/b"}:
                    event = await events.receive()
                    if event.kind is EventKind.RESTARTED:
                        restarted.add(event.address)
            assert errors == [ActorStoppedError]
            stuck.gate.set()
            assert await a.ask(b"again", timeout=5) == b"again"


async def test_brutal_kill_cancels_at_once(engine: Engine) -> None:
    """A child spawned with shutdown=BRUTAL_KILL (0) is cancelled as soon as its
    supervisor stops it, even with a long system shutdown_timeout."""
    handled: list[bytes] = []
    recorder = Recorder(handled)
    system = ActorSystem(engine=engine, storage=MemoryStorage(), shutdown_timeout=30)
    with anyio.fail_after(5):
        async with system.dead_letters(buffer=math.inf) as dead:
            async with system:
                ref = await system.spawn_native("r", recorder, shutdown=0)
                ref.tell_nowait(b"block")
                ref.tell_nowait(b"queued")
                await recorder.blocked.wait()
            letters = drain(dead)
    assert handled == []
    assert {d.reason for d in letters} == {DeadLetterReason.STOPPED}
    assert_native_accounted([b"block", b"queued"], handled, dead_tells(letters, "r"))
