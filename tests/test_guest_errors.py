"""When a guest goes wrong, the reason a user sees is the guest's own last
error line (the traceback stays in the log)."""

from __future__ import annotations

import io
import logging

import anyio
import pytest

from tests.guests import python_guest
from wasmactors._cli import main
from wasmactors.actors import ActorCrashedError, ActorSystem, EventKind
from wasmactors.runtime import Component, Crash, CrashKind, HostContext, Instance, MemoryStorage

from .conftest import CACHE, LIMITS, PY


def test_a_python_exception_is_the_crash_message(
    kitchen: Component, caplog: pytest.LogCaptureFixture
) -> None:
    """An uncaught exception crashes with its own line first; the traceback is logged."""
    logger = logging.getLogger("tests.guest-errors")
    context = HostContext("t/raiser", logger=logger)
    with caplog.at_level(logging.WARNING, logger=logger.name), Instance(kitchen, LIMITS, context) as inst:
        outcome = inst.handle_message(b"raise", request=True).outcome
    assert isinstance(outcome, Crash)
    assert outcome.kind == CrashKind.TRAP
    assert outcome.message.startswith("RuntimeError: the guest raised (wasm trap: ")
    assert any("Traceback (most recent call last)" in r.getMessage() for r in caplog.records)


def test_call_shows_the_guest_error_line(monkeypatch: pytest.MonkeyPatch) -> None:
    """`wasmactors call` prints the exception line as the crash reason, exit code 4."""
    monkeypatch.setenv("WASMACTORS_CACHE_DIR", str(CACHE))
    out, err = io.StringIO(), io.StringIO()
    code = main(["call", str(python_guest("kitchen")), "raise"], out=out, err=err)
    assert code == 4
    assert err.getvalue().startswith("wasmactors: crashed: trap: RuntimeError: the guest raised (")
    assert "crash      trap: RuntimeError: the guest raised" in out.getvalue()


@pytest.mark.anyio
async def test_an_actor_crash_says_why_to_the_asker_and_in_its_event(kitchen: Component) -> None:
    """ActorCrashedError and the crashed event carry the guest's own error line, on both backends."""
    system = ActorSystem(engine=kitchen.engine, storage=MemoryStorage())
    async with system, system.events() as events:
        ref = await system.spawn("raiser", kitchen, limits=PY)
        with pytest.raises(
            ActorCrashedError, match=r"crashed \(trap\): RuntimeError: the guest raised"
        ) as info:
            await ref.ask(b"raise", timeout=10)
        assert info.value.kind is CrashKind.TRAP
        with anyio.fail_after(10):
            async for event in events:
                if event.kind is EventKind.CRASHED:
                    break
    assert event.detail == "trap"
    assert event.message.startswith("RuntimeError: the guest raised")
