"""Every stop path accounts for every message (issue 11, defect 2): sent =
handled + answered with an error + dead letters, on graceful stops, at a
stop deadline, on a crash while draining, on a give-up and at system exit."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import anyio
import pytest

from wasmactors.actors import (
    TRANSIENT,
    ActorStoppedError,
    ActorSystem,
    AskTimeoutError,
    DeadLetterReason,
    SystemFailedError,
)
from wasmactors.runtime import Component, Engine, MemoryStorage

from .conftest import PY, WAT
from .support import Recorder, assert_component_accounted, assert_native_accounted, dead_tells, drain

if TYPE_CHECKING:
    from collections.abc import Mapping

pytestmark = pytest.mark.anyio


async def test_stop_deadline_accounts_for_the_batch_in_hand(engine: Engine, kitchen: Component) -> None:
    """Defect 2: when a component's stop deadline passes, the messages it had
    taken from the mailbox are handled or dead-lettered, never lost."""
    system = ActorSystem(engine=engine, storage=MemoryStorage(), shutdown_timeout=0.2)
    sent = 300
    with anyio.fail_after(15):
        async with system.dead_letters(buffer=math.inf) as dead:
            async with system:
                k = await system.spawn("k", kitchen, limits=PY)
                for _ in range(sent):
                    await k.tell(b"busy 2")
                await system.stop(k)
            letters = drain(dead)
    stats = system.stopped_stats["k"]
    assert 0 < stats.handled < sent
    assert {d.reason for d in letters} == {DeadLetterReason.STOPPED}
    assert_component_accounted(sent, stats, letters, "k")


async def test_asks_queued_at_a_stopping_component_are_answered_at_once(
    engine: Engine, kitchen: Component
) -> None:
    """Defect 2: asks queued at a component actor stopped past its deadline are
    answered `stopped` as soon as the running call ends, not at their timeout."""
    async with ActorSystem(engine=engine, storage=MemoryStorage(), shutdown_timeout=0.1) as system:
        k = await system.spawn("k", kitchen, limits=PY)
        assert await k.ask(b"echo up", timeout=5) == b"up"
        outcomes: list[type[Exception] | bytes] = []

        async def ask(payload: bytes) -> None:
            try:
                outcomes.append(await k.ask(payload, timeout=20))
            except Exception as exc:  # noqa: BLE001 - recorded for the assertion
                outcomes.append(type(exc))

        with anyio.fail_after(5):
            async with anyio.create_task_group() as tg:
                tg.start_soon(ask, b"busy 400")
                for _ in range(4):
                    tg.start_soon(ask, b"busy 400")
                await anyio.wait_all_tasks_blocked()
                await system.stop(k)
    assert AskTimeoutError not in outcomes
    assert outcomes.count(ActorStoppedError) >= 3
    assert len(outcomes) == 5


async def test_graceful_stop_handles_everything_queued(engine: Engine, wat: Mapping[str, Component]) -> None:
    """A graceful stop within the deadline drains the mailbox: every message is handled."""
    system = ActorSystem(engine=engine, storage=MemoryStorage(), shutdown_timeout=10)
    with anyio.fail_after(10):
        async with system.dead_letters(buffer=math.inf) as dead:
            async with system:
                echo = await system.spawn("echo", wat["echo"], limits=WAT)
                for i in range(500):
                    await echo.tell(b"%d" % i)
            letters = drain(dead)
    assert letters == []
    assert system.stopped_stats["echo"].handled == 500


async def test_native_stop_deadline_and_queue(engine: Engine) -> None:
    """A native actor killed mid-handler at its deadline: that message and the
    queued ones are dead letters, and queued asks are answered `stopped`."""
    handled: list[bytes] = []
    recorder = Recorder(handled)
    system = ActorSystem(engine=engine, storage=MemoryStorage(), shutdown_timeout=0.1)
    sent = [b"one", b"block", *(b"q%d" % i for i in range(20))]
    with anyio.fail_after(5):
        async with system.dead_letters(buffer=math.inf) as dead:
            async with system:
                ref = await system.spawn_native("r", recorder)
                for payload in sent:
                    ref.tell_nowait(payload)
                await recorder.blocked.wait()
                outcomes: list[type[Exception]] = []

                async def ask() -> None:
                    try:
                        await ref.ask(b"queued ask", timeout=10)
                    except Exception as exc:  # noqa: BLE001 - recorded for the assertion
                        outcomes.append(type(exc))

                async with anyio.create_task_group() as tg:
                    tg.start_soon(ask)
                    await anyio.wait_all_tasks_blocked()
                    await system.stop(ref)
            letters = drain(dead)
    assert outcomes == [ActorStoppedError]
    assert handled == [b"one"]
    assert_native_accounted(sent, handled, dead_tells(letters, "r"))


async def test_give_up_keeps_then_accounts_for_the_mailboxes(engine: Engine) -> None:
    """When the root gives up, the system fails and every queued message of
    every actor is a dead letter: nothing vanishes with the failure."""
    handled: list[bytes] = []
    system = ActorSystem(
        engine=engine, storage=MemoryStorage(), max_restarts=0, within=60, shutdown_timeout=0.2
    )
    sent = [b"boom", *(b"m%d" % i for i in range(50))]
    other = [b"o%d" % i for i in range(10)]
    bystander = Recorder()

    async def run() -> None:
        async with system:
            o = await system.spawn_native("o", bystander)
            o.tell_nowait(b"block")
            for payload in other:
                o.tell_nowait(payload)
            ref = await system.spawn_native("r", lambda: Recorder(handled))
            for payload in sent:
                ref.tell_nowait(payload)
            await anyio.sleep_forever()

    with anyio.fail_after(5):
        async with system.dead_letters(buffer=math.inf) as dead:
            with pytest.raises(SystemFailedError):
                await run()
            letters = drain(dead)
    assert_native_accounted(sent, handled, dead_tells(letters, "r"))
    assert_native_accounted([b"block", *other], bystander.handled, dead_tells(letters, "o"))


async def test_transient_normal_exit_accounts_for_the_rest(engine: Engine) -> None:
    """A transient native actor that asks to stop is removed; what was queued
    behind its last message is dead-lettered."""
    handled: list[bytes] = []
    system = ActorSystem(engine=engine, storage=MemoryStorage())
    sent = [b"a", b"exit", b"b", b"c"]
    with anyio.fail_after(5):
        async with system.dead_letters(buffer=math.inf) as dead:
            async with system:
                ref = await system.spawn_native("r", lambda: Recorder(handled), restart=TRANSIENT)
                for payload in sent:
                    ref.tell_nowait(payload)
                await system.wait_idle()
            letters = drain(dead)
    assert handled == [b"a", b"exit"]
    assert_native_accounted(sent, handled, dead_tells(letters, "r"))
