"""Name ownership in a JetStream key-value bucket, with leases.

One bucket per cluster (``<prefix>-names``) whose ``ttl`` (the stream's
``max_age``) is the lease. Keys::

    a.<address tokens>   value: the owning node's name
    n.<node token>       value: a msgpack :class:`NodeInfo` (the node is alive)

* **Claim**: ``create`` (compare-and-set on "no value"): of two nodes claiming
  one name exactly one succeeds; the other gets :class:`NameTakenError`.
* **Lease**: the owning node rewrites each of its keys every ``lease / 3``
  seconds with ``update(last=revision)`` (compare-and-set again: a node whose
  lease lapsed while it was paused learns it lost the name instead of
  overwriting the new owner). A key not rewritten for ``lease`` seconds is
  removed by the server (``max_age``) and counts as free everywhere at once,
  because every node also ignores entries it has not seen rewritten within
  the lease.
* **Takeover**: a claim that finds the key taken asks the owning node
  whether it is alive (a request to ``<prefix>.ping.<node>``). NATS answers
  "no responders" at once when the node's connection is gone (a crash,
  ``kill -9``): the claim then replaces the entry with compare-and-set on its
  revision, so a restarted node (or any other) need not wait for the lease.
  A node that does not answer in time counts as alive: only its lease frees
  its names then (a paused process, a network split).
* **Release**: at a normal stop the node deletes its keys.

Every node watches the whole bucket, so :meth:`Leases.owner` answers from
memory. The watch runs on the NATS loop and writes plain dict entries; the
caller's loop only reads them (one writer, atomic dict operations).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import TYPE_CHECKING

import msgspec

from ._errors import MessagingError
from ._transport import NameTakenError
from ._wire import address_token, token_address

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from typing import Any

    from nats.js.kv import KeyValue

    from ._bridge import NatsBridge

__all__ = ["Leases", "NodeInfo", "cancel_until_done", "watch_entries"]

log = logging.getLogger("wasmactors.cluster")


class NodeInfo(msgspec.Struct, frozen=True):
    """What a node says about itself in the bucket."""

    node: str
    host: str
    pid: int
    #: When it joined (``time.time()``).
    started: float


_node_info = msgspec.msgpack.Decoder(NodeInfo)


async def watch_entries(
    watcher: KeyValue.KeyWatcher, synced: asyncio.Event, apply: Callable[[KeyValue.Entry], None]
) -> None:
    """Hand every update of a KV watch to ``apply``, forever; set ``synced``
    once the bucket's initial values are all in."""
    while True:
        try:
            entry = await watcher.updates(timeout=3600)  # type: ignore[no-untyped-call]
        except TimeoutError:
            continue
        if entry is None:  # the initial values are all in
            synced.set()
            continue
        apply(entry)


async def cancel_until_done(tasks: set[asyncio.Task[None]]) -> None:
    """Cancel NATS-loop tasks and wait for them. Python 3.11's asyncio.wait_for
    (inside nats-py's watchers and fetches) can swallow a cancellation that
    races with an update: cancel again until they are done (10 tries)."""
    for _attempt in range(10):
        if not tasks:
            return
        for task in tasks:
            task.cancel()
        _, tasks = await asyncio.wait(tasks, timeout=0.2)


class Leases:
    """This node's claims, and every node's, as seen through the bucket."""

    def __init__(
        self,
        bridge: NatsBridge,
        *,
        bucket: str,
        node: str,
        lease: float,
        ping: Callable[[str], str],
        lost: Callable[[str], None],
        changed: Callable[[], None] | None = None,
    ) -> None:
        #: Called (on the NATS loop) after every change the watch shows.
        self._changed = changed
        #: Called (on the NATS loop) with an actor address whose name this node lost.
        self._lost = lost
        self._bridge = bridge
        #: The subject on which a node answers pings.
        self._ping = ping
        self.bucket = bucket
        self.node = node
        self.lease = lease
        self._kv: KeyValue | None = None
        #: key -> (value, monotonic time last written), written by the watch only.
        self._seen: dict[str, tuple[bytes, float]] = {}
        #: This node's keys -> their last revision.
        self._mine: dict[str, int] = {}
        self._watch: asyncio.Task[None] | None = None
        self._renew: asyncio.Task[None] | None = None
        self._synced = asyncio.Event()
        self._started = time.time()
        self._watcher: KeyValue.KeyWatcher | None = None

    # -- lifetime ---------------------------------------------------------------

    async def open(self, *, register: bool = True) -> None:
        """Bind (or create) the bucket, start watching it, register this node
        (``register=False``: only watch, as ``wasmactors cluster status`` does)."""
        await self._bridge.call(self._open(register))

    async def _open(self, register: bool) -> None:
        from nats.js.api import KeyValueConfig
        from nats.js.errors import BucketNotFoundError

        js = self._bridge.client.jetstream()
        try:
            self._kv = await js.key_value(self.bucket)
        except BucketNotFoundError:
            if not register:
                raise MessagingError(f"no cluster here: the bucket {self.bucket!r} does not exist") from None
            self._kv = await js.create_key_value(
                KeyValueConfig(bucket=self.bucket, ttl=self.lease, history=1)
            )
        ttl = (await self._kv.status()).ttl
        if ttl and abs(ttl - self.lease) > 1e-3:
            # The bucket's ttl is the lease: the cluster's first node chose it.
            if register:
                log.warning("bucket %s has a lease of %g s, not %g s: using it", self.bucket, ttl, self.lease)
            self.lease = ttl
        loop = asyncio.get_running_loop()
        self._watch = loop.create_task(self._watching())
        await asyncio.wait_for(self._synced.wait(), 10)
        if not register:
            return
        key = self._node_key(self.node)
        taken = NameTakenError(f"a node named {self.node!r} is alive in the cluster")
        self._mine[key] = await self._create_or_take(key, self._value(key), self.node, taken)
        self._renew = loop.create_task(self._renewing())

    async def close(self, *, release: bool) -> None:
        """Stop renewing; ``release``: delete this node's keys (a normal stop)."""
        await self._bridge.call(self._close(release))

    async def _close(self, release: bool) -> None:
        await cancel_until_done({t for t in (self._renew, self._watch) if t is not None})
        if self._watcher is not None:
            with contextlib.suppress(Exception):  # the connection may be gone
                await self._watcher.stop()  # type: ignore[no-untyped-call]
        if release and self._kv is not None:
            kv = self._kv
            await asyncio.gather(
                *(kv.delete(key, last=rev) for key, rev in self._mine.items()), return_exceptions=True
            )
        self._mine.clear()

    # -- claims (caller's loop) ---------------------------------------------------

    async def claim(self, address: str) -> None:
        """Own ``address`` cluster-wide, or raise :class:`NameTakenError`."""
        key = self._actor_key(address)

        async def create() -> int:
            value = self.node.encode()
            try:
                return await self._create_or_take(key, value, None, NameTakenError(""))
            except NameTakenError:
                raise NameTakenError(
                    f"an actor named {address!r} already exists on node {self.owner(address) or '?'}"
                ) from None

        self._mine[key] = await self._bridge.call(create())
        self._seen[key] = (self.node.encode(), time.monotonic())

    def release(self, address: str, *, after: Coroutine[Any, Any, object] | None = None) -> None:
        """Give ``address`` up (scheduled on the NATS loop; never waits), once
        ``after`` (run there first: this node stops receiving for it) is done."""
        key = self._actor_key(address)
        rev = self._mine.pop(key, None)
        if rev is None or self._kv is None:
            if after is not None:
                self._bridge.spawn(after)
            return
        kv = self._kv

        async def delete() -> None:
            try:
                if after is not None:
                    await after
                await kv.delete(key, last=rev)
            except Exception as exc:  # noqa: BLE001 - lost already (a lapsed lease): nothing to free
                log.debug("release of %s: %s", address, exc)

        self._bridge.spawn(delete())

    # -- what the bucket says -------------------------------------------------------

    def owner(self, address: str) -> str | None:
        """The node that owns ``address`` under a live lease, if any."""
        entry = self._seen.get(self._actor_key(address))
        if entry is None or time.monotonic() - entry[1] > self.lease:
            return None
        return entry[0].decode(errors="replace")

    async def lookup(self, address: str) -> str | None:
        """The owner of ``address`` as the bucket has it now (a round trip)."""
        key = self._actor_key(address)

        async def get() -> bytes | None:
            from nats.js.errors import KeyDeletedError, KeyNotFoundError

            assert self._kv is not None
            try:
                entry = await self._kv.get(key)
            except (KeyNotFoundError, KeyDeletedError):  # never claimed; released (not a subclass)
                return None
            return entry.value

        value = await self._bridge.call(get())
        return None if value is None else value.decode(errors="replace")

    def owns(self, address: str) -> bool:
        return self._actor_key(address) in self._mine

    def actors(self) -> dict[str, str]:
        """Every actor with a live lease: address -> node."""
        now = time.monotonic()
        return {
            token_address(key[2:]): value.decode(errors="replace")
            for key, (value, seen) in list(self._seen.items())
            if key.startswith("a.") and now - seen <= self.lease
        }

    def nodes(self) -> dict[str, NodeInfo | None]:
        """Every node with a live lease (``None``: its entry did not decode)."""
        now = time.monotonic()
        out: dict[str, NodeInfo | None] = {}
        for key, (value, seen) in list(self._seen.items()):
            if key.startswith("n.") and now - seen <= self.lease:
                try:
                    out[token_address(key[2:])] = _node_info.decode(value)
                except msgspec.DecodeError:
                    out[token_address(key[2:])] = None
        return out

    @staticmethod
    def _actor_key(address: str) -> str:
        return "a." + address_token(address)

    @staticmethod
    def _node_key(node: str) -> str:
        return "n." + address_token(node)

    # -- on the NATS loop -----------------------------------------------------------

    async def _create_or_take(self, key: str, value: bytes, owner: str | None, taken: NameTakenError) -> int:
        """Create ``key``, or take it over from a node that is gone (see the
        module docstring). ``owner``: the node to ask (default: the entry's value)."""
        from nats.js.errors import KeyDeletedError, KeyNotFoundError, KeyWrongLastSequenceError

        assert self._kv is not None
        kv = self._kv
        for _attempt in range(3):
            try:
                return await kv.create(key, value)
            except KeyWrongLastSequenceError:
                pass
            try:
                entry = await kv.get(key)
            except (KeyNotFoundError, KeyDeletedError):
                continue  # removed meanwhile: try again
            holder = owner or (entry.value or b"").decode(errors="replace")
            # An entry of this node's own name that it does not hold is its dead
            # predecessor's; any other holder is asked.
            if (owner is not None or holder != self.node) and await self._alive(holder):
                raise taken
            try:
                return await kv.update(key, value, last=entry.revision)
            except KeyWrongLastSequenceError:
                raise taken from None  # another node took it first
        raise taken

    async def _alive(self, node: str) -> bool:
        from nats.errors import NoRespondersError

        try:
            await self._bridge.client.request(self._ping(node), b"", timeout=1.0)
        except NoRespondersError:
            return False
        except Exception:  # noqa: BLE001 - a slow or unclear answer: count it as alive
            return True
        return True

    async def _watching(self) -> None:
        assert self._kv is not None
        self._watcher = watcher = await self._kv.watchall()
        await watch_entries(watcher, self._synced, self._apply)

    def _apply(self, entry: KeyValue.Entry) -> None:
        if entry.operation in ("DEL", "PURGE") or entry.value is None:
            self._seen.pop(entry.key, None)
        else:
            self._seen[entry.key] = (entry.value, time.monotonic())
        if self._changed is not None:
            self._changed()

    async def _renewing(self) -> None:
        from nats.js.errors import KeyWrongLastSequenceError

        assert self._kv is not None
        kv = self._kv
        while True:
            await asyncio.sleep(self.lease / 3)
            keys = list(self._mine.items())
            results = await asyncio.gather(
                *(kv.update(key, self._value(key), last=rev) for key, rev in keys), return_exceptions=True
            )
            for (key, _), result in zip(keys, results, strict=True):
                if key not in self._mine:
                    continue  # released meanwhile
                if isinstance(result, int):
                    self._mine[key] = result
                elif isinstance(result, KeyWrongLastSequenceError):
                    log.error("node %s lost %s: its lease lapsed and another node took it", self.node, key)
                    self._mine.pop(key, None)
                    if key.startswith("a."):
                        self._lost(token_address(key[2:]))
                else:
                    log.warning("renewing %s failed: %s", key, result)

    def _value(self, key: str) -> bytes:
        if key.startswith("n."):
            info = NodeInfo(self.node, socket.gethostname(), os.getpid(), self._started)
            return msgspec.msgpack.encode(info)
        return self.node.encode()
