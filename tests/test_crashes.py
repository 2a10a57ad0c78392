"""Every misbehaviour is classified, contained, and survivable."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

import pytest

from wasmactors.runtime import (
    AppError,
    Component,
    Crash,
    CrashKind,
    Engine,
    HostContext,
    Instance,
    InstanceBrokenError,
    InstanceClosedError,
    InstantiationError,
    Limits,
    MemoryStorage,
    MiB,
    PayloadTooLargeError,
    Success,
)

from .conftest import LIMITS

if TYPE_CHECKING:
    from collections.abc import Mapping

SMALL = Limits(memory=4 * MiB, fuel=20_000_000, timeout=2.0)


def crash_of(inst: Instance, payload: bytes = b"x") -> Crash:
    result = inst.handle_message(payload, request=True)
    assert isinstance(result.outcome, Crash), result.outcome
    assert result.crashed
    assert not inst.usable
    assert result.outbox == ()
    return result.outcome


@pytest.mark.parametrize(
    ("guest", "kind", "text"),
    [
        ("unreachable", CrashKind.TRAP, "unreachable"),
        ("deep_recursion", CrashKind.TRAP, "call stack exhausted"),
        ("bad_reply", CrashKind.TRAP, "out of bounds"),
        ("memory_grower", CrashKind.MEMORY_LIMIT, "unreachable"),
        ("infinite_loop", CrashKind.FUEL_EXHAUSTED, "fuel"),
    ],
)
def test_misbehaving_guest_crashes_with_its_kind(
    wat: Mapping[str, Component], guest: str, kind: CrashKind, text: str
) -> None:
    """Each WAT fixture's failure maps to the right crash kind and message."""
    with Instance(wat[guest], SMALL) as inst:
        crash = crash_of(inst)
    assert crash.kind == kind
    assert text in crash.message


def test_trap_carries_the_wasm_backtrace(wat: Mapping[str, Component]) -> None:
    """Frames name the guest's functions, innermost first."""
    with Instance(wat["memory_grower"], SMALL) as inst:
        crash = crash_of(inst)
    assert crash.backtrace[:2] == ("M!oom", "M!handle")
    assert "wasm backtrace" in crash.detail


def test_the_wall_clock_stops_an_endless_loop(engine: Engine, wat: Mapping[str, Component]) -> None:
    """With fuel for hours, the wall-clock budget stops an endless loop: never early, and
    not much late (how late is measured by the `timeouts` benchmark, not asserted here)."""
    timeout = 0.2
    limits = Limits(memory=4 * MiB, fuel=10**15, timeout=timeout)
    with Instance(wat["infinite_loop"], limits) as inst:
        start = time.perf_counter()
        crash = crash_of(inst)
        elapsed = time.perf_counter() - start
    assert crash.kind == CrashKind.TIMEOUT
    # Never early; the upper bound only shows the deadline, not the fuel, ended it.
    assert timeout - engine.epoch_tick <= elapsed <= timeout + 5


def test_fuel_budget_is_per_call_and_reported(wat: Mapping[str, Component]) -> None:
    """A call within budget reports what it used; the next call gets a full budget again."""
    limits = Limits(memory=4 * MiB, fuel=30_000_000, timeout=5.0)
    with Instance(wat["fuel_burner"], limits) as inst:
        first = inst.handle_message(b"ab", request=True)  # 2 million iterations
        second = inst.handle_message(b"ab", request=True)
        assert first.outcome == Success(b"done") == second.outcome
        assert 2_000_000 < first.fuel < limits.fuel
        assert second.fuel == first.fuel
        over = inst.handle_message(b"abcd", request=True)  # 4 million iterations
    assert isinstance(over.outcome, Crash)
    assert over.outcome.kind == CrashKind.FUEL_EXHAUSTED
    assert over.fuel == limits.fuel


def test_python_guest_allocation_over_the_memory_limit(kitchen: Component) -> None:
    """CPython's MemoryError inside the guest is classified as the memory limit."""
    limits = Limits(memory=48 * MiB, fuel=10**10, timeout=10.0)
    with Instance(kitchen, limits) as inst:
        assert inst.handle_message(b"alloc 1", request=True).outcome == Success(b"1048576")
        crash = crash_of(inst, b"alloc 64")
    assert crash.kind == CrashKind.MEMORY_LIMIT


def test_python_guest_exception_is_a_trap_and_timeout_applies(kitchen: Component) -> None:
    """An uncaught exception traps; an endless Python loop hits the timeout."""
    with Instance(kitchen, LIMITS) as inst:
        assert crash_of(inst, b"raise").kind == CrashKind.TRAP
    limits = Limits(memory=64 * MiB, fuel=10**15, timeout=0.3)
    with Instance(kitchen, limits) as inst:
        assert crash_of(inst, b"spin").kind == CrashKind.TIMEOUT


def test_instance_below_the_guest_minimum_memory_fails_to_instantiate(kitchen: Component) -> None:
    """A memory limit too small for the guest's initial memory says so at instantiation."""
    with pytest.raises(InstantiationError, match="memory limit is 1048576 bytes"):
        Instance(kitchen, Limits(memory=1 * MiB, fuel=1000, timeout=1.0))


def test_crashed_instance_refuses_calls_and_a_fresh_one_works(wat: Mapping[str, Component]) -> None:
    """After a crash the wrapper says so; a new instance of the same component serves."""
    inst = Instance(wat["unreachable"], SMALL)
    crash_of(inst)
    with pytest.raises(InstanceBrokenError, match="crashed earlier"):
        inst.handle_message(b"again")
    assert inst.crash is not None
    inst.close()
    with Instance(wat["echo"], SMALL) as fresh:
        assert fresh.handle_message(b"still here", request=True).outcome == Success(b"still here")


@pytest.mark.parametrize(
    "guest",
    ["unreachable", "deep_recursion", "bad_reply", "memory_grower", "infinite_loop", "oversized_reply"],
)
def test_host_survives_every_misbehaving_guest(wat: Mapping[str, Component], guest: str) -> None:
    """A crash in one instance leaves another, running alongside, untouched."""
    with Instance(wat["echo"], SMALL) as healthy, Instance(wat[guest], SMALL) as bad:
        assert healthy.handle_message(b"before", request=True).ok
        bad.handle_message(b"x", request=True)
        assert healthy.handle_message(b"after", request=True).outcome == Success(b"after")


def test_oversized_reply_is_an_app_error_not_a_crash(wat: Mapping[str, Component]) -> None:
    """A well-formed reply over max_payload is refused; the instance stays usable."""
    with Instance(wat["oversized_reply"], SMALL) as inst:
        result = inst.handle_message(b"x", request=True)
        assert result.outcome == AppError("the reply of 2097152 bytes exceeds the limit of 1048576")
        assert inst.usable


def test_oversized_payload_is_refused_before_the_call(wat: Mapping[str, Component]) -> None:
    """An oversized message raises PayloadTooLargeError and costs the instance nothing."""
    limits = Limits(memory=4 * MiB, fuel=1_000_000, timeout=1.0, max_payload=100)
    with Instance(wat["echo"], limits) as inst:
        with pytest.raises(PayloadTooLargeError, match="101 bytes exceeds the limit of 100"):
            inst.handle_message(b"x" * 101)
        assert inst.handle_message(b"x" * 100, request=True).ok


def test_closed_instance_refuses_calls(wat: Mapping[str, Component]) -> None:
    """Calling a closed instance is the caller's mistake: InstanceClosedError."""
    inst = Instance(wat["echo"], SMALL)
    inst.close()
    inst.close()  # idempotent
    with pytest.raises(InstanceClosedError):
        inst.handle_message(b"x")


class FailingStorage(MemoryStorage):
    """A backend with a bug: reads raise an unexpected exception."""

    def __init__(self, exc: BaseException) -> None:
        super().__init__()
        self.exc = exc

    def get(self, namespace: str, key: str) -> bytes | None:
        raise self.exc


def test_host_function_failure_is_a_host_fault(kitchen: Component) -> None:
    """An unexpected exception in a host function crashes the call as host-fault, naming it."""
    ctx = HostContext("t/faulty", storage=FailingStorage(RuntimeError("disk on fire")))
    with Instance(kitchen, LIMITS, ctx) as inst:
        crash = crash_of(inst, b"get k")
    assert crash.kind == CrashKind.HOST_FAULT
    assert "RuntimeError: disk on fire" in crash.message


def test_keyboard_interrupt_in_a_host_function_is_not_swallowed(kitchen: Component) -> None:
    """BaseExceptions cross back to the caller after the crash is recorded."""
    ctx = HostContext("t/interrupted", storage=FailingStorage(KeyboardInterrupt()))
    with Instance(kitchen, LIMITS, ctx) as inst:
        with pytest.raises(KeyboardInterrupt):
            inst.handle_message(b"get k")
        assert inst.crash is not None
        assert inst.crash.kind == CrashKind.HOST_FAULT


def test_concurrent_calls_on_one_instance_are_refused(wat: Mapping[str, Component]) -> None:
    """A second thread entering a busy instance gets InstanceBusyError, not a corrupted Store."""
    import threading

    import anyio

    from wasmactors.runtime import InstanceBusyError

    limits = Limits(memory=4 * MiB, fuel=10**12, timeout=5.0)
    with Instance(wat["fuel_burner"], limits) as inst:

        def long_call() -> None:
            while True:  # retry until this thread is the one inside the Store
                try:
                    inst.handle_message(b"x" * 400)  # ~0.5 s of work
                    return
                except InstanceBusyError:
                    continue

        worker = threading.Thread(target=long_call)
        worker.start()
        refusal: InstanceBusyError | None = None
        while worker.is_alive() and refusal is None:
            try:
                inst.handle_message(b"")
            except InstanceBusyError as exc:
                refusal = exc
        worker.join()
    assert isinstance(refusal, anyio.BusyResourceError)
