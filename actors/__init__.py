"""The actor layer: components (and Python objects) living as supervised
actors that exchange messages, on asyncio or trio."""

from ._cell import RestartType
from ._errors import (
    ActorAppError,
    ActorCrashedError,
    ActorError,
    ActorStoppedError,
    AskTimeoutError,
    DurableError,
    MailboxFullError,
    SystemFailedError,
    UnknownActorError,
)
from ._monitor import Monitor
from ._native import NativeActor, NativeContext, NativeSource, Reject
from ._observe import ActorStats, DeadLetter, DeadLetterReason, Event, EventKind
from ._ref import ActorRef, TypedRef
from ._supervisor import BRUTAL_KILL, ONE_FOR_ALL, ONE_FOR_ONE, REST_FOR_ONE, Backoff, Strategy, Supervisor
from ._system import ActorSystem
from ._topology import InitialMessage, Topology, TopologyError

PERMANENT = RestartType.PERMANENT
TRANSIENT = RestartType.TRANSIENT
TEMPORARY = RestartType.TEMPORARY

__all__ = [
    "BRUTAL_KILL",
    "ONE_FOR_ALL",
    "ONE_FOR_ONE",
    "PERMANENT",
    "REST_FOR_ONE",
    "TEMPORARY",
    "TRANSIENT",
    "ActorAppError",
    "ActorCrashedError",
    "ActorError",
    "ActorRef",
    "ActorStats",
    "ActorStoppedError",
    "ActorSystem",
    "AskTimeoutError",
    "Backoff",
    "DeadLetter",
    "DeadLetterReason",
    "DurableError",
    "Event",
    "EventKind",
    "InitialMessage",
    "MailboxFullError",
    "Monitor",
    "NativeActor",
    "NativeContext",
    "NativeSource",
    "Reject",
    "RestartType",
    "Strategy",
    "Supervisor",
    "SystemFailedError",
    "Topology",
    "TopologyError",
    "TypedRef",
    "UnknownActorError",
]
