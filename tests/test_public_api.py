"""The public surface is deliberate: these names, and only these, are exported."""

from __future__ import annotations

import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

import wasmactors
import wasmactors.actors
import wasmactors.messaging
import wasmactors.runtime
import wasmactors.testing

if TYPE_CHECKING:
    from pathlib import Path


def test_runtime_public_names() -> None:
    """wasmactors.runtime exports exactly its documented API."""
    assert sorted(wasmactors.runtime.__all__) == [
        "AppError", "Batch", "CallResult", "CompileError", "Component", "ComponentError", "ComponentInfo",
        "CoreModuleError", "Crash", "CrashKind", "Engine", "GiB", "GuestBuild", "HostCall", "HostContext",
        "ImportMismatchError", "Instance", "InstanceBrokenError",
        "InstanceBusyError", "InstanceClosedError", "InstantiationError", "InvalidMessageError", "Journal",
        "KiB",
        "Limits", "Manifest",
        "ManifestError",
        "MemoryStorage", "MiB", "MissingImportsError", "NotWasmError", "OutboxRow", "Outcome",
        "PayloadTooLargeError", "ROW_OVERHEAD", "SQLiteStorage", "StorageBackend",
        "StorageError", "Success", "Transaction", "WasmActorsError", "WorldMismatchError",
        "default_cache_dir", "encode_metadata", "parse_size", "row_size",
    ]  # fmt: skip
    for name in wasmactors.runtime.__all__:
        assert hasattr(wasmactors.runtime, name), name


def test_messaging_and_actors_public_names() -> None:
    """The other layers export exactly their documented API."""
    assert sorted(wasmactors.messaging.__all__) == [
        "Callback", "Cluster", "ClusterError", "ClusterSink", "ClusterTransport", "Codec", "DeliveryFailure",
        "Endpoint", "Envelope", "InProcessTransport", "Kind", "MessagingError", "NameTakenError", "Outgoing",
        "PayloadDecodeError", "PayloadEncodeError", "Registry", "Reply", "Request", "RequestError",
        "RequestFailure", "Send", "SendRequest", "Tell", "Transport", "WireError", "check_name",
        "child_address", "decode_envelope", "encode_envelope",
    ]  # fmt: skip
    assert sorted(wasmactors.actors.__all__) == [
        "ActorAppError", "ActorCrashedError", "ActorError", "ActorRef", "ActorStats", "ActorStoppedError",
        "ActorSystem", "AskTimeoutError", "BRUTAL_KILL", "Backoff", "DeadLetter", "DeadLetterReason",
        "DurableError", "Event",
        "EventKind", "InitialMessage",
        "MailboxFullError", "Monitor", "NativeActor", "NativeContext", "NativeSource",
        "ONE_FOR_ALL", "ONE_FOR_ONE",
        "PERMANENT", "REST_FOR_ONE", "Reject", "RestartType", "Strategy", "Supervisor", "SystemFailedError",
        "TEMPORARY", "TRANSIENT", "Topology", "TopologyError", "TypedRef", "UnknownActorError",
    ]  # fmt: skip
    assert sorted(wasmactors.testing.__all__) == [
        "ActorTestKit", "EventKind", "GuestLog", "Probe", "Reject", "open_test_system",
    ]  # fmt: skip
    for module in (wasmactors.messaging, wasmactors.actors, wasmactors.testing):
        for name in module.__all__:
            assert hasattr(module, name), name


def test_root_reexports_the_essentials() -> None:
    """`import wasmactors` is enough for the common case; each name is the layer's own object."""
    for name in wasmactors.__all__:
        layers = (wasmactors.actors, wasmactors.messaging, wasmactors.runtime)
        layer = next(m for m in layers if name in m.__all__)
        assert getattr(wasmactors, name) is getattr(layer, name), name
    assert {"Engine", "Instance", "Limits", "Manifest", "WasmActorsError"} <= set(wasmactors.__all__)


def test_errors_share_one_root() -> None:
    """Every exported exception derives from WasmActorsError, except Reject: a
    native handler raises it to answer with an app error; it is not ours to raise."""
    for module in (wasmactors.runtime, wasmactors.messaging, wasmactors.actors):
        for name in module.__all__:
            obj = getattr(module, name)
            if (
                isinstance(obj, type)
                and issubclass(obj, BaseException)
                and obj is not wasmactors.actors.Reject
            ):
                assert issubclass(obj, wasmactors.WasmActorsError), name


def test_no_generic_top_level_modules_are_installed(tmp_path: Path) -> None:
    """The folders install under `wasmactors`, never as top-level `runtime` or `messaging`."""
    code = "import importlib.util as u; print([u.find_spec(m) is None for m in ('runtime', 'messaging', 'actors')])"  # noqa: E501
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == "[True, True, True]"


@pytest.mark.anyio
async def test_a_supervisor_exposes_only_what_users_call(system: wasmactors.ActorSystem) -> None:
    """A Supervisor's public names are the user API (spawning under it, its
    configuration, its children); the child interface its parent drives and
    the task's plumbing are private."""
    sup = await system.spawn_supervisor("w")
    public = {name for name in (*dir(sup), *vars(sup)) if not name.startswith("_")}
    assert public == {
        "address", "backoff", "children", "max_restarts", "parent", "restart_type", "shutdown",
        "spawn", "spawn_native", "spawn_supervisor", "strategy", "within",
    }  # fmt: skip
    await sup.spawn_native("n", Echo())
    assert [c.address for c in sup.children] == ["w/n"]
    assert system.root.children == (sup,)


class Echo:
    async def handle_message(
        self, envelope: wasmactors.messaging.Envelope, context: wasmactors.actors.NativeContext
    ) -> bytes:
        return envelope.payload
