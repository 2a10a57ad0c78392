"""Supervision with OTP semantics: strategies, restart types, intensity, backoff, escalation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import anyio
import pytest

from wasmactors.actors import (
    ONE_FOR_ALL,
    ONE_FOR_ONE,
    REST_FOR_ONE,
    TEMPORARY,
    TRANSIENT,
    ActorCrashedError,
    ActorStoppedError,
    ActorSystem,
    Backoff,
    EventKind,
    SystemFailedError,
    UnknownActorError,
)
from wasmactors.runtime import Component, Engine, MemoryStorage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Mapping

    from wasmactors.actors import Event

from .conftest import PY, WAT

pytestmark = pytest.mark.anyio


@pytest.fixture
async def system(engine: Engine) -> AsyncIterator[ActorSystem]:
    async with ActorSystem(engine=engine, storage=MemoryStorage()) as sys:
        yield sys


async def crash(ref: object) -> None:
    with pytest.raises(ActorCrashedError):
        await ref.ask(b"boom", timeout=5)  # type: ignore[attr-defined]


async def until(events: object, kind: EventKind, address: str) -> Event:
    """The next event of ``kind`` for ``address`` (others are skipped)."""
    with anyio.fail_after(5):
        async for event in events:  # type: ignore[attr-defined]
            if event.kind is kind and event.address == address:
                return event  # type: ignore[no-any-return]
    raise AssertionError("event stream ended")


@pytest.mark.parametrize(
    ("strategy", "restarted"),
    [(ONE_FOR_ONE, {"w/b"}), (ONE_FOR_ALL, {"w/a", "w/b", "w/c"}), (REST_FOR_ONE, {"w/b", "w/c"})],
)
async def test_strategies_restart_the_right_children(
    system: ActorSystem, wat: Mapping[str, Component], strategy: object, restarted: set[str]
) -> None:
    """one-for-one restarts the failed child, one-for-all every child, rest-for-one it and later ones."""
    sup = await system.spawn_supervisor("w", strategy=strategy, max_restarts=5, within=10)  # type: ignore[arg-type]
    await sup.spawn("a", wat["echo"], limits=WAT)
    b = await sup.spawn("b", wat["unreachable"], limits=WAT)
    await sup.spawn("c", wat["echo"], limits=WAT)
    async with system.events() as events:
        await crash(b)
        got: set[str] = set()
        with anyio.fail_after(5):
            while got != restarted:
                event = await events.receive()
                if event.kind is EventKind.RESTARTED:
                    got.add(event.address)
    await system.wait_idle()
    counts = {addr: system.stats(addr).restarts for addr in ("w/a", "w/b", "w/c")}
    assert counts == {addr: int(addr in restarted) for addr in counts}


async def test_siblings_keep_serving_across_a_one_for_all_restart(
    system: ActorSystem, wat: Mapping[str, Component]
) -> None:
    """Restarted siblings answer again afterwards."""
    sup = await system.spawn_supervisor("w", strategy=ONE_FOR_ALL, max_restarts=5, within=10)
    a = await sup.spawn("a", wat["echo"], limits=WAT)
    b = await sup.spawn("b", wat["unreachable"], limits=WAT)
    await crash(b)
    assert await a.ask(b"still here", timeout=5) == b"still here"


async def test_restart_keeps_the_mailbox_and_the_storage(system: ActorSystem, kitchen: Component) -> None:
    """Messages queued behind the crashing one are handled by the new instance, with the old state."""
    k = await system.spawn("k", kitchen, limits=PY)
    assert await k.ask(b"set color blue", timeout=5) == b"ok"
    k.tell_nowait(b"raise")
    k.tell_nowait(b"set size big")
    k.tell_nowait(b"set shape round")
    assert await k.ask(b"keys s", timeout=5) == b"shape,size"
    assert await k.ask(b"get color", timeout=5) == b"blue"
    assert k.stats().restarts == 1
    assert k.stats().crashes == {"trap": 1}


async def test_intensity_exceeded_gives_up_and_escalates(
    system: ActorSystem, wat: Mapping[str, Component]
) -> None:
    """More than max_restarts within the window: the supervisor gives up; its parent restarts it."""
    sup = await system.spawn_supervisor("w", max_restarts=1, within=60)
    bad = await sup.spawn("bad", wat["unreachable"], limits=WAT)
    async with system.events() as events:
        await crash(bad)
        await until(events, EventKind.RESTARTED, "w/bad")
        await crash(bad)
        gave_up = await until(events, EventKind.GAVE_UP, "w")
        assert "more than 1 restarts in 60 s" in gave_up.detail
        await until(events, EventKind.RESTARTED, "w")  # the root restarted the subtree
    # Restarting the supervisor cleared its history: the child serves and may fail again.
    await crash(bad)


async def test_root_giving_up_stops_the_system_with_a_clear_error(
    engine: Engine, wat: Mapping[str, Component]
) -> None:
    """The root's failure ends the `async with` block with SystemFailedError."""

    async def run() -> None:
        async with ActorSystem(engine=engine, max_restarts=1, within=60) as system:
            bad = await system.spawn("bad", wat["unreachable"], limits=WAT)
            await crash(bad)
            await crash(bad)
            await anyio.sleep_forever()

    with pytest.raises(SystemFailedError, match="the root supervisor gave up"):
        await run()


async def test_temporary_children_are_not_restarted(
    system: ActorSystem, wat: Mapping[str, Component]
) -> None:
    """A temporary child that crashes is removed."""
    bad = await system.spawn("bad", wat["unreachable"], limits=WAT, restart=TEMPORARY)
    async with system.events() as events:
        await crash(bad)
        await until(events, EventKind.STOPPED, "bad")
    with pytest.raises((UnknownActorError, ActorStoppedError)):
        await bad.ask(b"x", timeout=5)


async def test_transient_children_restart_after_a_crash_but_not_after_a_stop(
    system: ActorSystem, wat: Mapping[str, Component]
) -> None:
    """A crash is abnormal (restarted); a requested stop is normal (not restarted)."""
    ref = await system.spawn("t", wat["app_error"], limits=WAT, restart=TRANSIENT)
    bad = await system.spawn("bad", wat["unreachable"], limits=WAT, restart=TRANSIENT)
    await crash(bad)
    await system.wait_idle()
    assert bad.stats().restarts == 1
    await system.stop(ref)
    with pytest.raises(UnknownActorError):
        ref.stats()


async def test_backoff_delays_restarts(system: ActorSystem, wat: Mapping[str, Component]) -> None:
    """With a backoff, the restart follows the crash by at least the initial delay."""
    sup = await system.spawn_supervisor(
        "w", max_restarts=5, within=60, backoff=Backoff(initial=0.2, maximum=1)
    )
    bad = await sup.spawn("bad", wat["unreachable"], limits=WAT)
    async with system.events() as events:
        await crash(bad)
        crashed_at = anyio.current_time()
        await until(events, EventKind.RESTARTED, "w/bad")
        assert anyio.current_time() - crashed_at >= 0.15
    assert Backoff(initial=0.01, maximum=0.05, factor=2).delay(10) == 0.05


async def test_shutdown_stops_children_in_reverse_start_order(
    engine: Engine, wat: Mapping[str, Component]
) -> None:
    """As in OTP, the last child started is the first stopped."""
    stopped: list[str] = []
    async with anyio.create_task_group() as tg, ActorSystem(engine=engine) as system:
        subscribed = anyio.Event()

        async def collect() -> None:
            async with system.events() as events:
                subscribed.set()
                stopped.extend([e.address async for e in events if e.kind is EventKind.STOPPED])

        tg.start_soon(collect)
        await subscribed.wait()
        for name in ("first", "second", "third"):
            await system.spawn(name, wat["echo"], limits=WAT)
    assert stopped == ["third", "second", "first"]
