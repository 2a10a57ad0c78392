"""Topology files: a supervision tree, its actors and the messages to send
once it is up, declared in TOML and decoded with msgspec::

    # topology.toml
    strategy = "one-for-one"          # the root supervisor
    max-restarts = 3
    within = 5.0

    [[child]]
    type = "supervisor"
    name = "workers"
    strategy = "one-for-all"

      [[child.child]]
      type = "actor"
      name = "counter"
      component = "counter/component.toml"   # a manifest (or a .wasm with [limits])
      mailbox-size = 256
      shutdown = 2000                        # ms a stop may take; "brutal-kill"; "infinity"
      [child.child.limits]                   # overrides the manifest's
      fuel = 10_000_000

    [[message]]
    to = "workers/counter"
    payload = "add 5"

In a cluster, ``node = "a"`` on a child places that subtree on the node
named ``a`` (``wasmactors node --name a``); each node starts what is placed
on it, and ``wasmactors run`` starts everything in one process. A topology
that places anything places every top-level child, and a subtree lives on
one node (supervision is local). ``durable = true`` on an actor, or on a
supervisor for its whole subtree (a child may say ``false``), makes it
receive through JetStream, effectively once (docs/cluster.md).

Paths are relative to the topology file. Every mistake (an unknown key, a
wrong type, a missing limit, a component file that does not exist, two
children with one name) raises :class:`TopologyError` naming the file, the
key and what was expected, before anything starts.
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, Union

import msgspec

from ..messaging import check_name, child_address
from ..runtime import Limits, Manifest, ManifestError, parse_size
from ..runtime._limits import decode_toml
from ._cell import RestartType
from ._errors import ActorError
from ._supervisor import Backoff, Strategy

if TYPE_CHECKING:
    from collections.abc import Callable

    from ._supervisor import Supervisor
    from ._system import ActorSystem

__all__ = ["InitialMessage", "Topology", "TopologyError"]

Positive = Annotated[int, msgspec.Meta(gt=0)]
Seconds = Annotated[float, msgspec.Meta(gt=0)]
#: A child's ``shutdown`` (OTP's): milliseconds, as ``timeout-ms``, or a word.
Shutdown = Annotated[int, msgspec.Meta(ge=0)] | Literal["brutal-kill", "infinity"]


class TopologyError(ActorError, ValueError):
    """A topology file is malformed or inconsistent."""


class _Limits(msgspec.Struct, forbid_unknown_fields=True, rename="kebab"):
    memory: int | str | None = None
    fuel: Positive | None = None
    timeout_ms: Positive | None = None
    max_payload: int | str | None = None
    max_outbox: Positive | None = None


class _Backoff(msgspec.Struct, forbid_unknown_fields=True):
    initial: Seconds = 0.01
    maximum: Seconds = 1.0
    factor: Annotated[float, msgspec.Meta(ge=1)] = 2.0


class _Actor(msgspec.Struct, tag="actor", tag_field="type", forbid_unknown_fields=True, rename="kebab"):
    name: str
    component: str
    node: str | None = None
    durable: bool | None = None
    limits: _Limits | None = None
    mailbox_size: Positive | None = None
    restart: Literal["permanent", "transient", "temporary"] = "permanent"
    shutdown: Shutdown | None = None


class _Supervisor(
    msgspec.Struct, tag="supervisor", tag_field="type", forbid_unknown_fields=True, rename="kebab"
):
    name: str
    node: str | None = None
    durable: bool | None = None
    strategy: Literal["one-for-one", "one-for-all", "rest-for-one"] = "one-for-one"
    max_restarts: Annotated[int, msgspec.Meta(ge=0)] = 3
    within: Seconds = 5.0
    backoff: _Backoff | None = None
    restart: Literal["permanent", "transient", "temporary"] = "permanent"
    shutdown: Shutdown | None = None
    child: list[Union[_Actor, _Supervisor]] = []  # noqa: UP007 - msgspec needs Union for the recursive type


class _File(msgspec.Struct, forbid_unknown_fields=True, rename="kebab"):
    strategy: Literal["one-for-one", "one-for-all", "rest-for-one"] = "one-for-one"
    max_restarts: Annotated[int, msgspec.Meta(ge=0)] = 3
    within: Seconds = 5.0
    child: list[Union[_Actor, _Supervisor]] = []  # noqa: UP007
    message: list[_Message] = []


class _Message(msgspec.Struct, forbid_unknown_fields=True, rename="kebab"):
    to: str
    payload: str
    ask: bool = False
    timeout_ms: Annotated[int, msgspec.Meta(gt=0)] = 5000


@dataclasses.dataclass(frozen=True)
class InitialMessage:
    """A message a topology sends once its tree is up."""

    #: The recipient's address.
    to: str
    payload: bytes
    #: Sent as a request whose answer is reported (``ask = true``), else a tell.
    ask: bool = False
    #: How long an ask waits for its answer, in seconds.
    timeout: float = 5.0


@dataclasses.dataclass(frozen=True)
class ActorNode:
    """A component actor of the tree, resolved: its manifest and final limits."""

    name: str
    manifest: Manifest
    limits: Limits
    mailbox_size: int | None
    restart: RestartType
    #: Seconds a stop may take (0: brutal kill, ``math.inf``); ``None``: the default.
    shutdown: float | None = None
    #: The cluster node it is placed on (``None``: not placed).
    node: str | None = None
    #: Receives through JetStream, effectively once (``durable = true`` on it or a supervisor above).
    durable: bool = False


@dataclasses.dataclass(frozen=True)
class SupervisorNode:
    name: str
    strategy: Strategy
    max_restarts: int
    within: float
    backoff: Backoff | None
    restart: RestartType
    children: tuple[ActorNode | SupervisorNode, ...]
    #: Seconds a stop may take; ``None``: the default (``math.inf`` for a supervisor).
    shutdown: float | None = None
    #: The cluster node the subtree is placed on (``None``: not placed).
    node: str | None = None


@dataclasses.dataclass(frozen=True)
class Topology:
    """A validated topology: the root's intensity, the tree and the initial messages."""

    source: Path
    strategy: Strategy
    max_restarts: int
    within: float
    children: tuple[ActorNode | SupervisorNode, ...]
    #: Sent once the tree is up, in order.
    messages: tuple[InitialMessage, ...]

    @classmethod
    def load(cls, path: str | Path) -> Topology:
        """Read and validate a topology file (and the manifests it names)."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise TopologyError(f"{path}: cannot read topology: {exc.strerror}") from exc
        data = decode_toml(raw, _File, str(path), TopologyError)
        resolver = _Resolver(path)
        children = resolver.children(data.child, None, "child", None)
        placed = [c.node for c in children]
        if any(placed) and not all(placed):
            i = placed.index(None)
            raise TopologyError(
                f"{path}: key `child[{i}].node`: this topology places children on cluster nodes, "
                f"so every top-level child needs a node (where does {children[i].name!r} run?)"
            )
        messages = []
        for i, message in enumerate(data.message):
            if message.to not in resolver.addresses:
                known = ", ".join(sorted(resolver.addresses)) or "none"
                raise TopologyError(
                    f"{path}: key `message[{i}].to`: no actor {message.to!r} in this topology "
                    f"(actors: {known})"
                )
            messages.append(
                InitialMessage(message.to, message.payload.encode(), message.ask, message.timeout_ms / 1000)
            )
        return cls(
            source=path,
            strategy=Strategy(data.strategy),
            max_restarts=data.max_restarts,
            within=data.within,
            children=children,
            messages=tuple(messages),
        )

    def actors(self, node: str | None = None) -> list[str]:
        """Every component actor's address, in start order (``node``: only those placed there)."""
        out: list[str] = []

        def walk(nodes: tuple[ActorNode | SupervisorNode, ...], parent: str | None) -> None:
            for child in nodes:
                address = child_address(parent, child.name)
                if isinstance(child, SupervisorNode):
                    walk(child.children, address)
                else:
                    out.append(address)

        walk(tuple(c for c in self.children if node is None or c.node == node), None)
        return out

    def nodes(self) -> list[str]:
        """The cluster nodes the topology places children on, in file order."""
        return list(dict.fromkeys(c.node for c in self.children if c.node is not None))

    def node_of(self, address: str) -> str | None:
        """The node an actor of this topology is placed on."""
        top = address.split("/", 1)[0]
        return next((c.node for c in self.children if c.name == top), None)

    async def start(
        self,
        system: ActorSystem,
        *,
        messages: bool = True,
        on_answer: Callable[[InitialMessage, bytes | Exception], None] | None = None,
        node: str | None = None,
    ) -> None:
        """Spawn the tree under ``system``'s root, in file order, then send the
        initial messages (unless ``messages=False``). With ``node``, only the
        subtrees placed on that node, and only the messages to them (a cluster
        node waits until every actor of the topology is up before sending:
        see ``wasmactors node``). An ``ask`` message waits
        for its answer, or the error that took its place (``ActorAppError``,
        ``ActorCrashedError``, ``AskTimeoutError``...), and hands it to
        ``on_answer``. The root's strategy and intensity come from the file."""
        root = system.root
        root.strategy, root.max_restarts, root.within = self.strategy, self.max_restarts, self.within
        await _spawn(root, tuple(c for c in self.children if node is None or c.node == node))
        for message in self.messages if messages else ():
            if node is not None and self.node_of(message.to) != node:
                continue
            ref = system.ref(message.to)
            if not message.ask:
                await ref.tell(message.payload)
                continue
            answer: bytes | Exception
            try:
                answer = await ref.ask(message.payload, timeout=message.timeout)
            except ActorError as exc:
                answer = exc
            if on_answer is not None:
                on_answer(message, answer)


async def _spawn(parent: Supervisor, nodes: tuple[ActorNode | SupervisorNode, ...]) -> None:
    for node in nodes:
        if isinstance(node, SupervisorNode):
            sup = await parent.spawn_supervisor(
                node.name,
                strategy=node.strategy,
                max_restarts=node.max_restarts,
                within=node.within,
                backoff=node.backoff,
                restart=node.restart,
                shutdown=math.inf if node.shutdown is None else node.shutdown,
            )
            await _spawn(sup, node.children)
        else:
            await parent.spawn(
                node.name,
                node.manifest,
                limits=node.limits,
                mailbox_size=node.mailbox_size,
                restart=node.restart,
                shutdown=node.shutdown,
                durable=node.durable,
            )


def _seconds(shutdown: int | str | None) -> float | None:
    """A ``shutdown`` value in seconds: the decoder already refused anything
    but a non-negative integer of milliseconds or one of the two words."""
    if shutdown is None:
        return None
    if shutdown == "brutal-kill":
        return 0.0
    if shutdown == "infinity":
        return math.inf
    assert isinstance(shutdown, int)
    return shutdown / 1000


class _Resolver:
    """Checks names and component paths, and merges limit overrides."""

    def __init__(self, source: Path) -> None:
        self.source = source
        self.addresses: set[str] = set()

    def fail(self, key: str, message: str) -> TopologyError:
        return TopologyError(f"{self.source}: key `{key}`: {message}")

    def children(
        self,
        specs: list[_Actor | _Supervisor],
        parent: str | None,
        key: str,
        placed: str | None,
        durable: bool = False,
    ) -> tuple[ActorNode | SupervisorNode, ...]:
        seen: set[str] = set()
        out: list[ActorNode | SupervisorNode] = []
        for i, spec in enumerate(specs):
            here = f"{key}[{i}]"
            try:
                check_name(spec.name)
            except ValueError as exc:
                raise self.fail(f"{here}.name", str(exc)) from None
            if spec.name in seen:
                raise self.fail(
                    f"{here}.name", f"a second child named {spec.name!r} under the same supervisor"
                )
            seen.add(spec.name)
            address = child_address(parent, spec.name)
            node = self.node(spec.node, placed, parent, f"{here}.node")
            durable_here = durable if spec.durable is None else spec.durable
            if isinstance(spec, _Supervisor):
                out.append(
                    SupervisorNode(
                        name=spec.name,
                        strategy=Strategy(spec.strategy),
                        max_restarts=spec.max_restarts,
                        within=spec.within,
                        backoff=Backoff(spec.backoff.initial, spec.backoff.maximum, spec.backoff.factor)
                        if spec.backoff
                        else None,
                        restart=RestartType(spec.restart),
                        children=self.children(spec.child, address, f"{here}.child", node, durable_here),
                        shutdown=_seconds(spec.shutdown),
                        node=node,
                    )
                )
            else:
                self.addresses.add(address)
                manifest = self.manifest(spec, here)
                out.append(
                    ActorNode(
                        name=spec.name,
                        manifest=manifest,
                        limits=self.limits(manifest.limits, spec.limits, here),
                        mailbox_size=spec.mailbox_size,
                        restart=RestartType(spec.restart),
                        shutdown=_seconds(spec.shutdown),
                        node=node,
                        durable=durable_here,
                    )
                )
        return tuple(out)

    def node(self, node: str | None, placed: str | None, parent: str | None, key: str) -> str | None:
        """Where a child runs: its own ``node``, else its subtree's."""
        if node is None:
            return placed
        try:
            check_name(node)
        except ValueError as exc:
            raise self.fail(key, f"invalid node name: {exc}") from None
        if placed is not None and node != placed:
            raise self.fail(
                key,
                f"{node!r} inside a subtree placed on {placed!r}: a subtree lives on one node "
                f"(its supervisor {parent!r} supervises it there)",
            )
        return node

    def manifest(self, spec: _Actor, here: str) -> Manifest:
        path = (self.source.parent / spec.component).resolve()
        if not path.exists():
            raise self.fail(f"{here}.component", f"no such file: {path}")
        if path.suffix == ".toml":
            try:
                return Manifest.load(path)
            except ManifestError as exc:
                raise self.fail(f"{here}.component", str(exc)) from None
        # A bare component: every required limit must be in the topology.
        lim = spec.limits or _Limits()
        missing = [
            k
            for k, v in (("memory", lim.memory), ("fuel", lim.fuel), ("timeout-ms", lim.timeout_ms))
            if v is None
        ]
        if missing:
            raise self.fail(
                f"{here}.limits",
                f"{spec.component} is a bare component, so the topology must set {', '.join(missing)} "
                "(or point `component` at its component.toml)",
            )
        try:
            limits = Limits(
                memory=parse_size(lim.memory or 0), fuel=lim.fuel or 0, timeout=(lim.timeout_ms or 0) / 1000
            )
        except ValueError as exc:
            raise self.fail(f"{here}.limits", str(exc)) from None
        return Manifest(name=spec.name, component=path, limits=limits)

    def limits(self, base: Limits, override: _Limits | None, here: str) -> Limits:
        if override is None:
            return base
        o, changes = override, dict[str, object]()
        try:
            if o.memory is not None:
                changes["memory"] = parse_size(o.memory)
            if o.max_payload is not None:
                changes["max_payload"] = parse_size(o.max_payload)
            if o.timeout_ms is not None:
                changes["timeout"] = o.timeout_ms / 1000
            if o.fuel is not None:
                changes["fuel"] = o.fuel
            if o.max_outbox is not None:
                changes["max_outbox"] = o.max_outbox
            return Limits(**{**msgspec.structs.asdict(base), **changes})  # validated again
        except ValueError as exc:
            raise self.fail(f"{here}.limits", str(exc)) from None
