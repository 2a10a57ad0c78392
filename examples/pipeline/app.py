"""A four-stage pipeline in one component; each actor's role is its name.

    producer  --csv-->  parse  --json-->  transform  --json-->  sink

producer   `produce N`: emits N sensor readings as CSV lines ("id,sensor,celsius"),
           at most BATCH per handler call; it sends itself `produce REST` for
           the remainder, so one call never queues more than the host's outbox limit.
parse      turns a CSV line into a JSON record; malformed lines are app errors.
transform  converts to Fahrenheit and drops implausible readings. `slow MS` makes
           it busy-wait MS milliseconds per record, to show backpressure.
sink       aggregates count, sum, min and max per sensor in its storage;
           `report` replies with the aggregates as JSON.

Stages address each other by sibling name: a stage at `line/parse` sends to
`line/transform`.
"""

import json
import time

from componentize_py_types import Err
from wit_world import exports
from wit_world.imports import messaging, storage, types

BATCH = 500
SENSORS = ("boiler", "intake", "exhaust", "ambient")
NEXT = {"producer": "parse", "parse": "transform", "transform": "sink"}


def sibling(name: str) -> str:
    parent, _, _ = messaging.self_address().rpartition("/")
    return f"{parent}/{name}" if parent else name


def fail(text: str) -> Err[types.AppError]:
    return Err(types.AppError(text))


def produce(args: list[str]) -> None:
    remaining = int(args[0])
    start = int(args[1]) if len(args) > 1 else 0
    count = min(remaining, BATCH)
    to = sibling("parse")
    for i in range(start, start + count):
        celsius = (i * 37 % 1000) / 10 - 20  # -20.0 .. 79.9, deterministic
        line = f"{i},{SENSORS[i % len(SENSORS)]},{celsius:.1f}"
        if i % 1000 == 999:
            line = f"{i},{SENSORS[0]},not-a-number"  # a malformed reading now and then
        messaging.send(to, line)
    if remaining > count:
        messaging.send(messaging.self_address(), f"produce {remaining - count} {start + count}")


def parse(line: str) -> None:
    try:
        ident, sensor, celsius = line.split(",")
        record = {"id": int(ident), "sensor": sensor, "celsius": float(celsius)}
    except ValueError:
        raise fail(f"malformed reading {line!r}") from None
    messaging.send(sibling("transform"), json.dumps(record))


class Transform:
    delay_ms = 0

    @classmethod
    def handle(cls, text: str) -> None:
        if text.startswith("slow "):
            cls.delay_ms = int(text.split()[1])
            return
        if cls.delay_ms:
            end = time.monotonic() + cls.delay_ms / 1000
            while time.monotonic() < end:
                pass
        record = json.loads(text)
        if not -10 <= record["celsius"] <= 150:
            return  # implausible (a sensor reading below -10 °C): dropped
        record["fahrenheit"] = round(record.pop("celsius") * 9 / 5 + 32, 1)
        messaging.send(sibling("sink"), json.dumps(record))


def sink(text: str) -> str | None:
    if text == "report":
        return json.dumps({k: json.loads(storage.get(k) or "{}") for k in storage.keys("sensor/")})
    record = json.loads(text)
    key = f"sensor/{record['sensor']}"
    agg = json.loads(storage.get(key) or '{"count": 0, "sum": 0.0}')
    value = record["fahrenheit"]
    agg["count"] += 1
    agg["sum"] = round(agg["sum"] + value, 1)
    agg["min"] = min(agg.get("min", value), value)
    agg["max"] = max(agg.get("max", value), value)
    storage.set(key, json.dumps(agg))
    return None


class Handler(exports.Handler):
    def handle_message(self, msg: types.Envelope) -> str | None:
        role = messaging.self_address().rpartition("/")[2]
        if role == "producer":
            command, *args = msg.payload.split()
            if command != "produce":
                raise fail("the producer understands `produce N`")
            produce(args)
            return None
        if role == "parse":
            parse(msg.payload)
            return None
        if role == "transform":
            Transform.handle(msg.payload)
            return None
        if role == "sink":
            return sink(msg.payload)
        raise fail(f"no pipeline role is named {role!r}; name the actor producer, parse, transform or sink")

    def handle_callback(self, id: int, outcome: object) -> None:
        return None
