"""Instance.batch: several calls under one lock and one set-up, each checked
and budgeted as a single call is (the actor layer's turns use it)."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import pytest

from wasmactors.messaging import RequestError, RequestFailure
from wasmactors.runtime import (
    Crash,
    CrashKind,
    Instance,
    InstanceBrokenError,
    InstanceBusyError,
    InstanceClosedError,
    InvalidMessageError,
    Limits,
    MiB,
    PayloadTooLargeError,
    Success,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from wasmactors.runtime import Component

LIMITS = Limits(memory=4 * MiB, fuel=10**8, timeout=5.0, max_payload=1024)


def test_a_batch_answers_as_single_calls_do(wat: Mapping[str, Component]) -> None:
    """Each call in a batch gets its own reply and its own fuel count, equal to a single call's."""
    with Instance(wat["echo"], LIMITS) as inst:
        single = inst.handle_message(b"one", sender="a/b", headers=[("k", "v")])
        with inst.batch() as batch:
            results = [
                batch.handle_message(p, sender="a/b", headers=[("k", "v")]) for p in (b"one", b"\xff", b"")
            ]
    assert [r.outcome for r in results] == [Success(b"one"), Success(b"\xff"), Success(b"")]
    assert results[0].fuel == single.fuel > 0


def test_a_batch_holds_the_instance(wat: Mapping[str, Component]) -> None:
    """While a batch is open, another thread's call is refused; after it, calls work again."""
    refused: list[BaseException] = []
    with Instance(wat["echo"], LIMITS) as inst:
        with inst.batch() as batch:
            batch.handle_message(b"a")

            def other() -> None:
                try:
                    inst.handle_message(b"b")
                except InstanceBusyError as exc:
                    refused.append(exc)

            thread = threading.Thread(target=other)
            thread.start()
            thread.join()
        assert inst.handle_message(b"c", request=True).outcome == Success(b"c")
        with pytest.raises(InstanceClosedError):
            batch.handle_message(b"closed batch")
    assert len(refused) == 1


def test_a_batch_checks_every_message(wat: Mapping[str, Component]) -> None:
    """An oversized payload, a bad header or a bad callback reply is refused before
    the call, and the batch goes on with the next message."""
    with Instance(wat["echo"], LIMITS) as inst, inst.batch() as batch:
        with pytest.raises(PayloadTooLargeError):
            batch.handle_message(b"x" * 1025)
        with pytest.raises(InvalidMessageError):
            batch.handle_message(b"x", headers=[("k", "\ud800")])
        with pytest.raises(InvalidMessageError):
            batch.handle_callback(1, "not bytes")  # type: ignore[arg-type]
        assert batch.handle_message(b"next", request=True).outcome == Success(b"next")


def test_a_crash_in_a_batch_ends_the_instance(wat: Mapping[str, Component]) -> None:
    """After a call in a batch crashes, the batch's next call is refused as broken."""
    with Instance(wat["crash_on_x"], LIMITS) as inst, inst.batch() as batch:
        assert batch.handle_message(b"fine").ok
        crashed = batch.handle_message(b"x")
        assert isinstance(crashed.outcome, Crash)
        assert crashed.outcome.kind is CrashKind.TRAP
        with pytest.raises(InstanceBrokenError):
            batch.handle_message(b"fine")


def test_callbacks_in_a_batch(wat: Mapping[str, Component]) -> None:
    """handle-callback in a batch delivers replies and errors alike."""
    with Instance(wat["echo"], LIMITS) as inst, inst.batch() as batch:
        ok = batch.handle_callback(7, b"reply")
        failed = batch.handle_callback(8, RequestError(RequestFailure.TIMEOUT))
    assert ok.ok
    assert failed.ok
    assert ok.fuel > 0
