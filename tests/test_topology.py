"""Topology files: a supervision tree declared in TOML, validated before anything starts."""

from __future__ import annotations

import io
import math
from typing import TYPE_CHECKING

import pytest

from wasmactors._cli import main
from wasmactors.actors import ONE_FOR_ALL, ActorAppError, Topology, TopologyError
from wasmactors.testing import open_test_system

from .guests import ROOT, python_guest

if TYPE_CHECKING:
    from pathlib import Path

    from wasmactors.runtime import Engine

COUNTER = ROOT / "examples" / "counter" / "component.toml"
ECHO = ROOT / "examples" / "echo" / "component.toml"


def tree(tmp_path: Path) -> str:
    return f"""
strategy = "one-for-one"
max-restarts = 5
within = 10.0

[[child]]
type = "supervisor"
name = "workers"
strategy = "one-for-all"
backoff = {{ initial = 0.01, maximum = 0.5 }}

  [[child.child]]
  type = "actor"
  name = "counter"
  component = "{COUNTER}"
  mailbox-size = 16
  limits = {{ fuel = 300_000_000 }}

  [[child.child]]
  type = "actor"
  name = "kitchen"
  component = "{python_guest("kitchen")}"
  restart = "transient"
  limits = {{ memory = "64 MiB", fuel = 1_000_000_000, timeout-ms = 2000 }}

[[child]]
type = "actor"
name = "echo"
component = "{ECHO}"

[[message]]
to = "workers/counter"
payload = "add 5"

[[message]]
to = "workers/counter"
payload = "add 2"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "topology.toml"
    path.write_text(text)
    return path


@pytest.mark.anyio
async def test_a_topology_starts_its_tree_and_sends_its_messages(engine: Engine, tmp_path: Path) -> None:
    topology = Topology.load(write(tmp_path, tree(tmp_path)))
    assert topology.actors() == ["workers/counter", "workers/kitchen", "echo"]
    async with open_test_system(engine=engine) as kit:
        await topology.start(kit.system)
        await kit.settle()
        counter = kit.system.ref("workers/counter")
        assert await counter.ask(b"get", timeout=5) == b"7"
        assert await kit.system.ref("echo").ask(b"hi", timeout=5) == b"hi"
        assert await kit.system.ref("workers/kitchen").ask(b"whoami", timeout=5) == b"workers/kitchen"
        workers = kit.system.root.children[0]
        assert workers.strategy is ONE_FOR_ALL  # type: ignore[union-attr]
        cell = kit.system.registry.lookup("workers/counter")
        assert cell.limits.fuel == 300_000_000  # type: ignore[union-attr]  # the override
        assert cell.limits.timeout == 1.0  # type: ignore[union-attr]  # from the manifest
        assert cell.mailbox.capacity == 16  # type: ignore[union-attr]


MISTAKES = [
    (
        ('name = "echo"', 'name = "echo"\ncolour = "blue"'),
        r"key `child\[1\]`: Object contains unknown field `colour`",
    ),
    (
        ("mailbox-size = 16", 'mailbox-size = "big"'),
        r"key `child\[0\].child\[0\].mailbox-size`: Expected `int",
    ),
    (('strategy = "one-for-all"', 'strategy = "all-for-one"'), r"key `child\[0\].strategy`"),
    ((", timeout-ms = 2000", ""), r"key `child\[0\].child\[1\].limits`: .*must set timeout-ms"),
    ((str(ECHO), "/no/such/component.toml"), r"key `child\[1\].component`: no such file: /no/such"),
    (
        ('name = "kitchen"', 'name = "counter"'),
        r"`child\[0\].child\[1\].name`: a second child named 'counter'",
    ),
    (
        ('to = "workers/counter"', 'to = "workers/nobody"'),
        r"key `message\[0\].to`: no actor 'workers/nobody'",
    ),
    (("fuel = 300_000_000", "fuel = -1"), r"child\[0\].child\[0\].limits.fuel`: Expected `int` >= 1"),
    (("[[message]]", "[[message]"), r"not valid TOML"),
    # shutdown: milliseconds >= 0, "brutal-kill" or "infinity"; nothing else
    (("mailbox-size = 16", "shutdown = -1"), r"key `child\[0\].child\[0\].shutdown`: Expected `int` >= 0"),
    (("mailbox-size = 16", "shutdown = nan"), r"key `child\[0\].child\[0\].shutdown`: Expected `int \| str"),
    (("mailbox-size = 16", "shutdown = 1.5"), r"key `child\[0\].child\[0\].shutdown`: Expected `int \| str"),
    (("mailbox-size = 16", "shutdown = inf"), r"key `child\[0\].child\[0\].shutdown`: Expected `int \| str"),
    (("mailbox-size = 16", "shutdown = true"), r"key `child\[0\].child\[0\].shutdown`: Expected `int \| str"),
    (
        ("mailbox-size = 16", 'shutdown = "brutal_kill"'),
        r"key `child\[0\].child\[0\].shutdown`: Invalid enum value 'brutal_kill'",
    ),
    (
        ('strategy = "one-for-all"', 'strategy = "one-for-all"\nshutdown = "forever"'),
        r"`child\[0\].shutdown`",
    ),
]


@pytest.mark.anyio
async def test_shutdown_sets_each_childs_stop_time(engine: Engine, tmp_path: Path) -> None:
    """`shutdown` is OTP's: milliseconds, "brutal-kill" (0) or "infinity", per
    child; without it an actor gets the system's shutdown time and a supervisor infinity."""
    text = (
        tree(tmp_path)
        .replace("mailbox-size = 16", "mailbox-size = 16\nshutdown = 2500", 1)
        .replace('restart = "transient"', 'restart = "transient"\nshutdown = "brutal-kill"', 1)
        .replace('name = "workers"', 'name = "workers"\nshutdown = 3000', 1)
        .replace('name = "echo"', 'name = "echo"\nshutdown = "infinity"', 1)
    )
    topology = Topology.load(write(tmp_path, text))
    async with open_test_system(engine=engine) as kit:
        await topology.start(kit.system)
        cells = {a: kit.system.registry.lookup(a) for a in topology.actors()}
        assert cells["workers/counter"].shutdown == 2.5  # type: ignore[union-attr]
        assert cells["workers/kitchen"].shutdown == 0  # type: ignore[union-attr]
        assert cells["echo"].shutdown == math.inf  # type: ignore[union-attr]
        assert kit.system.supervisor("workers").shutdown == 3.0
    plain = Topology.load(write(tmp_path, tree(tmp_path)))
    async with open_test_system(engine=engine) as kit:
        await plain.start(kit.system)
        assert kit.system.registry.lookup("echo").shutdown == kit.system.shutdown_timeout  # type: ignore[union-attr]
        assert kit.system.supervisor("workers").shutdown == math.inf


@pytest.mark.parametrize(("change", "expected"), MISTAKES)
def test_mistakes_name_the_file_and_the_key(tmp_path: Path, change: tuple[str, str], expected: str) -> None:
    old, new = change
    text = tree(tmp_path)
    assert old in text
    path = write(tmp_path, text.replace(old, new, 1))
    with pytest.raises(TopologyError, match=expected) as error:
        Topology.load(path)
    assert str(error.value).startswith(str(path))


def test_an_unreadable_file_is_a_topology_error(tmp_path: Path) -> None:
    with pytest.raises(TopologyError, match="cannot read topology"):
        Topology.load(tmp_path / "missing.toml")


@pytest.mark.anyio
async def test_ask_messages_report_their_answers(engine: Engine, tmp_path: Path) -> None:
    """A `[[message]]` with `ask = true` waits for its answer, or the error in its place, in file order."""
    text = tree(tmp_path) + (
        '\n[[message]]\nto = "workers/counter"\npayload = "get"\nask = true\n'
        '\n[[message]]\nto = "workers/kitchen"\npayload = "err nope"\nask = true\ntimeout-ms = 3000\n'
    )
    topology = Topology.load(write(tmp_path, text))
    assert [(m.ask, m.timeout) for m in topology.messages] == [
        (False, 5.0),
        (False, 5.0),
        (True, 5.0),
        (True, 3.0),
    ]
    answers: list[tuple[str, bytes | Exception]] = []
    async with open_test_system(engine=engine) as kit:
        await topology.start(kit.system, on_answer=lambda m, a: answers.append((m.to, a)))
    assert answers[0] == ("workers/counter", b"7")
    to, error = answers[1]
    assert to == "workers/kitchen"
    assert isinstance(error, ActorAppError)
    assert "nope" in str(error)


def test_run_prints_the_answers_of_ask_messages(tmp_path: Path) -> None:
    """`wasmactors run` says each ask message's answer as it comes."""
    text = tree(tmp_path) + '\n[[message]]\nto = "echo"\npayload = "hello there"\nask = true\n'
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["run", str(write(tmp_path, text)), "--storage", ":memory:", "--idle", "0.2"], out=out, err=err
    )
    assert code == 0, err.getvalue()
    assert "answer from echo: hello there" in err.getvalue()
