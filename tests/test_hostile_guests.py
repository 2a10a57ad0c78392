"""Hostile guests: within its own limits a guest cannot make the host hold
more than its budgets allow, read outside its memory, or outlast its
deadline. Each guest here attacks one bound; each test checks the host is
unharmed and the bound held."""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING

import pytest

from tests.guests import wat_component, wat_guest
from tests.guests.hostile import calling_guest
from wasmactors.runtime import (
    AppError,
    CompileError,
    Component,
    CrashKind,
    Engine,
    HostContext,
    Instance,
    InstanceBusyError,
    InstantiationError,
    KiB,
    Limits,
    MemoryStorage,
    MiB,
    SQLiteStorage,
    Success,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

LIMITS = Limits(memory=4 * MiB, fuel=10**9, timeout=5.0)

# Helpers placed in the guest module: a key "k<a><b>" for iteration $i at
# address 64, and the address "sink" at 80.
_KEYS = """
(data (memory 0) (i32.const 80) "sink")
(func $key (param $i i32)
  (i32.store8 (i32.const 64) (i32.const 0x6b))
  (i32.store8 (i32.const 65) (i32.add (i32.const 0x61) (i32.rem_u (local.get $i) (i32.const 26))))
  (i32.store8 (i32.const 66) (i32.add (i32.const 0x61) (i32.div_u (local.get $i) (i32.const 26)))))
"""


def _flood(call: str, times: int = 200) -> str:
    """A handler that makes ``call`` ``times`` times (result at 128) and
    replies with as many bytes (of its payload) as calls returned ok."""
    return (
        _KEYS
        + f"""
(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
  (local $i i32) (local $ok i32)
  (block $done (loop $next
    (br_if $done (i32.ge_u (local.get $i) (i32.const {times})))
    (call $key (local.get $i))
    {call}
    (if (i32.eqz (i32.load8_u (i32.const 128)))
      (then (local.set $ok (i32.add (local.get $ok) (i32.const 1)))))
    (local.set $i (i32.add (local.get $i) (i32.const 1)))
    (br $next)))
  (call $reply_some (local.get 4) (local.get $ok)))
"""
    )


def _reply_error_detail(call: str, at: int = 136) -> str:
    """A handler that makes ``call`` once (result at 128) and replies with its
    error's string detail, whose pointer and length are at ``at``."""
    return f"""(data (memory 0) (i32.const 80) "sink")
(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
  {call}
  (call $reply_some (i32.load (i32.const {at})) (i32.load (i32.const {at + 4}))))"""


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    seen: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = seen.append  # type: ignore[method-assign,assignment]
    logger = logging.getLogger("test.hostile")
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield seen
    logger.removeHandler(handler)


def _run(engine: Engine, source: bytes, payload: bytes, context: HostContext | None = None) -> Success:
    with Instance(engine.load(source), LIMITS, context or HostContext(storage=MemoryStorage())) as inst:
        result = inst.handle_message(payload, request=True)
    assert isinstance(result.outcome, Success), result.outcome
    return result.outcome


def test_storage_writes_of_one_call_are_bounded(engine: Engine) -> None:
    """200 x 1 MiB storage.set under a 4 MiB guest: the host buffers at most the budget."""
    storage = MemoryStorage()
    source = calling_guest(
        _flood(
            "(call $storage.set (i32.const 64) (i32.const 3) (local.get 4) (local.get 5) (i32.const 128))"
        ),
        "storage.set",
    )
    reply = _run(engine, source, b"v" * MiB, HostContext(storage=storage)).reply
    assert reply is not None
    written = len(storage.keys("anonymous", ""))
    assert written == len(reply)
    assert 0 < written * MiB <= LIMITS.memory


def test_outbox_bytes_of_one_call_are_bounded(engine: Engine) -> None:
    """200 x 1 MiB sends: quota-exceeded once the call queued its memory limit."""
    source = calling_guest(
        _flood(
            "(call $messaging.send (i32.const 80) (i32.const 4) (local.get 4) (local.get 5) (i32.const 128))"
        ),
        "messaging.send",
    )
    with Instance(engine.load(source), LIMITS) as inst:
        result = inst.handle_message(b"m" * MiB, request=True)
    assert isinstance(result.outcome, Success)
    assert result.outcome.reply is not None
    assert len(result.outbox) == len(result.outcome.reply)
    assert 0 < sum(len(o.payload) for o in result.outbox) <= LIMITS.memory


def test_quota_exceeded_is_a_wit_error_naming_the_bound(engine: Engine) -> None:
    """The guest learns which bound it hit, in a few words."""
    tiny = Limits(memory=4 * MiB, fuel=10**9, timeout=5.0, max_outbox_bytes=10)
    call = "(call $messaging.send (i32.const 80) (i32.const 4) (local.get 4) (local.get 5) (i32.const 128))"
    with Instance(engine.load(calling_guest(_reply_error_detail(call), "messaging.send")), tiny) as inst:
        result = inst.handle_message(b"eleven byte", request=True)
    assert isinstance(result.outcome, Success)
    assert result.outcome.reply == b"one call may queue 10 payload bytes"


def test_errors_never_echo_an_unbounded_address(engine: Engine) -> None:
    """An invalid 1 MiB address comes back as a short error, not the address."""
    call = "(call $messaging.send (local.get 4) (local.get 5) (i32.const 80) (i32.const 4) (i32.const 128))"
    reply = _run(engine, calling_guest(_reply_error_detail(call), "messaging.send"), b"!" * MiB).reply
    assert reply is not None
    assert reply.startswith(b"addresses are at most 255 bytes")
    assert len(reply) < 100


def test_an_invalid_address_is_echoed_cut(engine: Engine) -> None:
    """A short but invalid address is quoted back, at most 64 characters of it."""
    call = "(call $messaging.send (local.get 4) (local.get 5) (i32.const 80) (i32.const 4) (i32.const 128))"
    reply = _run(engine, calling_guest(_reply_error_detail(call), "messaging.send"), b"bad//" * 40).reply
    assert reply is not None
    assert reply.startswith(b"bad//bad//")
    assert reply.endswith(b"... (200 characters)")


@pytest.mark.parametrize(
    ("timeout_ms", "pending", "says"),
    [
        ("0xFFFFFFFF", 0, b"timeout-ms is at most 300000"),
        ("1000", 1024, b"at most 1024 requests may wait for a reply"),
    ],
)
def test_requests_cannot_pile_up(engine: Engine, timeout_ms: str, pending: int, says: bytes) -> None:
    """A huge timeout-ms, or more waiting requests than allowed, is refused up front."""
    call = (
        "(call $messaging.request (i32.const 80) (i32.const 4) (local.get 4) (local.get 5) "
        f"(i32.const {timeout_ms}) (i32.const 128))"
    )
    # result<u64, send-error>: the error variant sits at +8, its string at +12.
    source = calling_guest(_reply_error_detail(call, at=140), "messaging.request")
    with Instance(engine.load(source), LIMITS, HostContext(pending_requests=lambda: pending)) as inst:
        result = inst.handle_message(b"q", request=True)
    assert isinstance(result.outcome, Success)
    assert result.outcome.reply == says
    assert result.outbox == ()


def test_guest_logging_is_bounded(engine: Engine, records: list[logging.LogRecord]) -> None:
    """Records are cut to max_log_record and a call's log to max_log_bytes; the rest is one warning."""
    logger = logging.getLogger("test.hostile")
    source = calling_guest(
        _flood(
            "(call $services.log (i32.const 2) (local.get 4) (local.get 5)) "
            "(i32.store8 (i32.const 128) (i32.const 0))"
        ),
        "services.log",
    )
    _run(engine, source, b"L" * (100 * KiB), HostContext(logger=logger))
    logged = [r.getMessage() for r in records]
    *lines, warning = logged
    assert all(len(line) < 4 * KiB + 64 for line in lines)
    assert lines[0].endswith(f"... ({100 * KiB} bytes, cut to {4 * KiB})")
    assert sum(len(line) for line in lines) <= 64 * KiB + 64 * len(lines)
    assert warning == f"dropped {200 - len(lines)} log records: one call may log {64 * KiB} bytes"


def test_storage_keys_returns_a_bounded_list(engine: Engine) -> None:
    """keys() over more than max_keys keys is quota-exceeded, not a huge list."""
    storage = MemoryStorage()
    storage.apply("anonymous", {f"k{i:05}": b"" for i in range(50)})
    limits = Limits(memory=4 * MiB, fuel=10**9, timeout=5.0, max_keys=49)
    body = """(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
  (call $storage.keys (local.get 4) (local.get 5) (i32.const 128))
  (if (i32.eqz (i32.load8_u (i32.const 128))) (then (return (call $reply_some (i32.const 0) (i32.const 0)))))
  (call $reply_some (i32.load (i32.const 136)) (i32.load (i32.const 140))))"""
    source = calling_guest(body, "storage.keys")
    with Instance(engine.load(source), limits, HostContext(storage=storage)) as inst:
        result = inst.handle_message(b"k", request=True)
        assert isinstance(result.outcome, Success)
        assert result.outcome.reply == b"more than 49 keys match; ask with a longer prefix"
        assert inst.handle_message(b"k0004", request=True).outcome == Success(b"")


@pytest.mark.parametrize(
    "call",
    [
        "(call $storage.set (i32.const 0xFFFFFF00) (i32.const 9) (local.get 4) (local.get 5) (i32.const 8))",
        "(call $storage.set (i32.const 64) (i32.const 3) (i32.const 16) (i32.const 0x7FFFFFF) (i32.const 8))",
        "(call $storage.set (i32.const 64) (i32.const 3) (local.get 4) (local.get 5) (i32.const 0xFFFFFFF0))",
    ],
    ids=["key-out-of-bounds", "huge-value-length", "result-pointer-out-of-bounds"],
)
def test_out_of_range_pointers_trap_the_guest_only(engine: Engine, call: str) -> None:
    """Pointers and lengths outside the guest's memory are a trap; the host reads nothing."""
    source = calling_guest(
        f"(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32) {call} (call $reply_none))",
        "storage.set",
    )
    storage = MemoryStorage()
    component = engine.load(source)
    with Instance(component, LIMITS, HostContext(storage=storage)) as inst:
        result = inst.handle_message(b"value", request=True)
    assert result.crashed
    assert result.outcome.kind is CrashKind.TRAP  # type: ignore[union-attr]
    assert storage.keys("anonymous", "") == []
    with Instance(component, LIMITS, HostContext(storage=storage)) as fresh:  # the host goes on
        assert fresh.handle_message(b"value", request=True).crashed


def test_host_call_loops_end_at_the_deadline(engine: Engine) -> None:
    """A loop of host calls (which cost no fuel on the host side) is stopped by the wall clock."""
    body = """(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)
  (loop $forever (call $services.log (i32.const 0) (i32.const 80) (i32.const 0)) (br $forever))
  (call $reply_none))"""
    limits = Limits(memory=4 * MiB, fuel=10**15, timeout=0.2, max_log_bytes=1)
    with Instance(engine.load(calling_guest(body, "services.log")), limits) as inst:
        result = inst.handle_message(b"")
    assert result.crashed
    assert result.outcome.kind is CrashKind.TIMEOUT  # type: ignore[union-attr]
    assert result.elapsed < 5


def _memory_modules(count: int, *, same_module: bool = False) -> bytes:
    """A guest whose ``count`` extra memories each grow until refused; it
    replies with as many bytes as pages it grew in all."""
    mods = []
    for i in range(count):
        module = 0 if same_module else i
        if i == module:
            mods.append(
                f'(core module $B{i} (memory 1) (func (export "grow") (result i32) (local $n i32) '
                "(block $done (loop $l (br_if $done (i32.eq (memory.grow (i32.const 1)) (i32.const -1))) "
                "(local.set $n (i32.add (local.get $n) (i32.const 1))) (br $l))) (local.get $n)))"
            )
        mods.append(f"(core instance $b{i} (instantiate $B{module}))")
    lower = (
        "(core instance $host " + " ".join(f'(export "g{i}" (func $b{i} "grow"))' for i in range(count)) + ")"
    )
    core = "\n".join(f'(import "host" "g{i}" (func $g{i} (result i32)))' for i in range(count))
    calls = " ".join(f"(call $g{i}) i32.add" for i in range(count))
    body = (
        "(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32) "
        f"(call $reply_some (i32.const 0) (i32.const 0) {calls}))"
    )
    return wat_component(body, imports="\n".join(mods), lower=lower, core_imports=core)


def test_the_memory_limit_bounds_the_sum_of_all_memories(engine: Engine) -> None:
    """Eight extra memories growing as far as they may stay within 2 MiB together."""
    component = engine.load(_memory_modules(8))
    assert component.memories == 9
    with Instance(component, Limits(memory=2 * MiB, fuel=10**9, timeout=5, max_memories=16)) as inst:
        result = inst.handle_message(b"", request=True)
    assert isinstance(result.outcome, Success)
    assert result.outcome.reply is not None
    grown = len(result.outcome.reply)
    assert grown > 0
    assert (9 + grown) * 64 * KiB <= 2 * MiB


def test_a_module_instantiated_twice_cannot_add_memories(engine: Engine) -> None:
    """More memories than the component defines are refused at instantiation."""
    component = engine.load(_memory_modules(4, same_module=True))
    assert component.memories == 2
    with pytest.raises(InstantiationError, match="memor"):
        Instance(component, Limits(memory=2 * MiB, fuel=10**9, timeout=5))


def test_guest_stdout_is_bounded_per_call(kitchen: Component, records: list[logging.LogRecord]) -> None:
    """A Python guest printing a megabyte gets max_log_bytes of it logged and one warning."""
    limits = Limits(memory=64 * MiB, fuel=10**10, timeout=10.0)
    warned = threading.Event()
    logger = logging.getLogger("test.hostile")
    handler = logging.Handler()
    handler.emit = lambda record: warned.set() if record.getMessage().startswith("dropping") else None  # type: ignore[method-assign]
    logger.addHandler(handler)
    try:
        with Instance(kitchen, limits, HostContext(logger=logger)) as inst:
            assert inst.handle_message(b"spam 1000 1000").ok
            assert warned.wait(10)  # WASI delivers stdout on its own thread
    finally:
        logger.removeHandler(handler)
    lines = [r.getMessage() for r in records if r.getMessage().startswith("stdout: x")]
    assert 0 < len(lines) <= limits.max_log_bytes // 1000
    dropped = [r.getMessage() for r in records if r.getMessage().startswith("dropping")]
    assert dropped == [f"dropping stdout/stderr: one call may print {64 * KiB} bytes"]


def test_a_crash_reports_the_fuel_it_burnt(engine: Engine) -> None:
    """An early trap costs little fuel and says so; running out costs all of it."""
    with Instance(engine.load(wat_guest("unreachable")), LIMITS) as inst:
        trap = inst.handle_message(b"")
    assert trap.crashed
    assert 0 < trap.fuel < 1000
    limits = Limits(memory=4 * MiB, fuel=10**6, timeout=5.0)
    with Instance(engine.load(wat_guest("infinite_loop")), limits) as inst:
        exhausted = inst.handle_message(b"")
    assert exhausted.outcome.kind is CrashKind.FUEL_EXHAUSTED  # type: ignore[union-attr]
    assert exhausted.fuel == limits.fuel


def test_concurrent_callers_never_see_each_others_arguments(engine: Engine) -> None:
    """Two threads calling one instance: each gets its own reply or InstanceBusyError, never the other's."""
    instance = Instance(engine.load(wat_guest("echo")), LIMITS)
    mixed: list[tuple[bytes, bytes | None]] = []

    def hammer(tag: bytes) -> None:
        for i in range(2000):
            payload = tag * (1 + i % 7)
            headers = [("h", tag.decode() * (i % 3))] if i % 2 else []
            try:
                result = instance.handle_message(payload, request=True, sender=tag.decode(), headers=headers)
            except InstanceBusyError:
                continue
            reply = getattr(result.outcome, "reply", None)
            if reply != payload:
                mixed.append((payload, reply))

    with instance:
        threads = [threading.Thread(target=hammer, args=(tag,)) for tag in (b"a", b"b")]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert mixed == []


def test_an_application_error_message_is_cut(engine: Engine) -> None:
    """A megabyte err(app-error) reaches askers, dead letters and logs as its first 4 KiB."""
    body = (
        "(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32) "
        "(call $reply_err (local.get 4) (local.get 5)))"
    )
    with Instance(engine.load(wat_component(body)), LIMITS) as inst:
        result = inst.handle_message(b"e" * MiB, request=True)
    assert isinstance(result.outcome, AppError)
    assert result.outcome.message == "e" * 4096 + f"... ({MiB} bytes)"


def _table_guest(count: int) -> bytes:
    """A guest whose ``count`` tables each grow until refused; it replies with
    as many bytes as the elements it got, in thousands."""
    tables = " ".join(f"(table $t{i} 0 funcref)" for i in range(count))
    grows = " ".join(
        f"(block $d{i} (loop $l{i} (br_if $d{i} (i32.eq (table.grow $t{i} (ref.null func) (i32.const 1000)) "
        f"(i32.const -1))) (local.set $n (i32.add (local.get $n) (i32.const 1))) (br $l{i})))"
        for i in range(count)
    )
    body = (
        f"{tables} (func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32) (local $n i32) "
        f"{grows} (call $reply_some (local.get 4) (local.get $n)))"
    )
    return wat_component(body)


def test_table_elements_are_bounded_summed_over_tables(engine: Engine) -> None:
    """Ten tables growing as far as they may hold max_table_elements together, not ten times it."""
    component = engine.load(_table_guest(10))
    assert component.tables == 10
    limits = Limits(memory=4 * MiB, fuel=10**9, timeout=5.0, max_table_elements=100_000)
    with Instance(component, limits) as inst:
        result = inst.handle_message(b"k" * 1000, request=True)
    assert isinstance(result.outcome, Success)
    assert result.outcome.reply is not None
    assert 0 < len(result.outcome.reply) * 1000 <= 100_000


def test_the_gc_proposal_is_off(engine: Engine) -> None:
    """A GC heap would sit outside the memory budget: components using GC types do not compile."""
    with pytest.raises(CompileError, match="gc"):
        engine.load(b"(component (core module (type (array (mut i8)))))")


def test_more_memories_than_max_memories_fail_to_instantiate(engine: Engine) -> None:
    """Each memory reserves gigabytes of address space: the default admits eight."""
    component = engine.load(_memory_modules(9))
    assert component.memories == 10
    with pytest.raises(InstantiationError, match="memor"):
        Instance(component, Limits(memory=8 * MiB, fuel=10**9, timeout=5))


def test_empty_log_records_are_not_free(engine: Engine, records: list[logging.LogRecord]) -> None:
    """5,000 empty records: each costs RECORD_OVERHEAD, so at most max_log_bytes / 64 are logged."""
    source = calling_guest(
        _flood(
            "(call $services.log (i32.const 2) (i32.const 80) (i32.const 0)) "
            "(i32.store8 (i32.const 128) (i32.const 0))",
            5000,
        ),
        "services.log",
    )
    _run(engine, source, b"x" * 5000, HostContext(logger=logging.getLogger("test.hostile")))
    logged = [r for r in records if r.getMessage() == ""]
    assert 0 < len(logged) <= LIMITS.max_log_bytes // 64


def test_empty_storage_writes_are_not_free(engine: Engine) -> None:
    """Many writes of empty values: each row costs RECORD_OVERHEAD against max_storage_bytes."""
    storage = MemoryStorage()
    limits = Limits(memory=4 * MiB, fuel=10**9, timeout=5.0, max_storage_bytes=64 * KiB)
    source = calling_guest(
        _flood(
            "(call $storage.set (i32.const 64) (i32.const 3) (local.get 4) (i32.const 0) (i32.const 128))",
            676,
        ),
        "storage.set",
    )
    with Instance(engine.load(source), limits, HostContext(storage=storage)) as inst:
        assert inst.handle_message(b"x" * 676, request=True).ok
    assert 0 < len(storage.keys("anonymous", "")) <= 64 * KiB // 64


def test_a_crash_record_does_not_grow_with_the_guest(engine: Engine) -> None:
    """A 100 KB function name on a deep backtrace gives a crash record of a few KiB."""
    name = "f" * 100_000
    body = (
        f"(func ${name} (param i64) (result i64) "
        f"(i64.add (call ${name} (i64.add (local.get 0) (i64.const 1))) "
        f"(i64.const 1))) (func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32) "
        f"(drop (call ${name} (i64.const 0))) (unreachable))"
    )
    with Instance(engine.load(wat_component(body)), LIMITS) as inst:
        result = inst.handle_message(b"")
    crash = result.outcome
    assert result.crashed
    assert len(crash.backtrace) <= 64  # type: ignore[union-attr]
    assert all(len(frame) < 300 for frame in crash.backtrace)  # type: ignore[union-attr]
    assert len(crash.detail) < 9000  # type: ignore[union-attr]
    assert len(crash.message) < 1100  # type: ignore[union-attr]


def test_a_call_made_from_inside_a_host_call_leaves_the_outer_call_intact(engine: Engine) -> None:
    """An audit hook that calls another instance: the outer guest's next host call still works."""
    inner = Instance(engine.load(wat_guest("echo")), LIMITS)
    inner_replies: list[bytes | None] = []

    def audit(call: object) -> None:
        inner_replies.append(getattr(inner.handle_message(b"inner", request=True).outcome, "reply", None))

    call = "(call $storage.set (i32.const 64) (i32.const 3) (local.get 4) (local.get 5) (i32.const 128))"
    head = "(func $handle (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)"
    body = f"{head} {call} {call} (call $reply_none))"
    storage = MemoryStorage()
    with (
        inner,
        Instance(
            engine.load(calling_guest(_KEYS + body, "storage.set")),
            LIMITS,
            HostContext(storage=storage, audit=audit),
        ) as outer,
    ):
        result = outer.handle_message(b"v", request=True)
    assert result.ok, result.outcome
    assert inner_replies == [b"inner", b"inner"]
    assert len(storage.keys("anonymous", "")) == 1


def test_an_actors_whole_stored_state_is_bounded(engine: Engine, tmp_path: Path) -> None:
    """Call after call of 64 KiB writes under max_stored_bytes = 256 KiB: the state stops
    growing at the bound, across instances (a restart), in a real SQLite file; a write
    that does not grow it is still allowed."""
    limits = Limits(memory=4 * MiB, fuel=10**9, timeout=5.0, max_stored_bytes=256 * KiB)
    # One storage.set per call, keyed by the payload's first 3 bytes, the payload as
    # value; the reply is the payload's first byte if the write was allowed.
    source = calling_guest(
        _flood(
            "(call $storage.set (local.get 4) (i32.const 3) (local.get 4) (local.get 5) (i32.const 128))", 1
        ),
        "storage.set",
    )
    component = engine.load(source)
    with SQLiteStorage(tmp_path / "state.db") as storage:
        stored = []
        for round_ in range(2):  # the second instance sees what the first stored
            with Instance(component, limits, HostContext(storage=storage)) as inst:
                for i in range(5):
                    reply = inst.handle_message(b"%d%02d" % (round_, i) + b"v" * 64 * KiB, request=True)
                    assert isinstance(reply.outcome, Success)
                    stored.append(reply.outcome.reply is not None and len(reply.outcome.reply) == 1)
            assert storage.usage("anonymous") <= 256 * KiB
        assert stored == [True] * 3 + [False] * 7
        with Instance(component, limits, HostContext(storage=storage)) as inst:
            shrink = inst.handle_message(b"000" + b"v" * KiB, request=True)
        assert isinstance(shrink.outcome, Success)
        assert shrink.outcome.reply == b"0"  # its first byte: one call returned ok
        assert storage.value_size("anonymous", "000") == 3 + KiB


_RSS_PROBE = """
import sys
from tests.guests.hostile import calling_guest
from tests.test_hostile_guests import LIMITS, _flood
from wasmactors.runtime import Engine, HostContext, Instance, MemoryStorage, MiB

def peak_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise SystemExit("no VmHWM")

calls = {
    "send": "(call $messaging.send (i32.const 80) (i32.const 4) (local.get 4) (local.get 5) (i32.const 128))",
    "set": "(call $storage.set (i32.const 64) (i32.const 3) (local.get 4) (local.get 5) (i32.const 128))",
}
with Engine(cache_dir=None) as engine:
    sources = {name: calling_guest(_flood(call), f"messaging.{name}" if name == "send" else f"storage.{name}")
               for name, call in calls.items()}
    for name, source in sources.items():  # warm the code paths with 1-byte calls, not the flood
        with Instance(engine.load(source), LIMITS, HostContext(storage=MemoryStorage())) as inst:
            inst.handle_message(b"m", request=True)
    payload = b"m" * MiB
    before = peak_mib()
    for round_ in range(10):
        for name, source in sources.items():
            with Instance(engine.load(source), LIMITS, HostContext(storage=MemoryStorage())) as inst:
                result = inst.handle_message(payload, request=True)
                assert len(result.outcome.reply) > 0
    print(f"{peak_mib() - before:.1f}")
"""


def test_floods_of_one_call_keep_the_host_rss_bounded() -> None:
    """The amplification the issue found (200 x 1 MiB sends or storage writes in one
    call of a 4 MiB guest raised the host's RSS by ~200 MiB), measured as the peak RSS
    of a fresh process over 20 such calls: it grows by at most a few guest budgets."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    done = subprocess.run(
        [sys.executable, "-c", _RSS_PROBE], cwd=root, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stderr[-2000:]
    growth = float(done.stdout.strip())
    # Measured: ~12 MiB with the budgets; 268 MiB with them lifted (the defect).
    assert growth <= 8 * LIMITS.memory / MiB, f"peak RSS grew by {growth} MiB"
