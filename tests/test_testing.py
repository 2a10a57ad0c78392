"""wasmactors.testing: the harness users unit-test their own components with."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import anyio
import pytest

from wasmactors import Manifest
from wasmactors.actors import ActorCrashedError, DeadLetterReason
from wasmactors.testing import EventKind, Reject, open_test_system

from .conftest import PY, WAT
from .guests import ROOT

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from wasmactors.messaging import Envelope
    from wasmactors.runtime import Component, Engine

pytestmark = pytest.mark.anyio


async def test_counter_from_its_manifest(engine: Engine) -> None:
    """The README's example: a component from its manifest, its guest logs captured at every level."""
    async with open_test_system(engine=engine) as kit:
        counter = await kit.spawn("counter", Manifest.load(ROOT / "examples" / "counter" / "component.toml"))
        await counter.tell(b"add 5")
        assert await counter.ask(b"get", timeout=5) == b"5"
        assert "total is now 5" in kit.log_messages("counter")
        assert kit.logs("counter")[0].level == logging.DEBUG
        assert kit.logs("nobody") == []
        assert kit.dead_letters == []


async def test_probe_sees_what_a_component_sends(engine: Engine, kitchen: Component) -> None:
    """A probe records what it is sent and answers requests as told."""
    async with open_test_system(engine=engine) as kit:
        probe = await kit.probe("probe", reply=lambda envelope: envelope.payload.upper())
        k = await kit.spawn("k", kitchen, limits=PY)
        await k.tell(b"send probe hello")
        envelope = await probe.receive()
        assert (envelope.sender, envelope.payload) == ("k", b"hello")
        assert await k.ask(b"request probe 5000 ping", timeout=5) == b"1"
        request = await probe.receive()  # first the request, then the guest's report of its callback
        assert (request.kind.value, request.payload) == ("request", b"ping")
        assert (await probe.receive()).payload == b"1 ok PING"
        assert probe.payloads == [b"hello", b"ping", b"1 ok PING"]


async def test_probe_rejects_as_an_app_error(engine: Engine, kitchen: Component) -> None:
    def refuse(envelope: Envelope) -> bytes:
        raise Reject("not today")

    async with open_test_system(engine=engine) as kit:
        await kit.probe("door", reply=refuse)
        probe = await kit.probe("probe")
        k = await kit.spawn("k", kitchen, limits=PY)
        await k.ask(b"request door 5000 knock", timeout=5)
        assert (await probe.receive()).payload == b"1 err RequestError_AppError:not today"


async def test_crashes_restarts_and_dead_letters_are_recorded(
    engine: Engine, wat: Mapping[str, Component]
) -> None:
    """Events and dead letters are there to assert on, and wait_for_event waits for each one in turn."""
    async with open_test_system(engine=engine) as kit:
        bomb = await kit.spawn("bomb", wat["unreachable"], limits=WAT)
        for _ in range(2):
            with pytest.raises(ActorCrashedError):
                await bomb.ask(b"x", timeout=5)
            crashed = await kit.wait_for_event(EventKind.CRASHED, "bomb")
            assert crashed.detail == "trap"
            assert crashed.backtrace
            await kit.wait_for_event(EventKind.RESTARTED, "bomb")
        with pytest.raises(TimeoutError):
            await kit.wait_for_event(EventKind.RESTARTED, "bomb", timeout=0.1)
        assert [d.reason for d in kit.dead_letters] == [DeadLetterReason.CRASHED_HANDLER] * 2
        kinds = [e.kind for e in kit.events if e.address == "bomb"]
        assert kinds == [EventKind.STARTED] + [EventKind.CRASHED, EventKind.RESTARTED] * 2


async def test_sqlite_storage_by_path(engine: Engine, tmp_path: Path) -> None:
    """storage= takes a path: the state is in a real SQLite file that outlives the system."""
    manifest = Manifest.load(ROOT / "examples" / "counter" / "component.toml")
    for expected in (b"3", b"6"):
        async with open_test_system(engine=engine, storage=tmp_path / "state.db") as kit:
            counter = await kit.spawn("counter", manifest)
            assert await counter.ask(b"add 3", timeout=5) == expected
    assert (tmp_path / "state.db").stat().st_size > 0


async def test_guest_logger_is_restored(engine: Engine) -> None:
    logger = logging.getLogger("wasmactors.guest")
    before = (logger.level, list(logger.handlers))
    async with open_test_system(engine=engine):
        await anyio.lowlevel.checkpoint()
    assert (logger.level, logger.handlers) == before
