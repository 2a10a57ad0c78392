"""A test guest that exercises every host function and misbehaves on demand.

The payload is a command word and its arguments, separated by spaces.
"""

import contextlib
import time

from componentize_py_types import Err, Ok
from wit_world import exports
from wit_world.imports import lifecycle, messaging, services, storage, types

LEVELS = {
    "trace": types.LogLevel.TRACE,
    "debug": types.LogLevel.DEBUG,
    "info": types.LogLevel.INFO,
    "warn": types.LogLevel.WARN,
    "error": types.LogLevel.ERROR,
}


def describe(error: object) -> str:
    """A host error variant as `case:value`."""
    name = type(error).__name__
    value = getattr(error, "value", None)
    return name if value is None else f"{name}:{value}"


def run(command: str, args: list[str], msg: types.Envelope) -> str | None:
    if command == "echo":
        return " ".join(args)
    if command == "whoami":
        return messaging.self_address()
    if command == "sender":
        return msg.sender or "-"
    if command == "headers":
        return ";".join(f"{k}={v}" for k, v in msg.headers)
    if command == "kind":
        return msg.kind.name.lower()
    if command == "print":
        print(" ".join(args))
        return None
    if command == "spam":  # spam LINES WIDTH: flood stdout
        for _ in range(int(args[0])):
            print("x" * int(args[1]))
        return None
    if command == "stderr":
        import sys

        print(" ".join(args), file=sys.stderr)
        return None
    if command == "log":
        services.log(LEVELS[args[0]], " ".join(args[1:]))
        return None
    if command == "clock":
        return f"{services.now_ns()} {services.monotonic_ns()} {time.time_ns()}"
    if command == "env":
        import os

        return f"{len(os.environ)} {len(__import__('sys').argv)}"
    if command == "open":
        try:
            with open(args[0]) as handle:
                return "read " + handle.read(10)
        except OSError as exc:
            return type(exc).__name__
    if command == "stdin":
        import sys

        return repr(sys.stdin.read())
    if command == "set-get":
        storage.set(args[0], args[1])
        return storage.get(args[0])
    if command == "bytes":
        return "".join(chr(i) for i in range(256))
    if command == "wide":
        return "\u20ac"
    if command == "len":
        return str(len(msg.payload.encode("latin-1")) - len("len "))
    if command == "err":
        raise Err(types.AppError(" ".join(args)))
    if command == "raise":
        raise RuntimeError("the guest raised")
    if command == "spin":
        while True:
            pass
    if command == "busy":  # a finite busy wait of N milliseconds
        end = time.monotonic() + int(args[0]) / 1000
        while time.monotonic() < end:
            pass
        return "done"
    if command == "alloc":
        hog = bytearray(int(args[0]) * 1024 * 1024)
        return str(len(hog))
    if command == "send":
        messaging.send(args[0], " ".join(args[1:]))
        return "sent"
    if command == "request":
        return str(messaging.request(args[0], " ".join(args[2:]), int(args[1])))
    if command == "hop":  # hop KEY [NEXT...]: count KEY here (exactly-once checks), pass it on
        seen = storage.get("hop/" + args[0])
        storage.set("hop/" + args[0], str(int(seen or "0") + 1))
        if len(args) > 1:
            messaging.send(args[1], " ".join(["hop", args[0], *args[2:]]))
        return None
    if command == "send-big":
        messaging.send(args[0], "x" * int(args[1]))
        return "sent"
    if command == "send-many":
        for i in range(int(args[1])):
            messaging.send(args[0], str(i))
        return "sent"
    if command == "set":
        storage.set(args[0], " ".join(args[1:]))
        return "ok"
    if command == "get":
        value = storage.get(args[0])
        return "<none>" if value is None else value
    if command == "del":
        return str(storage.delete(args[0]))
    if command == "keys":
        return ",".join(storage.keys(args[0] if args else ""))
    if command == "set-then-raise":
        storage.set(args[0], args[1])
        messaging.send(args[2], "lost")
        raise RuntimeError("crash after writing")
    if command == "set-then-stop":
        storage.set(args[0], args[1])
        lifecycle.stop()
        return "stopping"
    if command == "stop-then-raise":
        storage.set(args[0], args[1])
        lifecycle.stop()
        raise RuntimeError("crash after stop")
    if command == "set-then-err":
        storage.set(args[0], args[1])
        raise Err(types.AppError("rejected after writing"))
    raise Err(types.AppError(f"unknown command {command!r}"))


class Handler(exports.Handler):
    def handle_message(self, msg: types.Envelope) -> str | None:
        command, *args = msg.payload.split(" ")
        try:
            return run(command, args, msg)
        except Err as err:
            if isinstance(err.value, types.AppError):
                raise
            # A host error value: report it as the reply, for tests to check.
            return f"host-error {describe(err.value)}"

    def handle_callback(self, id: int, outcome: object) -> None:
        text = f"ok {outcome.value}" if isinstance(outcome, Ok) else f"err {describe(outcome.value)}"
        storage.set(f"callback/{id}", text)
        with contextlib.suppress(Err):  # tests wait for callbacks by listening at "probe"
            messaging.send("probe", f"{id} {text}")
