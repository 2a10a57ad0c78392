"""What a cell sees of the system: a narrow environment instead of the whole
:class:`~wasmactors.actors.ActorSystem`.

A cell needs the transport (to deliver what its handlers send and to answer
requests), the registry (to leave it when it stops), the worker pool, a
dead-letter sink, an event sink and a few settings. Passing exactly that
keeps the cell testable and the system's public surface small.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable

    from ..messaging import Envelope, Registry, Transport
    from ..runtime import StorageBackend
    from ._deadlines import Deadlines
    from ._observe import ActorStats, DeadLetterReason
    from ._ref import ActorRef
    from ._workers import Workers

__all__ = ["CellEnv"]


@dataclass(frozen=True, slots=True, kw_only=True)
class CellEnv:
    """The parts of the system a cell uses."""

    #: Delivers envelopes by address.
    transport: Transport
    #: Where the cell is registered; it unregisters itself when it stops.
    registry: Registry
    #: Worker threads that run wasm (and instantiate components).
    workers: Workers
    #: The components' durable key-value store.
    storage: StorageBackend | None
    #: Messages one worker-thread hop may handle for one actor.
    turn_size: int
    #: Seconds after which a turn ends early, at the next message boundary.
    turn_time: float
    #: How long delivery of a guest's send waits for mailbox space.
    push_timeout: float
    #: Timeout of a guest request that asked for the default.
    request_timeout: float
    #: Record an undeliverable or unhandled message.
    dead_letter: Callable[[Envelope, DeadLetterReason, str], None]
    #: Publish a lifecycle event.
    emit: Callable[..., None]
    #: The system's timer for guest request timeouts.
    deadlines: Deadlines
    #: A reference by address (for native actors' context).
    ref: Callable[[str], ActorRef]
    #: The cell stopped for good: its last stats.
    stopped: Callable[[str, ActorStats], None]
