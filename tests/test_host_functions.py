"""The host functions, exercised from a real Python guest."""

from __future__ import annotations

import logging
import time
from typing import TYPE_CHECKING

import pytest

from wasmactors.messaging import RequestError, RequestFailure, Send, SendRequest
from wasmactors.runtime import (
    AppError,
    Component,
    HostContext,
    Instance,
    Limits,
    MiB,
    Success,
)

from .conftest import LIMITS

if TYPE_CHECKING:
    from collections.abc import Iterator


def reply(inst: Instance, command: str | bytes, **kwargs: object) -> bytes | None:
    payload = command.encode() if isinstance(command, str) else command
    result = inst.handle_message(payload, request=True, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result.outcome, Success), result.outcome
    return result.outcome.reply


@pytest.fixture
def inst(kitchen: Component) -> Iterator[Instance]:
    ctx = HostContext("tests/kitchen", resolve=lambda address: address != "nobody/home")
    with Instance(kitchen, LIMITS, ctx) as instance:
        yield instance


def test_envelope_reaches_the_guest(inst: Instance) -> None:
    """Sender, kind and headers arrive as given."""
    assert reply(inst, "sender", sender="a/b") == b"a/b"
    assert reply(inst, "sender") == b"-"
    assert reply(inst, "kind") == b"request"
    assert reply(inst, "headers", headers=[("trace", "42"), ("ct", "text")]) == b"trace=42;ct=text"


def test_self_address(inst: Instance) -> None:
    """self-address returns the context's address."""
    assert reply(inst, "whoami") == b"tests/kitchen"


def test_every_byte_value_round_trips(inst: Instance) -> None:
    """Payloads are bytes: all 256 values cross both ways unchanged."""
    everything = bytes(range(256))
    assert reply(inst, "bytes") == everything
    assert reply(inst, b"len " + everything) == b"256"


def test_reply_that_is_not_a_byte_string_is_an_app_error(inst: Instance) -> None:
    """A character above U+00FF cannot be a byte; the caller is told, the actor goes on."""
    result = inst.handle_message(b"wide", request=True)
    assert isinstance(result.outcome, AppError)
    assert "not a byte string" in result.outcome.message
    assert inst.usable


def test_guest_err_is_an_app_error(inst: Instance) -> None:
    """err(app-error) is returned with its message and is not a crash."""
    result = inst.handle_message(b"err out of stock", request=True)
    assert result.outcome == AppError("out of stock")
    assert inst.usable


def test_send_is_buffered_in_the_outbox(inst: Instance) -> None:
    """send() queues the message on the call's result; nothing is delivered by the runtime."""
    result = inst.handle_message(b"send a/b hello there", request=True)
    assert result.outcome == Success(b"sent")
    assert result.outbox == (Send("a/b", b"hello there"),)


@pytest.mark.parametrize(
    ("command", "error"),
    [
        ("send nobody/home x", "host-error SendError_UnknownRecipient:nobody/home"),
        ("send bad//address x", "host-error SendError_InvalidAddress:bad//address"),
    ],
)
def test_send_errors_are_wit_error_values(inst: Instance, command: str, error: str) -> None:
    """Rejected sends come back to the guest as send-error values."""
    result = inst.handle_message(command.encode(), request=True)
    assert result.outcome == Success(error.encode())
    assert result.outbox == ()


def test_send_payload_and_outbox_limits(kitchen: Component) -> None:
    """Payload size and the per-call outbox are bounded by the limits."""
    limits = Limits(memory=64 * MiB, fuel=10**9, timeout=5.0, max_payload=64, max_outbox=3)
    with Instance(kitchen, limits) as inst:
        big = inst.handle_message(b"send-big a/b 65", request=True)
        assert big.outcome == Success(b"host-error SendError_PayloadTooLarge:64")
        many = inst.handle_message(b"send-many a/b 5", request=True)
        assert many.outcome == Success(b"host-error SendError_OutboxFull:3")
        # The three accepted before the refusal are still the call's messages.
        assert [m.payload for m in many.outbox] == [b"0", b"1", b"2"]


def test_request_allocates_ids_and_records_the_timeout(inst: Instance) -> None:
    """request() returns distinct ids and queues a request with its deadline."""
    first = inst.handle_message(b"request a/b 250 ping", request=True)
    second = inst.handle_message(b"request a/b 0 ping", request=True)
    assert first.outbox == (SendRequest("a/b", b"ping", request_id=1, timeout=0.25),)
    assert second.outbox == (SendRequest("a/b", b"ping", request_id=2, timeout=None),)
    assert first.outcome == Success(b"1")


def test_callbacks_deliver_replies_and_errors(kitchen: Component) -> None:
    """handle-callback receives ok(reply) and each request-error case."""
    from wasmactors.runtime import MemoryStorage

    ctx = HostContext("tests/cb", storage=MemoryStorage())
    with Instance(kitchen, LIMITS, ctx) as inst:
        assert inst.handle_callback(1, b"pong").ok
        assert inst.handle_callback(2, RequestError(RequestFailure.TIMEOUT)).ok
        assert inst.handle_callback(3, RequestError(RequestFailure.CRASHED, "trap")).ok
        assert inst.handle_callback(4, bytes([0xE9])).ok
        assert reply(inst, "get callback/1") == b"ok pong"
        assert reply(inst, "get callback/2") == b"err RequestError_Timeout"
        assert reply(inst, "get callback/3") == b"err RequestError_Crashed:trap"
        assert reply(inst, "get callback/4") == b"ok \xe9"


def test_guest_log_goes_to_the_actor_logger(inst: Instance, caplog: pytest.LogCaptureFixture) -> None:
    """services.log records land in the logger at the matching level."""
    with caplog.at_level(logging.DEBUG, logger="wasmactors.guest"):
        reply(inst, "log warn disk almost full")
    assert ("wasmactors.guest", logging.WARNING, "disk almost full") in caplog.record_tuples


def test_guest_stdout_and_stderr_are_captured_not_printed(
    inst: Instance, caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """print() in the guest becomes a log record; nothing reaches the host's stdout."""
    with caplog.at_level(logging.INFO, logger="wasmactors.guest"):
        reply(inst, "print hello from the guest")
        reply(inst, "stderr careful now")
    out, err = capfd.readouterr()
    assert "hello from the guest" not in out + err
    messages = [r.getMessage() for r in caplog.records]
    assert "stdout: hello from the guest" in messages
    assert "stderr: careful now" in messages


def test_clocks(inst: Instance) -> None:
    """now-ns is wall-clock time; monotonic-ns is the host's monotonic clock."""
    before = time.time_ns()
    wall, mono, _ = (int(x) for x in (reply(inst, "clock") or b"").split())
    assert before <= wall <= time.time_ns()
    assert abs(mono - time.monotonic_ns()) < 10**9


def test_the_sandbox_has_no_environment_files_or_stdin(inst: Instance) -> None:
    """WASI gives the guest no environment, no arguments, no filesystem and an empty stdin."""
    assert reply(inst, "env") == b"0 0"
    assert reply(inst, "open /etc/passwd") in (b"FileNotFoundError", b"PermissionError", b"OSError")
    assert reply(inst, "stdin") == b"''"


def test_reads_inside_a_call_see_its_own_writes(kitchen: Component) -> None:
    """A value set earlier in the same call is read back before it is committed."""
    from wasmactors.runtime import MemoryStorage

    with Instance(kitchen, LIMITS, HostContext("t/rw", storage=MemoryStorage())) as inst:
        assert reply(inst, "set-get k fresh") == b"fresh"
