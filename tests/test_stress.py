"""Overlapping failures, repeated: N siblings crashing at once under each
strategy, crashes during restarts, during backoff and during shutdown, and
stops with a full mailbox. Each repetition checks the accounting invariant
(every tell handled or a dead letter, every ask answered) and has a hard
deadline, so a hang fails the test.

The normal suite runs a few repetitions of each; ``pytest -m stress`` runs
hundreds (the ``stress`` marker)."""

from __future__ import annotations

import math
from functools import partial
from typing import TYPE_CHECKING

import anyio
import pytest

from wasmactors.actors import (
    ONE_FOR_ALL,
    ONE_FOR_ONE,
    REST_FOR_ONE,
    ActorCrashedError,
    ActorError,
    ActorSystem,
    Backoff,
    DeadLetterReason,
    Strategy,
)
from wasmactors.runtime import Component, Engine, MemoryStorage

from .conftest import WAT
from .support import Recorder, assert_component_accounted, assert_native_accounted, dead_tells, drain

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable, Mapping

    from wasmactors.actors import ActorRef

pytestmark = pytest.mark.anyio

STRATEGIES = [ONE_FOR_ONE, ONE_FOR_ALL, REST_FOR_ONE]
#: Repetitions in the normal suite and under ``-m stress``.
SHORT, LONG = 8, 200
#: Seconds one repetition may take before it fails.
DEADLINE = 10.0


async def repeat(times: int, scenario: Callable[[], Awaitable[None]]) -> None:
    for _ in range(times):
        with anyio.fail_after(DEADLINE):
            await scenario()


async def ask_all(ref: ActorRef, payloads: list[bytes], outcomes: list[bytes | type[Exception]]) -> None:
    """Ask each payload in turn, recording the reply or the error (never a timeout)."""
    for payload in payloads:
        try:
            outcomes.append(await ref.ask(payload, timeout=DEADLINE))
        except ActorError as exc:
            outcomes.append(type(exc))


def factory(handled: list[bytes]) -> Callable[[], Recorder]:
    """A native actor factory whose incarnations share one record of what was handled."""
    return lambda: Recorder(handled)


def sibling_crashes(engine: Engine, strategy: Strategy, n: int = 5) -> Callable[[], Awaitable[None]]:
    """N native siblings crash at once, with work queued behind each crash and
    asks in flight; after the system exits every message is accounted for."""

    async def scenario() -> None:
        system = ActorSystem(engine=engine, storage=MemoryStorage(), shutdown_timeout=1.0)
        handled: dict[str, list[bytes]] = {f"w/s{i}": [] for i in range(n)}
        sent: dict[str, list[bytes]] = {address: [] for address in handled}
        outcomes: list[bytes | type[Exception]] = []
        async with system.dead_letters(buffer=math.inf) as dead:
            async with system, anyio.create_task_group() as tg:
                sup = await system.spawn_supervisor("w", strategy=strategy, max_restarts=10 * n, within=60)
                refs = [
                    await sup.spawn_native(f"s{i}", partial(Recorder, handled[f"w/s{i}"])) for i in range(n)
                ]
                for round_ in range(3):
                    for ref in refs:
                        for payload in (b"boom %d" % round_, b"m %d" % round_):
                            ref.tell_nowait(payload)
                            sent[ref.address].append(payload)
                for ref in refs:
                    tg.start_soon(ask_all, ref, [b"ask 1", b"ask 2"], outcomes)
            letters = drain(dead)
        # Asks queued behind crashes survive the restarts and are answered.
        assert sorted(outcomes, key=repr) == sorted([b"ask 1", b"ask 2"] * n, key=repr)
        for address, payloads in sent.items():
            told = [p for p in handled[address] if not p.startswith(b"ask")]
            assert_native_accounted(payloads, told, dead_tells(letters, address))

    return scenario


def crashes_during_restarts(
    engine: Engine, wat: Mapping[str, Component], strategy: Strategy
) -> Callable[[], Awaitable[None]]:
    """Component siblings keep crashing while the supervisor is restarting
    them; every call is accounted for and all serve at the end."""

    async def scenario() -> None:
        system = ActorSystem(engine=engine, storage=MemoryStorage(), shutdown_timeout=1.0)
        sent = 0
        async with system.dead_letters(buffer=math.inf) as dead:
            async with system:
                sup = await system.spawn_supervisor("w", strategy=strategy, max_restarts=1000, within=60)
                refs = [await sup.spawn(f"c{i}", wat["crash_on_x"], limits=WAT) for i in range(4)]
                for round_ in range(4):
                    for ref in refs:
                        await ref.tell(b"x")
                        await ref.tell(b"ok %d" % round_)
                    await anyio.lowlevel.checkpoint()  # let restarts begin between rounds
                sent = 8
                for ref in refs:
                    assert await ref.ask(b"alive", timeout=DEADLINE) == b"alive"
                await system.wait_idle()
            letters = drain(dead)
        for ref in refs:
            assert_component_accounted(sent + 1, system.stopped_stats[ref.address], letters, ref.address)

    return scenario


def crashes_during_backoff(engine: Engine, strategy: Strategy) -> Callable[[], Awaitable[None]]:
    """Siblings crash while their supervisor waits out a backoff; the system
    then stops in the middle of a backoff: nothing restarts after the stop and
    nothing is lost."""

    async def scenario() -> None:
        system = ActorSystem(engine=engine, storage=MemoryStorage(), shutdown_timeout=1.0)
        handled: dict[str, list[bytes]] = {f"w/s{i}": [] for i in range(3)}
        sent: dict[str, list[bytes]] = {address: [] for address in handled}
        backoff = Backoff(initial=0.005, maximum=0.05)
        async with system.dead_letters(buffer=math.inf) as dead:
            async with system:
                sup = await system.spawn_supervisor(
                    "w", strategy=strategy, max_restarts=1000, within=60, backoff=backoff
                )
                refs = [
                    await sup.spawn_native(f"s{i}", partial(Recorder, handled[f"w/s{i}"])) for i in range(3)
                ]
                for round_ in range(5):
                    for ref in refs:
                        for payload in (b"boom %d" % round_, b"m %d" % round_):
                            await ref.tell(payload)
                            sent[ref.address].append(payload)
            letters = drain(dead)
        for address, payloads in sent.items():
            assert_native_accounted(payloads, handled[address], dead_tells(letters, address))

    return scenario


def crashes_during_shutdown(engine: Engine, wat: Mapping[str, Component]) -> Callable[[], Awaitable[None]]:
    """Children crash while the system drains them at exit: no restart, and
    the stop does not wait for a shutdown time."""

    async def scenario() -> None:
        system = ActorSystem(engine=engine, storage=MemoryStorage(), shutdown_timeout=30)
        sent = 40
        async with system.dead_letters(buffer=math.inf) as dead:
            with anyio.fail_after(5):
                async with system:
                    sup = await system.spawn_supervisor(
                        "w", strategy=ONE_FOR_ALL, max_restarts=1000, within=60
                    )
                    refs = [await sup.spawn(f"c{i}", wat["crash_on_x"], limits=WAT) for i in range(3)]
                    for ref in refs:
                        for i in range(sent):
                            ref.tell_nowait(b"x" if i % 10 == 5 else b"m")
            letters = drain(dead)
        for ref in refs:
            assert_component_accounted(sent, system.stopped_stats[ref.address], letters, ref.address)

    return scenario


def stop_with_a_full_mailbox(engine: Engine) -> Callable[[], Awaitable[None]]:
    """An actor stopped with a full mailbox and producers waiting for room: the
    producers are told it stopped, and every accepted message is accounted for."""

    async def scenario() -> None:
        system = ActorSystem(engine=engine, storage=MemoryStorage(), shutdown_timeout=0.05)
        handled: list[bytes] = []
        recorder = Recorder(handled)
        accepted: list[bytes] = []
        refused: list[bytes] = []

        async def produce(ref: ActorRef, tag: int) -> None:
            for i in range(20):
                payload = b"p%d-%d" % (tag, i)
                try:
                    await ref.tell(payload)
                except ActorError:
                    refused.append(payload)
                else:
                    accepted.append(payload)

        async with system.dead_letters(buffer=math.inf) as dead:
            async with system:
                ref = await system.spawn_native("r", recorder, mailbox_size=8)
                await ref.tell(b"block")
                accepted.append(b"block")
                await recorder.blocked.wait()
                async with anyio.create_task_group() as tg:
                    for tag in range(4):
                        tg.start_soon(produce, ref, tag)
                    await anyio.wait_all_tasks_blocked()
                    await system.stop(ref)
            letters = drain(dead)
        assert len(accepted) + len(refused) == 81
        assert refused
        assert_native_accounted(accepted, handled, dead_tells(letters, "r"))

    return scenario


def asks_to_idle_actors_overlapping_failures(
    engine: Engine, wat: Mapping[str, Component]
) -> Callable[[], Awaitable[None]]:
    """Asks that go straight to a worker (the actor is idle) overlap crashes
    (some asks crash the handler), one-for-all restarts of the siblings, tells
    queued during the call and a stop of the system: every ask is answered
    (a reply or an actor error, never a timeout) and every tell is a call or a
    dead letter."""

    async def scenario() -> None:
        system = ActorSystem(engine=engine, storage=MemoryStorage(), shutdown_timeout=1.0)
        outcomes: list[bytes | type[Exception]] = []
        told = 0
        asked = 0

        async def asker(ref: ActorRef, tag: int) -> None:
            nonlocal asked
            for i in range(12):
                payload = b"x" if (i + tag) % 5 == 0 else b"a%d-%d" % (tag, i)
                asked += 1
                try:
                    outcomes.append(await ref.ask(payload, timeout=DEADLINE))
                except ActorError as exc:
                    outcomes.append(type(exc))

        async def teller(ref: ActorRef) -> None:
            nonlocal told
            for _ in range(6):
                await anyio.lowlevel.checkpoint()
                try:
                    await ref.tell(b"t")
                except ActorError:
                    continue
                told += 1

        async with system.dead_letters(buffer=math.inf) as dead:
            async with system:
                sup = await system.spawn_supervisor("w", strategy=ONE_FOR_ALL, max_restarts=10_000, within=60)
                refs = [await sup.spawn(f"c{i}", wat["crash_on_x"], limits=WAT) for i in range(3)]
                async with anyio.create_task_group() as tg:
                    for i, ref in enumerate(refs):
                        tg.start_soon(asker, ref, i)
                        tg.start_soon(asker, ref, i + 3)
                        tg.start_soon(teller, ref)
            letters = drain(dead)
        # Restarts keep the mailboxes, and the system stops only after the
        # callers are done: every ask and every tell is handled, exactly once.
        assert len(outcomes) == asked
        assert {o for o in outcomes if not isinstance(o, bytes)} <= {ActorCrashedError}
        assert any(isinstance(o, bytes) for o in outcomes)
        stats = [system.stopped_stats[ref.address] for ref in refs]
        assert sum(st.handled for st in stats) == told + asked
        assert {d.reason for d in letters} <= {DeadLetterReason.CRASHED_HANDLER}
        assert len(letters) == sum(sum(st.crashes.values()) for st in stats)

    return scenario


# -- the normal suite: a few repetitions ------------------------------------------------


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_siblings_crashing_at_once(engine: Engine, strategy: Strategy) -> None:
    """N siblings crash at once under each strategy: no hang, nothing lost."""
    await repeat(SHORT, sibling_crashes(engine, strategy))


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_crashes_during_restarts(
    engine: Engine, wat: Mapping[str, Component], strategy: Strategy
) -> None:
    """Crashes that land while restarts are under way: no hang, nothing lost."""
    await repeat(SHORT, crashes_during_restarts(engine, wat, strategy))


@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_crashes_during_backoff(engine: Engine, strategy: Strategy) -> None:
    """Crashes during a backoff wait, and a stop during one: no hang, nothing lost."""
    await repeat(SHORT, crashes_during_backoff(engine, strategy))


async def test_crashes_during_shutdown(engine: Engine, wat: Mapping[str, Component]) -> None:
    """Crashes while draining at exit: no restart, no wait, nothing lost."""
    await repeat(SHORT, crashes_during_shutdown(engine, wat))


async def test_stop_with_a_full_mailbox(engine: Engine) -> None:
    """A stop with a full mailbox and blocked producers: nothing lost, nobody hangs."""
    await repeat(SHORT, stop_with_a_full_mailbox(engine))


# -- ``pytest -m stress``: hundreds ---------------------------------------------------------


@pytest.mark.stress
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_stress_siblings_crashing_at_once(engine: Engine, strategy: Strategy) -> None:
    """Hundreds of repetitions of :func:`test_siblings_crashing_at_once`."""
    await repeat(LONG, sibling_crashes(engine, strategy))


@pytest.mark.stress
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_stress_crashes_during_restarts(
    engine: Engine, wat: Mapping[str, Component], strategy: Strategy
) -> None:
    """Hundreds of repetitions of :func:`test_crashes_during_restarts`."""
    await repeat(LONG, crashes_during_restarts(engine, wat, strategy))


@pytest.mark.stress
@pytest.mark.parametrize("strategy", STRATEGIES)
async def test_stress_crashes_during_backoff(engine: Engine, strategy: Strategy) -> None:
    """Hundreds of repetitions of :func:`test_crashes_during_backoff`."""
    await repeat(LONG, crashes_during_backoff(engine, strategy))


@pytest.mark.stress
async def test_stress_crashes_during_shutdown(engine: Engine, wat: Mapping[str, Component]) -> None:
    """Hundreds of repetitions of :func:`test_crashes_during_shutdown`."""
    await repeat(LONG, crashes_during_shutdown(engine, wat))


@pytest.mark.stress
async def test_stress_stop_with_a_full_mailbox(engine: Engine) -> None:
    """Hundreds of repetitions of :func:`test_stop_with_a_full_mailbox`."""
    await repeat(LONG, stop_with_a_full_mailbox(engine))


async def test_asks_to_idle_actors_overlapping_failures(engine: Engine, wat: Mapping[str, Component]) -> None:
    await repeat(SHORT, asks_to_idle_actors_overlapping_failures(engine, wat))


@pytest.mark.stress
async def test_stress_asks_to_idle_actors_overlapping_failures(
    engine: Engine, wat: Mapping[str, Component]
) -> None:
    await repeat(LONG, asks_to_idle_actors_overlapping_failures(engine, wat))
