"""Every example runs (docs that run)."""

from __future__ import annotations

import functools
import importlib
import io
import json
import logging
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import anyio
import httpx
import pytest

from tests.conftest import CACHE
from tests.guests import ROOT
from wasmactors._cli import main
from wasmactors._run import RunReport, run_topology
from wasmactors.actors import TRANSIENT, ActorSystem, EventKind, Topology
from wasmactors.runtime import Engine, Manifest, MemoryStorage, SQLiteStorage

if TYPE_CHECKING:
    from pathlib import Path

    from tests.nats_server import NatsServer


def test_quickstart_example_runs_end_to_end() -> None:
    """examples/quickstart.py counts to 42, survives a restart, and exits 0."""
    out = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "quickstart.py")],
        capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert "add 37 -> b'42'" in out.stdout
    assert "app error: add needs a whole number, got 'many'" in out.stdout
    assert "the total is still Success(reply=b'42')" in out.stdout
    assert "guest log: DEBUG total is now 42" in out.stdout


# -- the example topologies, each run as `wasmactors run` runs it -----------------

EXAMPLES = ROOT / "examples"


async def run_example(name: str, engine: Engine, db: Path) -> tuple[RunReport, SQLiteStorage]:
    topology = Topology.load(EXAMPLES / name / "topology.toml")
    report = await run_topology(
        topology, storage=db, duration=None, idle=0.2, engine=engine, err=io.StringIO()
    )
    assert report.ended == "idle"
    return report, SQLiteStorage(db)


@pytest.mark.anyio
async def test_ping_pong_bounces_the_ball_2000_times(engine: Engine, db_path: Path) -> None:
    """ping serves, the two players alternate 2,000 hits, and the last hitter records the rally."""
    report, storage = await run_example("ping-pong", engine, db_path)
    with storage:
        assert report.stats["ping"].handled == 1001  # the serve and 1,000 hits
        assert report.stats["pong"].handled == 1000
        last = storage.get("ping", "last")  # hit 2,000 lands on ping
        assert last is not None
        assert last.startswith(b"2000 hits in ")
        assert b"hits/s" in last
    assert report.dead_letters == {}


@pytest.mark.anyio
async def test_pipeline_applies_backpressure_and_loses_nothing(engine: Engine, db_path: Path) -> None:
    """With transform slowed, the stages before it fill their mailboxes to the
    limit and wait; every record still reaches the sink or is counted as bad."""
    report, storage = await run_example("pipeline", engine, db_path)
    stats = report.stats
    assert stats["line/transform"].mailbox_high_water == 16  # its mailbox-size: full
    assert stats["line/parse"].mailbox_high_water == 64  # parse waited on transform
    assert stats["line/parse"].app_errors == 2  # the two malformed readings
    assert stats["line/sink"].handled == 2000 - 2 - 200  # 10% are implausible and dropped
    assert report.dead_letters == {}
    with storage:
        sensors = [
            json.loads(storage.get("line/sink", k) or b"") for k in storage.keys("line/sink", "sensor/")
        ]
    assert sum(s["count"] for s in sensors) == 1798
    assert len(sensors) == 4


@pytest.mark.anyio
async def test_scatter_gather_combines_what_arrives_before_the_deadline(
    engine: Engine, db_path: Path
) -> None:
    """The slow worker's callback is a timeout; the result is combined from the other three,
    and its late replies become dead letters instead of reaching the coordinator twice."""
    report, storage = await run_example("scatter-gather", engine, db_path)
    with storage:
        for item in ("widget", "gadget"):
            result = (storage.get("coordinator", f"result/{item}") or b"").decode()
            assert result.startswith(f"{item}: best ")
            assert "(3 of 4 answered; workers/slow timeout)" in result
        assert storage.keys("coordinator", "request/") == []  # every callback consumed
    assert report.dead_letters == {"unexpected-reply": 2}


@pytest.mark.anyio
async def test_supervision_restarts_three_crash_kinds_and_keeps_storage(
    engine: Engine, db_path: Path
) -> None:
    """trap, infinite loop and memory bomb each crash the worker and it is restarted;
    its stored total counts every `work` and no crashed write; the fragile supervisor
    gives up and the root restarts its subtree."""
    report, storage = await run_example("supervision", engine, db_path)
    steady = report.stats["steady/worker"]
    assert steady.crashes == {"trap": 1, "timeout": 1, "memory-limit": 1}
    assert steady.restarts == 3
    assert report.stats["fragile/worker"].crashes == {"trap": 2}
    assert report.events.get("gave-up") == 1
    with storage:
        assert storage.get("steady/worker", "total") == b"10"  # 1 + 2 + 3 + 4, not the trap's +1000
        assert storage.get("fragile/worker", "total") == b"10"  # delivered after the subtree restarted


@pytest.mark.anyio
@pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="node and npm are not on PATH: the JavaScript guest cannot be built here",
)
async def test_polyglot_javascript_actor_sends_requests_and_crashes_beside_python(
    engine: Engine, db_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The JS tally counts in storage, sends to and requests from the Python counter, and
    its TypeError is a crash (write rolled back, restarted, reason is the guest's line)."""
    assert (EXAMPLES / "polyglot" / "tally" / "build" / "tally.wasm").exists(), "run `make guests`"
    monkeypatch.setattr(logging.getLogger("wasmactors"), "propagate", True)  # a CLI test may have cut it
    with caplog.at_level(logging.WARNING, logger="wasmactors.actors"):
        report, storage = await run_example("polyglot", engine, db_path)
    crashed = {r.getMessage() for r in caplog.records if "crashed" in r.getMessage()}
    assert crashed == {
        'tally crashed (trap): TypeError: can\'t access property "length", missing is undefined '
        "(wasm trap: wasm `unreachable` instruction executed)"
    }
    with storage:
        assert report.stats["tally"].crashes == {"trap": 1}
        assert report.stats["tally"].restarts == 1
        assert report.stats["counter"].handled == 4  # three `add 1` sends and the `get` request
        assert storage.get("tally", "count/apple") == b"2"
        assert storage.get("tally", "count/pear") == b"1"
        assert storage.get("tally", "count/bug") is None  # the crash rolled the write back
        assert storage.get("tally", "counter-total") == b"3"  # the request's answer, via the callback
        assert storage.get("counter", "total") == b"3"


@pytest.mark.anyio
@pytest.mark.skipif(
    shutil.which("node") is None or shutil.which("npm") is None,
    reason="node and npm are not on PATH: the JavaScript guest cannot be built here",
)
async def test_polyglot_javascript_actor_stops_itself_normally(engine: Engine) -> None:
    """The JS tally's `done` calls `lifecycle.stop` through componentize-js's
    import: its reply goes out, then as a TRANSIENT actor it is removed."""
    assert (EXAMPLES / "polyglot" / "tally" / "build" / "tally.wasm").exists(), "run `make guests`"
    manifest = Manifest.load(EXAMPLES / "polyglot" / "tally" / "component.toml")
    async with ActorSystem(engine=engine, storage=MemoryStorage()) as system:
        tally = await system.spawn("tally", manifest, restart=TRANSIENT)
        async with system.events() as events:
            assert await tally.ask(b"done", timeout=10) == b"bye"
            with anyio.fail_after(10):
                async for event in events:
                    if event.address == "tally" and event.kind in {EventKind.STOPPED, EventKind.RESTARTED}:
                        break
        assert event.kind is EventKind.STOPPED
        assert system.stopped_stats["tally"].crashes == {}


def test_make_demo_command_prints_the_pipeline_stats_table() -> None:
    """The command `make demo` runs: the stats table with every stage, from the CLI."""
    out, err = io.StringIO(), io.StringIO()
    code = main(
        ["run", str(EXAMPLES / "pipeline" / "topology.toml"), "--storage", ":memory:", "--idle", "0.2"],
        out=out,
        err=err,
    )
    assert code == 0, err.getvalue()
    table = out.getvalue()
    assert table.splitlines()[0].split() == [
        "actor", "handled", "errors", "crashes", "restarts", "p50", "p99", "mailbox", "max", "fuel",
    ]  # fmt: skip
    for stage in ("producer", "parse", "transform", "sink"):
        assert f"line/{stage}" in table
    assert "messages handled in" in table


# -- the embedded HTTP service, on a real socket ------------------------------------


@pytest.mark.anyio
async def test_http_service_answers_from_warehouse_actors(
    db_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Starlette app on hypercorn serves real HTTP on 127.0.0.1: stock changes go
    through actors (spawned on first use), errors map to status codes, state is in SQLite."""
    monkeypatch.setenv("WASMACTORS_CACHE_DIR", str(CACHE))
    monkeypatch.syspath_prepend(str(EXAMPLES / "http-service"))
    service = importlib.import_module("service")
    stop = anyio.Event()
    with service.listen() as sock, anyio.fail_after(60):
        base = f"http://127.0.0.1:{sock.getsockname()[1]}"
        async with anyio.create_task_group() as tg:
            await tg.start(functools.partial(service.serve, sock, storage=db_path, shutdown=stop.wait))
            async with httpx.AsyncClient(base_url=base) as client:
                url = "/warehouses/paris/stock/bolts"
                r = await client.post(url, json={"action": "receive", "quantity": 5})
                assert (r.status_code, r.json()) == (200, {"sku": "bolts", "quantity": 5})
                r = await client.post(url, json={"action": "ship", "quantity": 7})
                assert (r.status_code, r.json()) == (409, {"error": "cannot ship 7 of bolts: 5 in stock"})
                r = await client.post(url, json={"action": "steal", "quantity": 1})
                assert r.status_code == 422
                r = await client.get("/warehouses/paris/stock")
                assert (r.status_code, r.json()) == (200, {"bolts": 5})
                r = await client.get("/warehouses/no.such/stock")
                assert r.status_code == 404
                stats = (await client.get("/stats")).json()
                assert stats["warehouses/paris"]["app_errors"] == 1
                assert "warehouses/berlin" in stats  # from topology.toml
            stop.set()
    with SQLiteStorage(db_path) as storage:
        assert storage.get("warehouses/paris", "sku/bolts") == b"5"


# -- the cluster: three node processes ------------------------------------------------


def test_cluster_example_runs_the_pipeline_over_three_node_processes(nats_server: NatsServer) -> None:
    """examples/cluster/run.py: three `wasmactors node` processes share the pipeline
    through nats-server; the sink's totals match the one-process run, every node stops cleanly."""
    done = subprocess.run(
        [
            sys.executable,
            str(EXAMPLES / "cluster" / "run.py"),
            "--server",
            nats_server.url,
            "--timeout",
            "90",
        ],
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = done.stdout
    assert "sink report: 1798 records from 4 sensors" in out
    assert "3 nodes, 4 actors" in out
    for node in ("a", "b", "c"):
        assert f"--- node {node} (exit 0)" in out
    assert "ended: signal (SIGTERM)" in out


@pytest.mark.parametrize("backend", ["asyncio", "trio"])
def test_durable_cluster_example_counts_every_record_once_across_a_kill(
    nats_server: NatsServer, prefix: str, backend: str
) -> None:
    """examples/cluster/run.py --durable: node b is SIGKILLed while the records flow and
    restarted on its SQLite file; the sink counted each of the 1798 records exactly once
    (its totals, and one processed id per record at every stage)."""
    done = subprocess.run(
        [
            sys.executable, str(EXAMPLES / "cluster" / "run.py"), "--durable", "--server", nats_server.url,
            "--prefix", prefix, "--timeout", "90", *(["--trio"] if backend == "trio" else []),
        ],
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, out[-3000:] + done.stderr[-3000:]
    [kill] = [line for line in out.splitlines() if "SIGKILL node b" in line]
    assert int(kill.split()[3]) < 1798, f"the kill came after the stream: {kill}"
    assert "sink report: 1798 records from 4 sensors" in out
    assert "processed ids of transform: 1998 from parse" in out
    assert "processed ids of sink: 1798 from transform" in out
    assert "exactly once: 1798 records at the sink" in out
    for node in ("a", "b", "c"):
        assert f"--- node {node} (exit 0)" in out
