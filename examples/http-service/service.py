"""An HTTP inventory service whose endpoints ask warehouse actors.

Each warehouse is an actor (the component in this folder) that keeps its stock
in the actor's storage; the web app never touches the stock itself, it only
asks. Starlette and hypercorn are anyio-native, so the service runs on asyncio
or trio like the actor system under it.

    GET  /warehouses/{name}/stock          every SKU in stock
    GET  /warehouses/{name}/stock/{sku}    one SKU
    POST /warehouses/{name}/stock/{sku}    {"action": "receive" | "ship", "quantity": N}
    GET  /stats                            per-actor stats of the actor system

A warehouse that does not exist yet is started on first use, under the
`warehouses` supervisor of topology.toml. Run it with::

    .venv/bin/python examples/http-service/service.py --port 8000 [--trio]
    curl -X POST localhost:8000/warehouses/berlin/stock/bolts -d '{"action": "receive", "quantity": 5}'
"""

from __future__ import annotations

import argparse
import os
import re
import signal
import socket
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal

import anyio
import anyio.abc
import hypercorn.asyncio
import hypercorn.trio
import msgspec
import sniffio
from hypercorn.config import Config
from starlette.applications import Starlette
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from wasmactors import Manifest
from wasmactors.actors import (
    ActorAppError,
    ActorCrashedError,
    ActorRef,
    ActorStoppedError,
    ActorSystem,
    AskTimeoutError,
    MailboxFullError,
    Topology,
)

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from starlette.requests import Request

HERE = Path(__file__).parent
ASK_TIMEOUT = 2.0
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")


class StockChange(msgspec.Struct, forbid_unknown_fields=True):
    """The body of a POST: what happens to one SKU's stock."""

    action: Literal["receive", "ship"]
    quantity: Annotated[int, msgspec.Meta(gt=0, le=1_000_000)]


class HTTPError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class Inventory:
    """Finds (or starts) the actor of a warehouse and asks it."""

    def __init__(self, system: ActorSystem, manifest: Manifest) -> None:
        self.system = system
        self.manifest = manifest
        self._spawning = anyio.Lock()

    async def warehouse(self, name: str) -> ActorRef:
        if not _NAME.match(name):
            raise HTTPError(404, f"no warehouse named {name!r}")
        address = f"warehouses/{name}"
        if address not in self.system.registry:
            async with self._spawning:  # two first requests for one warehouse start it once
                if address not in self.system.registry:
                    await self.system.supervisor("warehouses").spawn(name, self.manifest)
        return self.system.ref(address)

    async def ask(self, warehouse: str, command: str) -> object:
        ref = await self.warehouse(warehouse)
        try:
            reply = await ref.ask(command.encode(), timeout=ASK_TIMEOUT)
        except ActorAppError as exc:
            raise HTTPError(409, str(exc.message)) from exc
        except AskTimeoutError as exc:
            raise HTTPError(504, f"{ref.address} did not answer in time") from exc
        except ActorCrashedError as exc:
            raise HTTPError(502, f"{ref.address} crashed ({exc.kind}); it is being restarted") from exc
        except (ActorStoppedError, MailboxFullError) as exc:
            raise HTTPError(503, f"{ref.address} is unavailable: {exc}") from exc
        return msgspec.json.decode(reply)


def create_app(inventory: Inventory) -> Starlette:
    """The web app: thin handlers that turn requests into asks."""

    async def stock(request: Request) -> Response:
        name, sku = request.path_params["name"], request.path_params.get("sku")
        return JSONResponse(await inventory.ask(name, f"stock {sku}" if sku else "list"))

    async def change(request: Request) -> Response:
        name, sku = request.path_params["name"], request.path_params["sku"]
        try:
            body = msgspec.json.decode(await request.body(), type=StockChange)
        except msgspec.DecodeError as exc:  # ValidationError is a DecodeError
            raise HTTPError(422, str(exc)) from exc
        return JSONResponse(await inventory.ask(name, f"{body.action} {sku} {body.quantity}"))

    async def stats(request: Request) -> Response:
        return Response(msgspec.json.encode(inventory.system.statistics()), media_type="application/json")

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPError)
        return JSONResponse({"error": str(exc)}, status_code=exc.status)

    return Starlette(
        routes=[
            Route("/warehouses/{name}/stock", stock, methods=["GET"]),
            Route("/warehouses/{name}/stock/{sku:str}", stock, methods=["GET"]),
            Route("/warehouses/{name}/stock/{sku:str}", change, methods=["POST"]),
            Route("/stats", stats, methods=["GET"]),
        ],
        exception_handlers={HTTPError: http_error},
    )


async def serve(
    listener: socket.socket,
    *,
    storage: str | os.PathLike[str],
    shutdown: Callable[[], Awaitable[object]],
    task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Start the actor tree of topology.toml (without its stocking messages),
    then serve HTTP on ``listener`` until ``shutdown()`` returns; the actors
    stop gracefully after the server. With ``await task_group.start(serve, ...)``
    the caller resumes once the actors are up (connections made earlier wait
    in the listener's backlog)."""
    topology = Topology.load(HERE / "topology.toml")
    manifest = Manifest.load(HERE / "component.toml")
    config = Config()
    config.bind = [f"fd://{os.dup(listener.fileno())}"]  # hypercorn closes its own copy
    config.accesslog = None
    async with ActorSystem(storage=storage) as system:
        await topology.start(system, messages=False)
        app = create_app(Inventory(system, manifest))
        task_status.started()
        if sniffio.current_async_library() == "trio":
            await hypercorn.trio.serve(app, config, shutdown_trigger=shutdown)  # type: ignore[arg-type]  # ASGI types differ
        else:
            await hypercorn.asyncio.serve(app, config, shutdown_trigger=shutdown)  # type: ignore[arg-type]  # same


def listen(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket (port 0: any free port)."""
    sock = socket.create_server((host, port))
    sock.setblocking(False)
    return sock


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--storage", default=str(HERE / "inventory.db"), help="SQLite file for the stock")
    parser.add_argument("--trio", action="store_true", help="serve on trio instead of asyncio")
    args = parser.parse_args(argv)

    async def run() -> None:
        with (
            listen(args.host, args.port) as sock,
            anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals,
        ):
            print(f"serving on http://{args.host}:{sock.getsockname()[1]} (Ctrl-C stops)", file=sys.stderr)

            async def shutdown() -> None:
                async for _ in signals:
                    return

            await serve(sock, storage=args.storage, shutdown=shutdown)

    anyio.run(run, backend="trio" if args.trio else "asyncio")


if __name__ == "__main__":
    main()
