"""Topology files: a supervision tree declared in TOML, validated before anything starts."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from wasmactors.actors import ONE_FOR_ALL, Topology, TopologyError
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
]


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
