"""How a node joins a cluster: :class:`Cluster`, given to ``ActorSystem(cluster=...)``."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ._transport import check_name
from ._wire import check_prefix

if TYPE_CHECKING:
    import os
    import ssl

__all__ = ["Cluster"]

log = logging.getLogger("wasmactors.cluster")


async def _log_error(error: Exception) -> None:
    log.debug("nats: %s", error)


@dataclass(frozen=True, kw_only=True)
class Cluster:
    """A NATS server (with JetStream) to join, and this node's name in it::

        ActorSystem(cluster=Cluster("nats://127.0.0.1:4222", node="a"))

    Credentials travel as NATS takes them: a user and password in the URL
    (``nats://user:pw@host:4222``), a ``creds`` file, a token, or ``tls``.
    Anything else nats-py's ``connect`` accepts goes in ``options``.
    """

    #: The server URL, or several (comma-separated or a list) for failover.
    url: str | list[str] = field(kw_only=False)
    #: This node's name: unique in the cluster while it is alive.
    node: str
    #: Namespaces the subjects (``<prefix>.act.…``) and the KV bucket
    #: (``<prefix>-names``), so several clusters can share one server.
    prefix: str = "wasmactors"
    #: Seconds a name stays owned without its node renewing it (the KV
    #: bucket's ttl, chosen by the first node that creates the bucket).
    lease: float = 10.0
    #: Messages in flight (sent, not yet acknowledged) to one remote node;
    #: past it, ``tell`` waits and ``tell_nowait`` raises mailbox-full.
    max_in_flight: int = 1024
    #: Seconds a sender waits for the receiving node's delivery ack (beyond
    #: the time the receiver may wait for mailbox room).
    ack_timeout: float = 5.0
    #: Seconds a receiving node waits for mailbox room when the sender waits
    #: without a bound (``tell``); the local equivalent waits forever.
    max_wait: float = 60.0
    #: The largest frame (envelope with its routing fields) a node sends or
    #: accepts, in bytes. NATS's own default ``max_payload`` is 1 MiB.
    max_frame: int = 1024 * 1024
    #: Durable mode: seconds JetStream waits for a durable message's ack before
    #: redelivering it (to this node, or to whichever node owns the actor
    #: by then). Longer than a handler may run plus its wait in the mailbox.
    ack_wait: float = 30.0
    #: Durable mode: the stream's ``Nats-Msg-Id`` deduplication window in
    #: seconds (chosen by the first node that creates the stream): an outbox
    #: republished after an outage longer than this can duplicate.
    dedup_window: float = 24 * 3600.0
    #: Durable mode: seconds a durable actor's node remembers a processed
    #: message id (its ``processed`` table is pruned past that, in small
    #: batches, every ``prune_every``): a duplicate arriving later runs again.
    #: At least ``dedup_window`` and twice ``ack_wait`` (docs/cluster.md, pruning).
    processed_retention: float = 7 * 24 * 3600.0
    #: A NATS credentials file (JWT and NKey seed).
    creds: str | os.PathLike[str] | None = None
    #: A NATS token.
    token: str | None = None
    #: TLS for the connection.
    tls: ssl.SSLContext | None = None
    #: Further keyword arguments for ``nats.connect`` (e.g. ``connect_timeout``).
    options: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        check_name(self.node)
        check_prefix(self.prefix)
        if not (isinstance(self.lease, int | float) and 0.5 <= self.lease < math.inf):
            raise ValueError(f"lease must be at least 0.5 s, got {self.lease!r}")
        for what in ("max_in_flight", "max_frame"):
            value = getattr(self, what)
            if not (isinstance(value, int) and value >= 1):
                raise ValueError(f"{what} must be a positive integer, got {value!r}")
        for what in ("ack_timeout", "max_wait", "ack_wait", "dedup_window", "processed_retention"):
            value = getattr(self, what)
            if not (isinstance(value, int | float) and 0 < value < math.inf):
                raise ValueError(f"{what} must be a positive number of seconds, got {value!r}")
        floor = max(self.dedup_window, 2 * self.ack_wait)
        if self.processed_retention < floor:
            raise ValueError(
                f"processed_retention must be at least the stream's dedup_window ({self.dedup_window:g} s)"
                f" and twice ack_wait ({2 * self.ack_wait:g} s), got {self.processed_retention:g} s:"
                " a duplicate arriving past it would run again"
            )
        if isinstance(self.url, str) and not self.url:
            raise ValueError("the cluster url is empty")

    @property
    def servers(self) -> list[str]:
        urls = self.url.split(",") if isinstance(self.url, str) else list(self.url)
        return [u.strip() for u in urls if u.strip()]

    def connect_options(self) -> dict[str, Any]:
        """Keyword arguments for ``nats.connect``."""
        options: dict[str, Any] = {
            "name": f"wasmactors:{self.node}",
            "allow_reconnect": True,
            # nats-py's defaults retry a refused first connection for two minutes.
            "connect_timeout": 2,
            "reconnect_time_wait": 0.5,
            "max_reconnect_attempts": 20,
            "error_cb": _log_error,
        }
        if self.creds is not None:
            options["user_credentials"] = str(Path(self.creds))
        if self.token is not None:
            options["token"] = self.token
        if self.tls is not None:
            options["tls"] = self.tls
        options.update(self.options)
        return options
