"""Load a component, call it under limits, and keep its state across a restart.

Run with `make demo` (it builds the guest first), or `python examples/quickstart.py`.
"""

from __future__ import annotations

import logging
import sys
import time
from pathlib import Path

from wasmactors import AppError, Engine, HostContext, Instance, Manifest, SQLiteStorage, Success

HERE = Path(__file__).parent


def main() -> int:
    logging.basicConfig(
        level=logging.DEBUG, stream=sys.stdout, format="  guest log: %(levelname)s %(message)s"
    )
    manifest = Manifest.load(HERE / "counter" / "component.toml")  # declares memory, fuel, timeout
    db = HERE.parent / "build" / "demo" / "state.db"
    db.parent.mkdir(parents=True, exist_ok=True)
    db.unlink(missing_ok=True)

    with Engine() as engine, SQLiteStorage(db) as storage:
        start = time.perf_counter()
        component = engine.load(manifest.component)
        how = "from the artifact cache" if component.cached else "compiled"
        print(f"loaded {component.name} ({how}) in {(time.perf_counter() - start) * 1e3:.1f} ms")
        lim = manifest.limits
        print(f"limits: {lim.memory >> 20} MiB memory, {lim.fuel:,} fuel and {lim.timeout:g} s per message")

        context = HostContext("demo/counter", storage=storage)
        with Instance(component, manifest.limits, context) as counter:
            for command in (b"add 5", b"add 37", b"get", b"add many"):
                result = counter.handle_message(command, request=True)
                match result.outcome:
                    case Success(reply=reply):
                        cost = f"{result.fuel:,} fuel, {result.elapsed * 1e6:.0f} µs"
                        print(f"{command.decode():>10} -> {reply!r}   ({cost})")
                    case AppError(message=message):
                        print(f"{command.decode():>10} -> app error: {message}")
                    case crash:
                        print(f"{command.decode():>10} -> crashed: {crash}")
                        return 1

        # A restarted actor is a new Store and instance from the same compiled
        # component; its state lives in SQLite, so the total is still there.
        start = time.perf_counter()
        with Instance(component, manifest.limits, context) as restarted:
            took = (time.perf_counter() - start) * 1e3
            still = restarted.handle_message(b"get", request=True).outcome
        print(f"restarted in {took:.2f} ms; the total is still {still}")
        expected = Success(b"42")
    return 0 if still == expected else 1


if __name__ == "__main__":
    sys.exit(main())
