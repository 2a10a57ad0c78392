"""A worker that does useful work, and crashes on purpose on some inputs.

    work N     add N to the work done (kept in storage); replies with the total
    total      reply with the total
    trap       records a bogus +1000, then raises: an uncaught exception traps,
               so the write is discarded with the rest of the call
    loop       an infinite loop: the call's deadline (timeout-ms) stops it
    bomb       allocates without end: the store refuses memory past the limit

Whatever crashes, the total in storage is the sum of the `work` messages: a
crashed call's storage writes are never committed, and a restart (a new
instance of the component) starts from what was.
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import services, storage, types


def total() -> int:
    return int(storage.get("total") or "0")


class Handler(exports.Handler):
    def handle_message(self, msg: types.Envelope) -> str | None:
        command, *args = msg.payload.split()
        if command == "work":
            new = total() + int(args[0])
            storage.set("total", str(new))
            return str(new)
        if command == "total":
            return str(total())
        if command == "trap":
            storage.set("total", str(total() + 1000))
            raise RuntimeError("bad input: trap")
        if command == "loop":
            while True:
                pass
        if command == "bomb":
            services.log(types.LogLevel.WARN, "allocating until the memory limit stops me")
            hoard = []
            while True:
                hoard.append(bytearray(1024 * 1024))
        raise Err(types.AppError(f"unknown command {command!r}; try work N, total, trap, loop or bomb"))

    def handle_callback(self, id: int, outcome: object) -> None:
        return None
