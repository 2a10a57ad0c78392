"""A warehouse's stock, one actor per warehouse, kept in the actor's storage.

Commands (ASCII text); replies are JSON:
    stock SKU          {"sku": SKU, "quantity": N}
    receive SKU N      add N units; replies with the new stock
    ship SKU N         remove N units; an app error if there are not enough
    list               {"SKU": N, ...} for every SKU with stock
"""

import json

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import services, storage, types


def fail(text: str) -> Err[types.AppError]:
    return Err(types.AppError(text))


def quantity(sku: str) -> int:
    return int(storage.get(f"sku/{sku}") or "0")


def amount(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise fail(f"a quantity is a positive whole number, got {text!r}")
    return int(text)


class Handler(exports.Handler):
    def handle_message(self, msg: types.Envelope) -> str | None:
        command, *args = msg.payload.split()
        if command == "stock" and len(args) == 1:
            return json.dumps({"sku": args[0], "quantity": quantity(args[0])})
        if command == "receive" and len(args) == 2:
            sku, n = args[0], amount(args[1])
            new = quantity(sku) + n
            storage.set(f"sku/{sku}", str(new))
            return json.dumps({"sku": sku, "quantity": new})
        if command == "ship" and len(args) == 2:
            sku, n = args[0], amount(args[1])
            have = quantity(sku)
            if n > have:
                raise fail(f"cannot ship {n} of {sku}: {have} in stock")
            storage.set(f"sku/{sku}", str(have - n))
            services.log(types.LogLevel.INFO, f"shipped {n} of {sku}")
            return json.dumps({"sku": sku, "quantity": have - n})
        if command == "list" and not args:
            skus = {k.removeprefix("sku/"): int(storage.get(k) or "0") for k in storage.keys("sku/")}
            return json.dumps({k: v for k, v in skus.items() if v})
        raise fail(f"unknown command {msg.payload!r}; try stock SKU, receive SKU N, ship SKU N or list")

    def handle_callback(self, id: int, outcome: object) -> None:
        return None
