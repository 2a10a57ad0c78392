"""Echo: answers every request with its own payload."""

from wit_world import exports
from wit_world.imports import types


class Handler(exports.Handler):
    def handle_message(self, msg: types.Envelope) -> str | None:
        return msg.payload

    def handle_callback(self, id: int, outcome: object) -> None:
        return None
