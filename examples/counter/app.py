"""Counter: a running total kept in the actor's storage, so it survives restarts.

Commands (payloads are ASCII text):
    add N   adds N to the total; replies with the new total
    get     replies with the total
    reset   sets the total to 0
"""

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import services, storage, types

KEY = "total"


def total() -> int:
    value = storage.get(KEY)
    return int(value) if value is not None else 0


class Handler(exports.Handler):
    def handle_message(self, msg: types.Envelope) -> str | None:
        command, _, argument = msg.payload.partition(" ")
        if command == "add":
            try:
                amount = int(argument)
            except ValueError:
                raise Err(types.AppError(f"add needs a whole number, got {argument!r}")) from None
            new = total() + amount
            storage.set(KEY, str(new))
            services.log(types.LogLevel.DEBUG, f"total is now {new}")
            return str(new)
        if command == "get":
            return str(total())
        if command == "reset":
            storage.set(KEY, "0")
            return "0"
        raise Err(types.AppError(f"unknown command {command!r}; try add N, get or reset"))

    def handle_callback(self, id: int, outcome: object) -> None:
        return None
