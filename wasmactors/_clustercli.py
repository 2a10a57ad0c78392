"""The cluster commands: ``wasmactors node``, ``tell``, ``ask`` and
``cluster status`` (docs/cluster.md)."""

from __future__ import annotations

import math
import os
import secrets
import signal
import sys
import time
from functools import partial
from typing import TYPE_CHECKING, TextIO

import anyio

from . import _run
from .actors import ActorSystem, SystemFailedError, Topology
from .messaging import Cluster, ClusterError
from .messaging._bridge import NatsBridge
from .messaging._leases import Leases, NodeInfo
from .messaging._wire import token_address
from .runtime import Engine, MemoryStorage

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["cluster_status", "run_node", "send_once"]

#: A command line client reports an unreachable server at once, not after retries.
_ONE_TRY = {"max_reconnect_attempts": 1}


async def run_node(
    topology: Topology,
    cluster: Cluster,
    *,
    storage: Path | None,
    duration: float | None,
    wait: float,
    engine: Engine,
    err: TextIO = sys.stderr,
) -> _run.RunReport:
    """Join the cluster as ``cluster.node``, start the subtrees placed on it,
    wait until every actor of the topology is up somewhere, send the initial
    messages to the actors placed here, then serve until SIGINT/SIGTERM (or
    ``duration``); then leave gracefully."""
    node = cluster.node
    placed = topology.actors(node)
    if topology.nodes() and node not in topology.nodes():
        raise ValueError(
            f"{topology.source}: nothing is placed on node {node!r} (nodes: {', '.join(topology.nodes())})"
        )
    report = _run.RunReport({}, 0.0, "time", {}, {})
    system = ActorSystem(
        storage=storage if storage is not None else MemoryStorage(), engine=engine, cluster=cluster
    )
    start = time.perf_counter()
    missing: list[str] = []
    try:
        async with system, anyio.create_task_group() as tg:
            assert system.cluster is not None
            print(f"node {node} joined {', '.join(cluster.servers)}", file=err)
            with anyio.CancelScope() as serving:
                # A signal ends the node at any stage: starting, waiting, serving.
                tg.start_soon(_watch_signals, serving, report)
                await topology.start(system, messages=False, node=node)
                print(f"node {node}: started {len(placed)} actors", file=err, flush=True)
                everyone = topology.actors()
                with anyio.move_on_after(wait) as waiting:
                    await system.cluster.wait_owned(everyone)
                if waiting.cancelled_caught:
                    missing = [a for a in everyone if system.cluster.leases.owner(a) is None]
                    serving.cancel()
                print(f"node {node}: all {len(everyone)} actors are up", file=err, flush=True)
                start = time.perf_counter()
                await _send_messages(system, topology, node, err)
                await anyio.sleep(math.inf if duration is None else duration)
            report.elapsed = time.perf_counter() - start
            tg.cancel_scope.cancel()
    except SystemFailedError as exc:
        report.ended, report.failure = "failed", str(exc)
        report.elapsed = time.perf_counter() - start
    finally:
        if missing:
            raise ValueError(f"node {node}: after {wait:g} s these actors are not up: {', '.join(missing)}")
    report.stats.update(system.stopped_stats)
    report.dead_letters = dict(system.dead_letter_counts)
    return report


async def _send_messages(system: ActorSystem, topology: Topology, node: str, err: TextIO) -> None:
    for message in topology.messages:
        if topology.node_of(message.to) != node:
            continue
        ref = system.ref(message.to)
        if not message.ask:
            await ref.tell(message.payload)
            continue
        answer: bytes | Exception
        try:
            answer = await ref.ask(message.payload, timeout=message.timeout)
        except Exception as exc:  # noqa: BLE001 - reported, as `run` does
            answer = exc
        _run._print_answer(err, message, answer)


async def _watch_signals(serving: anyio.CancelScope, report: _run.RunReport) -> None:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for signum in signals:
            report.ended = f"signal ({signal.Signals(signum).name})"
            serving.cancel()
            return


def client_cluster(url: str, prefix: str) -> Cluster:
    """A short-lived node for one command: a name of its own."""
    name = f"cli-{os.getpid()}-{secrets.token_hex(3)}"
    return Cluster(url, node=name, prefix=prefix, options=_ONE_TRY)


async def send_once(cluster: Cluster, address: str, payload: bytes, *, ask: bool, timeout: float) -> bytes:
    """Join briefly, tell or ask ``address``, leave; the reply (``b""`` for a tell)."""
    async with ActorSystem(storage=MemoryStorage(), cluster=cluster) as system:
        ref = system.ref(address)
        if ask:
            return await ref.ask(payload, timeout=timeout)
        with anyio.fail_after(timeout):
            await ref.tell(payload)
        return b""


async def cluster_status(url: str, prefix: str, out: TextIO) -> None:
    """Print the live nodes, their leases and the actors each owns."""
    bridge = NatsBridge()
    config = Cluster(url, node="status", prefix=prefix, options=_ONE_TRY)
    try:
        await bridge.connect(config.servers, **config.connect_options())
    except Exception as exc:
        await bridge.aclose(drain=False)
        raise ClusterError(f"cannot connect to {url}: {exc}") from exc
    try:
        leases = Leases(
            bridge, bucket=f"{prefix}-names", node="", lease=1.0, ping=partial(str), lost=lambda _: None
        )
        await leases.open(register=False)
        nodes = leases.nodes()
        actors = leases.actors()
        await leases.close(release=False)
        lag = await bridge.call(_durable_lag(bridge, prefix))
    finally:
        await bridge.aclose()
    print(f"cluster {prefix!r} at {url}: {len(nodes)} nodes, {len(actors)} actors", file=out)
    print(f"lease: {leases.lease:g} s (the bucket's ttl)", file=out)
    now = time.time()
    for name, info in sorted(nodes.items()):
        print(f"node {name}  {_describe(info, now)}", file=out)
        for address, owner in sorted(actors.items()):
            if owner == name:
                print(f"  {address}", file=out)
    orphans = sorted(a for a, owner in actors.items() if owner not in nodes)
    if orphans:
        print("actors whose node is gone (their leases lapse soon):", file=out)
        for address in orphans:
            print(f"  {address}  (node {actors[address]})", file=out)
    if lag is not None:
        stored, consumers = lag
        print(f"durable stream {prefix}-durable: {stored:,} messages stored", file=out)
        for address, counts in sorted(consumers.items()):
            if counts is None:
                print(f"  {address}  no consumer yet (its node has not started it)", file=out)
            else:
                waiting, unacked, redelivered = counts
                print(
                    f"  {address}  lag {waiting:,}  delivered, not acked {unacked:,}  "
                    f"redelivered {redelivered:,}",
                    file=out,
                )


async def _durable_lag(
    bridge: NatsBridge, prefix: str
) -> tuple[int, dict[str, tuple[int, int, int] | None]] | None:
    """On the NATS loop: the durable stream's size and, for each declared durable
    actor, its consumer's lag (messages not yet delivered), messages delivered
    and not acked, and redeliveries; ``None`` without durable mode."""
    from nats.js.errors import NoKeysError, NotFoundError

    from .messaging._durable import consumer_name

    js = bridge.client.jetstream()
    stream = f"{prefix}-durable"
    try:
        info = await js.stream_info(stream)
        kv = await js.key_value(f"{prefix}-durables")
    except NotFoundError:
        return None
    try:
        keys = await kv.keys()
    except NoKeysError:  # none declared yet
        keys = []
    consumers: dict[str, tuple[int, int, int] | None] = {}
    for key in keys:
        address = token_address(key)
        try:
            c = await js.consumer_info(stream, consumer_name(address))
        except NotFoundError:
            consumers[address] = None
            continue
        consumers[address] = (c.num_pending or 0, c.num_ack_pending or 0, c.num_redelivered or 0)
    return info.state.messages, consumers


def _describe(info: NodeInfo | None, now: float) -> str:
    if info is None:
        return "(unreadable entry)"
    return f"host {info.host}  pid {info.pid}  up {max(now - info.started, 0):.0f} s"
