"""The ``wasmactors`` command line (also ``python -m wasmactors``).

Every command reports a failure as one line on stderr (``--verbose`` adds the
traceback) and exits with a documented code:

====  ==============================================================
0     done
1     the command could not do its job (bad file, failed build, the
      actor system gave up)
2     bad usage
3     ``call``, ``ask``: the actor answered with an application error;
      ``inspect``: it does not fit the `actor` world
4     ``call``, ``ask``: the actor crashed (the kind is on stderr)
141   stdout was closed early (``wasmactors ... | head``): ends quietly
====  ==============================================================
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import logging
import os
import shutil
import sys
import time
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import anyio
import msgspec

from . import _build, _call, _clustercli, _run
from .actors import ActorAppError, ActorCrashedError, Topology
from .messaging import Cluster
from .runtime import Engine, Manifest, MiB, WasmActorsError, default_cache_dir, parse_size
from .runtime._cache import cache_entries, max_cache_size, prune_cache

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["main", "main_entry"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_APP_ERROR, EXIT_CRASH = 0, 1, 2, 3, 4
#: A closed stdout, as a shell reports a process ended by SIGPIPE.
EXIT_BROKEN_PIPE = 141


def _version() -> str:
    try:
        return importlib.metadata.version("wasmactors")
    except importlib.metadata.PackageNotFoundError:  # a checkout on sys.path, not installed
        return "unknown (not installed)"


def _parser() -> argparse.ArgumentParser:
    # Options every command takes, before or after the command's name.
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="show tracebacks and debug logs",
    )
    wit = argparse.ArgumentParser(add_help=False)
    wit.add_argument(
        "--wit",
        type=Path,
        default=argparse.SUPPRESS,
        metavar="DIR",
        help="the WIT folder to build stale guests against (default: the nearest wit/ holding actor.wit, "
        "else the one shipped with wasmactors)",
    )
    parser = argparse.ArgumentParser(
        prog="wasmactors",
        description="Run WebAssembly component actors: topologies, single calls, inspection, guest builds.",
        parents=[common],
    )
    parser.add_argument("--version", action="version", version=f"wasmactors {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser(
        "run", parents=[common, wit], help="start a topology file's actors and run until idle or Ctrl-C"
    )
    run.add_argument("topology", type=Path, help="a topology .toml file")
    run.add_argument("--for", dest="duration", type=float, metavar="SECONDS", help="run this long, then stop")
    run.add_argument(
        "--idle",
        type=float,
        default=0.5,
        metavar="SECONDS",
        help="stop once every actor has been idle this long (default 0.5; ignored with --for)",
    )
    run.add_argument(
        "--storage",
        metavar="PATH",
        help="SQLite file for actor state (default: TOPOLOGY.db beside the topology; ':memory:' keeps none)",
    )
    run.add_argument("--trio", action="store_true", help="run on trio instead of asyncio")
    run.add_argument("-q", "--quiet", action="store_true", help="hide guest log lines")

    _cluster_parsers(sub, common, wit)

    call = sub.add_parser(
        "call", parents=[common, wit], help="send one message to one fresh instance and show what it did"
    )
    call.add_argument("component", type=Path, help="a component .wasm or its component.toml")
    call.add_argument("payload", help="the message body (UTF-8); '-' reads it from stdin")
    call.add_argument(
        "--fuel", type=int, help=f"fuel for the call (default: the manifest's, else {_call.DEFAULT_FUEL:,})"
    )
    call.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help=f"wall-clock limit (default: the manifest's, else {_call.DEFAULT_TIMEOUT:g})",
    )
    call.add_argument(
        "--memory",
        type=parse_size,
        metavar="SIZE",
        help="memory limit, e.g. '64 MiB' (default: manifest's, else 64 MiB)",
    )
    call.add_argument(
        "--storage",
        type=Path,
        metavar="PATH",
        help="SQLite file for its storage (default: in memory); e.g. the TOPOLOGY.db a `run` left",
    )
    call.add_argument(
        "--as",
        dest="address",
        metavar="ADDRESS",
        help="the actor's address, whose state in --storage it sees (default: call/NAME)",
    )
    call.add_argument("--tell", action="store_true", help="send a tell instead of a request")
    call.add_argument("--json", action="store_true", help="print the report as JSON")

    inspect = sub.add_parser(
        "inspect", parents=[common], help="show a component's imports and exports, and whether it fits"
    )
    inspect.add_argument("component", type=Path, help="a component .wasm (or .wat)")
    inspect.add_argument("--json", action="store_true", help="print the description as JSON")
    inspect.add_argument(
        "--all", action="store_true", help="also list the toolchain's internal exports (e.g. exports#init)"
    )

    build = sub.add_parser(
        "build", parents=[common, wit], help="componentize a Python or JavaScript guest against the WIT"
    )
    build.add_argument(
        "path",
        type=Path,
        help="a component.toml with [build], a guest folder, a .py module or a .js file",
    )
    build.add_argument(
        "-o", "--output", type=Path, help="the component to write (default: from the manifest)"
    )
    build.add_argument(
        "--if-stale", action="store_true", help="skip when the component is newer than its sources"
    )
    build.add_argument(
        "--no-check", action="store_true", help="skip compiling and validating the result against the world"
    )
    cache = sub.add_parser(
        "cache", parents=[common], help="list the compiled-artifact cache, its size and bound; prune it"
    )
    cache.add_argument(
        "--prune",
        nargs="?",
        const="",
        type=str,
        metavar="SIZE",
        help="delete the least recently used artifacts until the rest fit in SIZE (default: the bound)",
    )
    cache.add_argument("--clear", action="store_true", help="delete every compiled artifact")
    return parser


def _cluster_parsers(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    common: argparse.ArgumentParser,
    wit: argparse.ArgumentParser,
) -> None:
    node = sub.add_parser(
        "node",
        parents=[common, wit],
        help="join a cluster and run the topology's subtrees placed on this node until Ctrl-C",
    )
    node.add_argument("topology", type=Path, help="a topology .toml file (children with `node = ...`)")
    _cluster_args(node)
    node.add_argument("--name", required=True, help="this node's name in the cluster")
    node.add_argument(
        "--for", dest="duration", type=float, metavar="SECONDS", help="run this long, then stop"
    )
    node.add_argument(
        "--wait",
        type=float,
        default=60.0,
        metavar="SECONDS",
        help="how long to wait for the other nodes' actors before sending messages (default 60)",
    )
    node.add_argument(
        "--storage",
        metavar="PATH",
        help="SQLite file for actor state (default: TOPOLOGY.NAME.db beside the topology; ':memory:')",
    )
    node.add_argument(
        "--ack-wait",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="durable actors: how long JetStream waits for an ack before redelivering (default 30)",
    )
    node.add_argument(
        "--processed-retention",
        type=float,
        default=7 * 24 * 3600.0,
        metavar="SECONDS",
        help="durable actors: how long a handled message's id is kept to recognise a redelivery"
        " (default 604800: 7 days; at least the stream's dedup window and twice --ack-wait)",
    )
    node.add_argument("--trio", action="store_true", help="run on trio instead of asyncio")
    node.add_argument("-q", "--quiet", action="store_true", help="hide guest log lines")
    for kind, what in (
        ("tell", "send a message to an actor in a cluster"),
        ("ask", "ask an actor in a cluster"),
    ):
        one = sub.add_parser(kind, parents=[common], help=what)
        one.add_argument("address", help="the actor's address, e.g. pipeline/sink")
        one.add_argument("payload", help="the message body (UTF-8); '-' reads it from stdin")
        _cluster_args(one)
        one.add_argument(
            "--timeout", type=float, default=5.0, metavar="SECONDS", help="how long to wait (default 5)"
        )
    cluster = sub.add_parser("cluster", parents=[common], help="look at a running cluster")
    cluster.add_argument("what", choices=["status"], help="status: nodes, leases and actors")
    _cluster_args(cluster)


def _cluster_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--cluster",
        required=True,
        metavar="URL",
        help="the NATS server (nats://host:4222; user:password@ in the URL if needed)",
    )
    parser.add_argument(
        "--prefix", default="wasmactors", help="the cluster's subject prefix and bucket (default wasmactors)"
    )


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the command line; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    args.verbose = getattr(args, "verbose", False)
    args.wit = getattr(args, "wit", None)
    _configure_logging(args, err)
    command: Callable[[argparse.Namespace, TextIO, TextIO], int] = _COMMANDS[args.command]
    try:
        return command(args, out, err)
    except KeyboardInterrupt:
        print("wasmactors: interrupted", file=err)
        return 130
    except BrokenPipeError:
        # The reader went away (`| head`): nothing left to say, to anyone.
        if out is sys.stdout:
            _silence_stdout()
        return EXIT_BROKEN_PIPE
    except (WasmActorsError, OSError, ValueError) as exc:
        if args.verbose:
            traceback.print_exc(file=err)
        print(f"wasmactors: error: {_one_line(exc)}", file=err)
        if isinstance(exc, _build.BuildError) and exc.output and not args.verbose:
            print("  (run with --verbose for componentize-py's output)", file=err)
        elif isinstance(exc, _build.BuildError) and args.verbose:
            print(exc.output, file=err)
        return EXIT_ERROR
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, not a bare traceback
        if args.verbose:
            traceback.print_exc(file=err)
        print(f"wasmactors: internal error: {type(exc).__name__}: {_one_line(exc)}", file=err)
        if not args.verbose:
            print("  (run with --verbose for the traceback)", file=err)
        return EXIT_ERROR


def _silence_stdout() -> None:
    """Point stdout at /dev/null so that the interpreter's final flush does
    not fail a second time."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, sys.stdout.fileno())
    finally:
        os.close(devnull)


def _one_line(error: BaseException | str) -> str:
    """A message on one line (an exception without one: its type's name)."""
    text = " ".join(str(error).split())
    if not text and isinstance(error, BaseException):
        return type(error).__name__
    return text


def _configure_logging(args: argparse.Namespace, err: TextIO) -> None:
    handler = logging.StreamHandler(err)
    handler.setFormatter(_GuestFormatter())
    root = logging.getLogger("wasmactors")
    root.handlers = [handler]
    root.propagate = False
    root.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    # Lifecycle lines duplicate the events `run` prints; --verbose shows them.
    logging.getLogger("wasmactors.actors").setLevel(logging.NOTSET if args.verbose else logging.WARNING)
    if getattr(args, "quiet", False):
        logging.getLogger("wasmactors.guest").setLevel(logging.WARNING)
    else:
        logging.getLogger("wasmactors.guest").setLevel(logging.NOTSET)


class _GuestFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        actor = getattr(record, "actor", None)
        where = f"[{actor}]" if actor else f"[{record.name}]"
        return f"{record.levelname.lower():>7} {where} {record.getMessage()}"


def _progress(err: TextIO) -> Callable[[str], None]:
    tty = err.isatty()

    def show(line: str) -> None:
        if line.startswith("  ..."):
            if tty:
                print(f"\r{line}", end="", file=err, flush=True)
            return
        print(line, file=err, flush=True)

    return show


def ensure_built(manifest: Manifest, err: TextIO, wit: Path | None = None) -> None:
    """Rebuild a manifest's guest when its component is stale. The WIT is
    looked for only then, or when ``wit`` or a project ``wit/`` names one
    whose changes make a guest stale; the one shipped with the package does not."""
    guest = _build.manifest_guest(manifest)
    if guest is None:
        return
    tracked = wit.resolve() if wit else _build.project_wit(guest.folder)
    if _build.is_stale(guest, tracked):
        seconds = _build.build(guest, tracked or _build.bundled_wit(), progress=_progress(err))
        print(f"\rbuilt {guest.output} in {seconds:.1f} s", file=err)


def _backend(trio: bool) -> str:
    if trio and importlib.util.find_spec("trio") is None:
        raise UsageError("--trio needs trio, which is not installed: pip install 'wasmactors[trio]'")
    return "trio" if trio else "asyncio"


class UsageError(WasmActorsError):
    """The command line asks for something this installation cannot do."""


# -- commands -------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    backend = _backend(args.trio)
    topology = Topology.load(args.topology)
    for manifest in _run.manifests(topology):
        ensure_built(manifest, err, args.wit)
    if args.storage == ":memory:":
        storage = None
    else:
        storage = Path(args.storage) if args.storage else args.topology.with_suffix(".db")
    with Engine() as engine:
        report = anyio.run(
            lambda: _run.run_topology(
                topology, storage=storage, duration=args.duration, idle=args.idle, engine=engine, err=err
            ),
            backend=backend,
        )
    print(_run.stats_table(report), file=out)
    if report.failure is not None:
        print(f"wasmactors: error: {_one_line(report.failure)}", file=err)
        return EXIT_ERROR
    return EXIT_OK


def _cmd_node(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    backend = _backend(args.trio)
    _needs_nats()
    topology = Topology.load(args.topology)
    for manifest in _run.manifests(topology):
        ensure_built(manifest, err, args.wit)
    if args.storage == ":memory:":
        storage = None
    else:
        storage = Path(args.storage) if args.storage else args.topology.with_suffix(f".{args.name}.db")
    cluster = Cluster(
        args.cluster,
        node=args.name,
        prefix=args.prefix,
        ack_wait=args.ack_wait,
        processed_retention=args.processed_retention,
    )
    with Engine() as engine:
        report = anyio.run(
            lambda: _clustercli.run_node(
                topology,
                cluster,
                storage=storage,
                duration=args.duration,
                wait=args.wait,
                engine=engine,
                err=err,
            ),
            backend=backend,
        )
    print(_run.stats_table(report), file=out)
    if report.failure is not None:
        print(f"wasmactors: error: {_one_line(report.failure)}", file=err)
        return EXIT_ERROR
    return EXIT_OK


def _cmd_send(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    _needs_nats()
    payload = sys.stdin.buffer.read() if args.payload == "-" else args.payload.encode()
    cluster = _clustercli.client_cluster(args.cluster, args.prefix)
    ask = args.command == "ask"
    try:
        reply = anyio.run(
            lambda: _clustercli.send_once(cluster, args.address, payload, ask=ask, timeout=args.timeout)
        )
    except ActorAppError as exc:
        print(f"wasmactors: app error: {_one_line(exc)}", file=err)
        return EXIT_APP_ERROR
    except ActorCrashedError as exc:
        print(f"wasmactors: crashed: {_one_line(exc)}", file=err)
        return EXIT_CRASH
    except TimeoutError as exc:
        print(f"wasmactors: error: {_one_line(exc) or 'timed out'}", file=err)
        return EXIT_ERROR
    if ask:
        out.write(reply.decode("utf-8", errors="replace") + "\n")
    return EXIT_OK


def _cmd_cluster(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    _needs_nats()
    anyio.run(lambda: _clustercli.cluster_status(args.cluster, args.prefix, out))
    return EXIT_OK


def _needs_nats() -> None:
    if importlib.util.find_spec("nats") is None:
        raise UsageError("the cluster commands need nats-py: pip install 'wasmactors[cluster]'")


def _cmd_call(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    target: Manifest | Path = args.component
    if args.component.suffix == ".toml":
        target = Manifest.load(args.component)
        ensure_built(target, err, args.wit)
    payload = sys.stdin.buffer.read() if args.payload == "-" else args.payload.encode()
    with Engine() as engine:
        report = _call.call(
            engine,
            target,
            payload,
            memory=args.memory,
            fuel=args.fuel,
            timeout=args.timeout,
            storage=args.storage,
            tell=args.tell,
            address=args.address,
        )
    if args.json:
        print(msgspec.json.encode(report).decode(), file=out)
    else:
        print(_call.format_call(report), file=out)
    if report.outcome == "crash":
        print(f"wasmactors: crashed: {report.crash_kind}: {_one_line(report.error or '')}", file=err)
        return EXIT_CRASH
    if report.outcome == "app-error":
        print(f"wasmactors: application error: {report.error}", file=err)
        return EXIT_APP_ERROR
    return EXIT_OK


def _cmd_inspect(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    with Engine() as engine:
        info = engine.inspect(args.component)
    if args.json:
        print(msgspec.json.encode({**msgspec.structs.asdict(info), "fits": info.fits}).decode(), file=out)
    else:
        print(_call.format_inspect(info, internal=args.all), file=out)
    return EXIT_OK if info.fits else EXIT_APP_ERROR


def _cmd_build(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    guest = _build.guest_source(args.path, args.output)
    wit = args.wit.resolve() if args.wit else _build.find_wit(guest.folder)
    if args.if_stale and not _build.is_stale(guest, wit):
        print(f"{guest.output} is up to date", file=err)
        return EXIT_OK
    seconds = _build.build(guest, wit, progress=_progress(err))
    size = guest.output.stat().st_size
    print(f"\rbuilt {guest.output} ({size / 2**20:.1f} MiB) in {seconds:.1f} s", file=out)
    if not args.no_check:
        print("checking it against the `actor` world (compiling with wasmtime, cached afterwards)", file=err)
        with Engine() as engine:
            info = engine.inspect(guest.output)
        if not info.fits:
            print(_call.format_inspect(info), file=out)
            return EXIT_APP_ERROR
        print("fits the `actor` world", file=out)
    return EXIT_OK


def _cmd_cache(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    folder = default_cache_dir()
    bound = max_cache_size()
    if args.clear or args.prune is not None:
        keep = 0 if args.clear else (parse_size(args.prune) if args.prune else bound)
        removed = prune_cache(folder, keep)
        freed = sum(e.size for e in removed)
        print(f"removed {len(removed)} artifacts ({freed / MiB:,.1f} MiB)", file=out)
        if args.clear:
            shutil.rmtree(folder / "index", ignore_errors=True)
    entries = cache_entries(folder)
    total = sum(e.size for e in entries)
    print(f"cache      {folder}  (WASMACTORS_CACHE_DIR)", file=out)
    print(
        f"artifacts  {len(entries)}, {total / MiB:,.1f} MiB of at most {bound / MiB:,.0f} MiB "
        "(WASMACTORS_CACHE_MAX); least recently used go first",
        file=out,
    )
    now = time.time()
    for entry in entries:
        age = _age(now - entry.last_used)
        print(f"  {entry.size / MiB:7.1f} MiB  used {age:>10}  {entry.name or entry.path.name}", file=out)
    toolchains = folder / "toolchains"
    if toolchains.is_dir():
        size = sum(p.stat().st_size for p in toolchains.rglob("*") if p.is_file() and not p.is_symlink())
        print(f"toolchains {size / MiB:,.1f} MiB in {toolchains} (componentize-js; not bounded)", file=out)
    return EXIT_OK


def _age(seconds: float) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return "just now"


_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO, TextIO], int]] = {
    "run": _cmd_run,
    "call": _cmd_call,
    "inspect": _cmd_inspect,
    "build": _cmd_build,
    "cache": _cmd_cache,
    "node": _cmd_node,
    "tell": _cmd_send,
    "ask": _cmd_send,
    "cluster": _cmd_cluster,
}


def main_entry() -> None:
    """The console script: ``sys.exit(main())``."""
    code = main()
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _silence_stdout()
        code = EXIT_BROKEN_PIPE
    sys.exit(code)
