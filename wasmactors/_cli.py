"""The ``wasmactors`` command line (also ``python -m wasmactors``).

Every command reports a failure as one line on stderr (``--verbose`` adds the
traceback) and exits with a documented code:

====  ==============================================================
0     done
1     the command could not do its job (bad file, failed build, the
      actor system gave up)
2     bad usage
3     ``call``: the component answered with an application error;
      ``inspect``: it does not fit the `actor` world
4     ``call``: the component crashed (the kind is on stderr)
====  ==============================================================
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import anyio
import msgspec

from . import _build, _call, _run
from .actors import Topology
from .runtime import Engine, Manifest, WasmActorsError, parse_size

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

__all__ = ["main", "main_entry"]

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_APP_ERROR, EXIT_CRASH = 0, 1, 2, 3, 4


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="wasmactors",
        description="Run WebAssembly component actors: topologies, single calls, inspection, guest builds.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="show tracebacks and debug logs")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="start a topology file's actors and run until idle or Ctrl-C")
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

    call = sub.add_parser("call", help="send one message to one fresh instance and show what it did")
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
        "--storage", type=Path, metavar="PATH", help="SQLite file for its storage (default: in memory)"
    )
    call.add_argument("--tell", action="store_true", help="send a tell instead of a request")
    call.add_argument("--json", action="store_true", help="print the report as JSON")

    inspect = sub.add_parser("inspect", help="show a component's imports and exports, and whether it fits")
    inspect.add_argument("component", type=Path, help="a component .wasm (or .wat)")
    inspect.add_argument("--json", action="store_true", help="print the description as JSON")

    build = sub.add_parser("build", help="componentize a Python guest against wit/")
    build.add_argument(
        "path", type=Path, help="a component.toml with [build], a guest folder, or a .py module"
    )
    build.add_argument(
        "-o", "--output", type=Path, help="the component to write (default: from the manifest)"
    )
    build.add_argument(
        "--wit", type=Path, help="the WIT folder (default: the nearest wit/ holding actor.wit)"
    )
    build.add_argument(
        "--if-stale", action="store_true", help="skip when the component is newer than its sources"
    )
    build.add_argument(
        "--no-check", action="store_true", help="skip compiling and validating the result against the world"
    )
    return parser


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    """Run the command line; returns the exit code."""
    out = out or sys.stdout
    err = err or sys.stderr
    args = _parser().parse_args(argv)
    _configure_logging(args, err)
    command: Callable[[argparse.Namespace, TextIO, TextIO], int] = _COMMANDS[args.command]
    try:
        return command(args, out, err)
    except KeyboardInterrupt:
        print("wasmactors: interrupted", file=err)
        return 130
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


def ensure_built(manifest: Manifest, err: TextIO) -> None:
    """Rebuild a manifest's Python guest when its component is stale."""
    guest = _build.manifest_guest(manifest)
    if guest is None or manifest.source is None:
        return
    wit = _build.find_wit(manifest.source.parent)
    if _build.is_stale(guest, wit):
        seconds = _build.build(guest, wit, progress=_progress(err))
        print(f"\rbuilt {guest.output} in {seconds:.1f} s", file=err)


# -- commands -------------------------------------------------------------------


def _cmd_run(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    topology = Topology.load(args.topology)
    for manifest in _run.manifests(topology):
        ensure_built(manifest, err)
    if args.storage == ":memory:":
        storage = None
    else:
        storage = Path(args.storage) if args.storage else args.topology.with_suffix(".db")
    with Engine() as engine:
        report = anyio.run(
            lambda: _run.run_topology(
                topology, storage=storage, duration=args.duration, idle=args.idle, engine=engine, err=err
            ),
            backend="trio" if args.trio else "asyncio",
        )
    print(_run.stats_table(report), file=out)
    if report.failure is not None:
        print(f"wasmactors: error: {_one_line(report.failure)}", file=err)
        return EXIT_ERROR
    return EXIT_OK


def _cmd_call(args: argparse.Namespace, out: TextIO, err: TextIO) -> int:
    target: Manifest | Path = args.component
    if args.component.suffix == ".toml":
        target = Manifest.load(args.component)
        ensure_built(target, err)
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
        print(_call.format_inspect(info), file=out)
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


_COMMANDS: dict[str, Callable[[argparse.Namespace, TextIO, TextIO], int]] = {
    "run": _cmd_run,
    "call": _cmd_call,
    "inspect": _cmd_inspect,
    "build": _cmd_build,
}


def main_entry() -> None:
    """The console script: ``sys.exit(main())``."""
    sys.exit(main())
