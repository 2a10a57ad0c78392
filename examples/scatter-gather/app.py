"""Scatter-gather: a coordinator asks several workers for a quote and
combines the answers that arrive in time.

Actors named `coordinator`:
    quote ITEM WORKER...   request a price for ITEM from every WORKER address,
                           each with a 250 ms deadline; the answers arrive later
                           as callbacks, and once all are in (replies, errors or
                           timeouts) the combined result is logged and stored
    result ITEM            reply with the combined result, or "pending"
Any other name is a worker:
    price ITEM             reply with this worker's price; a worker whose name
                           starts with `slow` takes 600 ms, past the deadline

The coordinator keeps every job in its storage (request id -> job, answers so
far), so a restart between the requests and the callbacks loses nothing.
"""

import json
import re
import time
import zlib

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import messaging, services, storage, types

DEADLINE_MS = 250


def fail(text: str) -> Err[types.AppError]:
    return Err(types.AppError(text))


def coordinator(command: str, args: list[str]) -> str | None:
    if command == "quote" and len(args) >= 2:
        item, workers = args[0], args[1:]
        storage.set(f"job/{item}", json.dumps({"workers": workers, "answers": {}}))
        for worker in workers:
            request_id = messaging.request(worker, f"price {item}", DEADLINE_MS)
            storage.set(f"request/{request_id}", json.dumps([item, worker]))
        return None
    if command == "result" and len(args) == 1:
        return storage.get(f"result/{args[0]}") or "pending"
    raise fail("the coordinator understands `quote ITEM WORKER...` and `result ITEM`")


def worker(command: str, args: list[str]) -> str:
    if command != "price" or len(args) != 1:
        raise fail("a worker understands `price ITEM`")
    me = messaging.self_address()
    if me.rpartition("/")[2].startswith("slow"):
        end = time.monotonic() + 0.6
        while time.monotonic() < end:
            pass
    cents = 500 + zlib.crc32(f"{me}:{args[0]}".encode()) % 1000
    return f"{cents / 100:.2f}"


def describe(outcome: object) -> str:
    """A callback outcome as text: the price, or why there is none."""
    if isinstance(outcome, Ok):
        return outcome.value
    error = outcome.value  # a types.RequestError_* case
    case = type(error).__name__.removeprefix("RequestError_")  # e.g. AppError
    reason = re.sub(r"(?<!^)(?=[A-Z])", "-", case).lower()  # e.g. app-error
    detail = getattr(error, "value", None)
    return f"{reason}: {detail}" if detail else reason


def gather(request_id: int, outcome: object) -> None:
    entry = storage.get(f"request/{request_id}")
    if entry is None:
        return  # not ours (or already combined)
    storage.delete(f"request/{request_id}")
    item, worker_ = json.loads(entry)
    job = json.loads(storage.get(f"job/{item}") or "{}")
    job["answers"][worker_] = describe(outcome)
    if len(job["answers"]) < len(job["workers"]):
        storage.set(f"job/{item}", json.dumps(job))
        return
    storage.delete(f"job/{item}")
    prices = {w: float(a) for w, a in job["answers"].items() if a[:1].isdigit()}
    missing = {w: a for w, a in job["answers"].items() if w not in prices}
    if prices:
        best = min(prices, key=prices.__getitem__)
        text = f"{item}: best {prices[best]:.2f} from {best} ({len(prices)} of {len(job['workers'])} answered"
    else:
        text = f"{item}: no quote ({len(job['workers'])} asked"
    text += "".join(f"; {w} {a}" for w, a in sorted(missing.items())) + ")"
    storage.set(f"result/{item}", text)
    services.log(types.LogLevel.INFO, text)


class Handler(exports.Handler):
    def handle_message(self, msg: types.Envelope) -> str | None:
        command, *args = msg.payload.split()
        if messaging.self_address().rpartition("/")[2] == "coordinator":
            return coordinator(command, args)
        return worker(command, args)

    def handle_callback(self, id: int, outcome: object) -> None:
        gather(id, outcome)
