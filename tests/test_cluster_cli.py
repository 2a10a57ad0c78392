"""The cluster on the command line: placement in topology files, `wasmactors node`
in its own process, and `tell` / `ask` / `cluster status` into a running cluster."""

from __future__ import annotations

import io
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from tests.guests import ROOT
from wasmactors._cli import main
from wasmactors.actors import Topology, TopologyError

if TYPE_CHECKING:
    from pathlib import Path

    from tests.nats_server import NatsServer

ECHO = ROOT / "examples" / "echo" / "component.toml"


def topology(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "topology.toml"
    path.write_text(body.replace("ECHO", str(ECHO)))
    return path


PLACED = """
[[child]]
type = "supervisor"
name = "front"
node = "a"
  [[child.child]]
  type = "actor"
  name = "echo"
  component = "ECHO"

[[child]]
type = "actor"
name = "solo"
node = "b"
component = "ECHO"

[[message]]
to = "front/echo"
payload = "hello"
"""


def test_placement_picks_what_each_node_runs(tmp_path: Path) -> None:
    """`node` places a subtree; its children inherit it; each node's share is known."""
    topo = Topology.load(topology(tmp_path, PLACED))
    assert topo.nodes() == ["a", "b"]
    assert topo.actors("a") == ["front/echo"]
    assert topo.actors("b") == ["solo"]
    assert topo.actors() == ["front/echo", "solo"]
    assert topo.node_of("front/echo") == "a"


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (
            '[[child]]\ntype = "actor"\nname = "x"\nnode = "a"\ncomponent = "ECHO"\n'
            '[[child]]\ntype = "actor"\nname = "y"\ncomponent = "ECHO"\n',
            "every top-level child needs a node",
        ),
        ('[[child]]\ntype = "actor"\nname = "x"\nnode = "a b"\ncomponent = "ECHO"\n', "invalid node name"),
        ('[[child]]\ntype = "actor"\nname = "x"\nnode = 7\ncomponent = "ECHO"\n', "node"),
        (
            '[[child]]\ntype = "supervisor"\nname = "s"\nnode = "a"\n'
            '  [[child.child]]\n  type = "actor"\n  name = "x"\n  node = "b"\n  component = "ECHO"\n',
            "a subtree lives on one node",
        ),
    ],
)
def test_malformed_placement_is_a_clear_error(tmp_path: Path, body: str, words: str) -> None:
    """Partial placement, bad node names, wrong types and split subtrees are refused, naming the key."""
    with pytest.raises(TopologyError, match=words) as caught:
        Topology.load(topology(tmp_path, body))
    assert "node" in str(caught.value)


def test_node_process_serves_tell_ask_and_status(nats_server: NatsServer, tmp_path: Path) -> None:
    """A `wasmactors node` process runs what is placed on it; `ask` and `tell` reach it
    from the command line, `cluster status` lists it, SIGTERM stops it cleanly."""
    path = topology(tmp_path, PLACED.replace('node = "b"', 'node = "a"'))
    prefix = "clitest"
    process = subprocess.Popen(
        [sys.executable, "-m", "wasmactors", "node", str(path), "--cluster", nats_server.url,
         "--prefix", prefix, "--name", "a", "--storage", ":memory:"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert process.stderr is not None
        lines: list[str] = []
        while not any("actors are up" in line for line in lines):
            line = process.stderr.readline()
            assert line, "".join(lines)
            lines.append(line)
        cluster = ["--cluster", nats_server.url, "--prefix", prefix]

        def cli(*args: str) -> tuple[int, str, str]:
            out, err = io.StringIO(), io.StringIO()
            code = main([*args, *cluster], out=out, err=err)
            return code, out.getvalue(), err.getvalue()

        assert cli("ask", "front/echo", "ping") == (0, "ping\n", "")
        assert cli("tell", "solo", "hi")[0] == 0
        code, _, err = cli("ask", "nobody", "ping")
        assert code == 1
        assert "no actor at 'nobody'" in err
        code, out, _ = cli("cluster", "status")
        assert code == 0
        assert "1 nodes, 2 actors" in out
        assert "node a" in out
        assert "  front/echo" in out
    finally:
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=60)
    assert process.returncode == 0, err
    assert "ended: signal (SIGTERM)" in out
    assert "front/echo" in out


def test_cluster_commands_fail_clearly_without_a_server(tmp_path: Path) -> None:
    """No server at the URL: one line and exit 1, for `ask` and for `cluster status`."""
    out, err = io.StringIO(), io.StringIO()
    code = main(["ask", "x", "y", "--cluster", "nats://127.0.0.1:1", "--timeout", "1"], out=out, err=err)
    assert code == 1
    assert "cannot connect" in err.getvalue()
    err = io.StringIO()
    assert main(["cluster", "status", "--cluster", "nats://127.0.0.1:1"], out=out, err=err) == 1
    assert "cannot connect" in err.getvalue()


@pytest.mark.parametrize(
    ("flags", "words"),
    [
        (["--ack-wait", "-1"], "ack_wait must be a positive number"),
        (["--processed-retention", "5"], "processed_retention must be at least"),
        (["--ack-wait", "50000", "--processed-retention", "86400"], "twice ack_wait (100000 s)"),
    ],
)
def test_node_settings_out_of_range_are_one_clear_line(flags: list[str], words: str) -> None:
    """Durable settings the node would break under are refused before it connects."""
    out, err = io.StringIO(), io.StringIO()
    args = ["node", str(ROOT / "examples" / "cluster" / "topology.toml"), "--cluster", "nats://127.0.0.1:1"]
    assert main([*args, "--name", "a", *flags], out=out, err=err) == 1
    assert words in err.getvalue()
    assert "cannot connect" not in err.getvalue()
