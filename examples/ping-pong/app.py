"""Ping-pong: two actors of this component bounce a ball N times.

Commands (ASCII text):
    serve TO N        start a rally of N hits with the actor at TO
    ball I N T0       one hit: I of N, the rally started at T0 (ns, monotonic)
    last              reply with the last finished rally: "N hits in S s"

The actor that plays the last hit logs the rally's throughput and keeps it in
storage, so `last` answers it even after a restart.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import messaging, services, storage, types


class Handler(exports.Handler):
    def handle_message(self, msg: types.Envelope) -> str | None:
        command, *args = msg.payload.split()
        if command == "serve":
            to, hits = args[0], int(args[1])
            messaging.send(to, f"ball 1 {hits} {services.monotonic_ns()}")
            return None
        if command == "ball":
            hit, hits, started = (int(a) for a in args)
            if hit < hits:
                if msg.sender is None:
                    raise Err(types.AppError("a ball needs a sender to return it to"))
                messaging.send(msg.sender, f"ball {hit + 1} {hits} {started}")
                return None
            seconds = (services.monotonic_ns() - started) / 1e9
            summary = f"{hits} hits in {seconds:.3f} s ({hits / seconds:,.0f} hits/s)"
            storage.set("last", summary)
            services.log(types.LogLevel.INFO, f"rally over: {summary}")
            return None
        if command == "last":
            return storage.get("last") or "no rally yet"
        raise Err(types.AppError(f"unknown command {command!r}; try serve TO N, ball I N T0 or last"))

    def handle_callback(self, id: int, outcome: object) -> None:
        return None
