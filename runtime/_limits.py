"""Resource limits and the component manifest (``component.toml``)."""

from __future__ import annotations

import difflib
import math
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Literal, TypeVar

import msgspec

from ._errors import InvalidMessageError, ManifestError, PayloadTooLargeError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["GiB", "GuestBuild", "KiB", "Limits", "Manifest", "MiB", "encode_metadata", "parse_size"]

T = TypeVar("T")

KiB = 1024
MiB = 1024 * KiB
GiB = 1024 * MiB

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMG]i?B|B)?\s*$", re.IGNORECASE)
_UNITS = {"b": 1, "kb": 1000, "kib": KiB, "mb": 1000**2, "mib": MiB, "gb": 1000**3, "gib": GiB}


def parse_size(value: int | str) -> int:
    """Parse a byte size: an int, or a string such as ``"64 MiB"`` or ``"512KB"``."""
    if isinstance(value, int):
        if value < 0:
            raise ValueError(f"a size cannot be negative: {value}")
        return value
    match = _SIZE.match(value)
    if match is None:
        raise ValueError(f"not a byte size: {value!r} (expected e.g. 65536 or '64 MiB')")
    number, unit = match.groups()
    return int(float(number) * _UNITS[(unit or "b").lower()])


class Limits(msgspec.Struct, frozen=True, kw_only=True):
    """What one actor instance may consume.

    ``memory``, ``fuel`` and ``timeout`` have no defaults on purpose: a
    sandbox without a memory and CPU budget is not a sandbox.
    """

    #: Linear memory, in bytes, summed over every memory of the instance.
    #: A componentize-py guest needs about 13 MiB to start.
    memory: int
    #: Fuel (roughly, wasm instructions) granted to each handler call.
    fuel: int
    #: Wall-clock budget of each handler call, in seconds.
    timeout: float
    #: Largest payload accepted into or out of a call, in bytes.
    max_payload: int = 1 * MiB
    #: Messages one handler call may queue with ``send`` and ``request``.
    max_outbox: int = 1024
    #: Payload bytes one handler call may queue with ``send`` and ``request``;
    #: ``None``: the memory limit (a call cannot make the host hold more
    #: than the guest itself may hold).
    max_outbox_bytes: int | None = None
    #: Bytes (keys and values) one handler call may write to storage;
    #: ``None``: the memory limit.
    max_storage_bytes: int | None = None
    #: Bytes the actor may keep in storage in total, across calls and
    #: restarts: each row's key and value plus 64 bytes.
    max_stored_bytes: int = 64 * MiB
    #: Bytes of the sender address and headers of a message into a call.
    max_metadata: int = 64 * KiB
    #: Headers of a message into a call.
    max_headers: int = 64
    #: Longest log record; a longer one is cut to this many bytes.
    max_log_record: int = 4 * KiB
    #: Log bytes one handler call may write; later records are dropped and
    #: counted in one warning.
    max_log_bytes: int = 64 * KiB
    #: Longest ``timeout-ms`` a ``request`` may ask for, in seconds.
    max_request_timeout: float = 300.0
    #: Requests of this actor waiting for their reply at once.
    max_pending_requests: int = 1024
    #: Keys one ``storage.keys`` call may return.
    max_keys: int = 10_000
    #: Core wasm instances in the store (a Python guest uses a handful).
    max_instances: int = 100
    #: Tables in the store.
    max_tables: int = 100
    #: Table elements, summed over the instance's tables (~8 bytes each).
    max_table_elements: int = 1_000_000
    #: Linear memories in the store. Each reserves ~6 GiB of address space
    #: (not memory), so the default is low.
    max_memories: int = 8

    def __post_init__(self) -> None:
        for name in (
            "memory",
            "fuel",
            "max_payload",
            "max_outbox",
            "max_stored_bytes",
            "max_metadata",
            "max_headers",
            "max_log_record",
            "max_log_bytes",
            "max_pending_requests",
            "max_keys",
            "max_instances",
            "max_tables",
            "max_table_elements",
            "max_memories",
        ):
            if getattr(self, name) <= 0:
                raise ValueError(f"Limits.{name} must be positive, got {getattr(self, name)}")
        for name in ("max_outbox_bytes", "max_storage_bytes"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"Limits.{name} must be positive, got {value}")
        for name in ("timeout", "max_request_timeout"):
            value = getattr(self, name)
            if not (value > 0 and math.isfinite(value)):
                raise ValueError(f"Limits.{name} must be a positive number of seconds, got {value}")

    @property
    def outbox_bytes(self) -> int:
        """The effective :attr:`max_outbox_bytes`."""
        return self.max_outbox_bytes if self.max_outbox_bytes is not None else self.memory

    @property
    def storage_bytes(self) -> int:
        """The effective :attr:`max_storage_bytes`."""
        return self.max_storage_bytes if self.max_storage_bytes is not None else self.memory


Header = tuple[str, str]


def encode_metadata(
    limits: Limits, payload: bytes, sender: str | None, headers: Sequence[Header]
) -> tuple[bytes | None, list[tuple[bytes, bytes]]]:
    """Check a message against ``limits`` before it is queued or called and
    return its sender and headers as UTF-8.

    Raises :class:`PayloadTooLargeError` for a payload over ``max_payload``
    and :class:`InvalidMessageError` for a payload that is not ``bytes``, a
    sender or header that is not a string of valid Unicode, more than
    ``max_headers`` headers, or metadata (sender and headers) over
    ``max_metadata`` bytes.
    """
    if type(payload) is not bytes:  # not a subclass either: its methods could lie
        raise InvalidMessageError(f"a payload is bytes, not {type(payload).__name__}")
    if len(payload) > limits.max_payload:
        raise PayloadTooLargeError(
            f"payload of {len(payload)} bytes exceeds the limit of {limits.max_payload}"
        )
    if sender is None and not headers:
        return None, []
    if len(headers) > limits.max_headers:
        raise InvalidMessageError(f"{len(headers)} headers exceed the limit of {limits.max_headers}")
    over = InvalidMessageError(f"sender and headers exceed the limit of {limits.max_metadata} bytes")
    left = limits.max_metadata
    raw_sender = None
    if sender is not None:
        raw_sender = _utf8(sender, "the sender", left, over)
        left -= len(raw_sender)
    raw_headers = []
    for header in headers:
        if not (isinstance(header, tuple | list) and len(header) == 2):
            raise InvalidMessageError("a header is a (name, value) pair of strings")
        name = _utf8(header[0], "a header name", left, over)
        left -= len(name)
        value = _utf8(header[1], "a header value", left, over)
        left -= len(value)
        raw_headers.append((name, value))
    return raw_sender, raw_headers


def _utf8(text: object, what: str, left: int, over: InvalidMessageError) -> bytes:
    if not isinstance(text, str):
        raise InvalidMessageError(f"{what} is a string, not {type(text).__name__}")
    if len(text) > left:  # before encoding: UTF-8 is never shorter than the characters
        raise over
    try:
        raw = str.encode(text)  # not text.encode(): a subclass could override it
    except UnicodeEncodeError as exc:
        raise InvalidMessageError(
            f"{what} is not valid Unicode: {exc.reason} at position {exc.start}"
        ) from None
    if len(raw) > left:
        raise over
    return raw


Positive = Annotated[int, msgspec.Meta(gt=0)]


class _ManifestLimits(msgspec.Struct, forbid_unknown_fields=True, rename="kebab"):
    memory: int | str
    fuel: Positive
    timeout_ms: Positive
    max_payload: int | str = 1 * MiB
    max_outbox: Positive = 1024
    max_outbox_bytes: int | str | None = None
    max_storage_bytes: int | str | None = None
    max_stored_bytes: int | str = 64 * MiB
    max_metadata: int | str = 64 * KiB
    max_headers: Positive = 64
    max_log_record: int | str = 4 * KiB
    max_log_bytes: int | str = 64 * KiB
    max_request_timeout_ms: Positive = 300_000
    max_pending_requests: Positive = 1024
    max_keys: Positive = 10_000
    max_instances: Positive = 100
    max_tables: Positive = 100
    max_table_elements: Positive = 1_000_000
    max_memories: Positive = 8


class _ManifestBuild(msgspec.Struct, forbid_unknown_fields=True):
    module: str = "app"
    path: str = "."
    language: Literal["python", "javascript"] | None = None


class _ManifestFile(msgspec.Struct, forbid_unknown_fields=True):
    component: str
    limits: _ManifestLimits
    name: str | None = None
    description: str = ""
    build: _ManifestBuild | None = None


class GuestBuild(msgspec.Struct, frozen=True):
    """How to build a guest from source (a manifest's ``[build]`` table)::

        [build]
        module = "app"     # the module defining `Handler` (default "app"), or "app.js"
        path = "."         # its folder, relative to the manifest (default ".")
        language = "python"  # or "javascript"; default: from module's extension

    ``wasmactors build`` and ``wasmactors run`` rebuild the component (with
    componentize-py, or componentize-js) when it is missing or older than a
    source file there.
    """

    #: The guest's main module (Python) or entry file (JavaScript).
    module: str
    #: Absolute path of the folder holding it.
    path: Path
    #: ``"python"`` or ``"javascript"``; ``None``: from the module's extension.
    language: str | None = None


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    """A component and its limits, as declared by a ``component.toml``::

    name = "counter"
    component = "build/counter.wasm"   # relative to this file
    [limits]
    memory = "64 MiB"                  # required
    fuel = 50_000_000                  # required, per handler call
    timeout-ms = 1000                  # required, per handler call
    """

    #: The actor's default name.
    name: str
    #: Absolute path of the component file.
    component: Path
    #: The limits every instance of it runs under.
    limits: Limits
    #: Free text.
    description: str = ""
    #: The manifest file it was read from, if any.
    source: Path | None = None
    #: How to build it from Python sources, if the manifest says.
    build: GuestBuild | None = None

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        """Read and validate a ``component.toml``; raise :class:`ManifestError`
        naming the file and the offending key."""
        path = Path(path)
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise ManifestError(f"{path}: cannot read manifest: {exc.strerror}") from exc
        return cls.parse(raw, source=path)

    @classmethod
    def parse(cls, text: bytes | str, *, source: Path | None = None) -> Manifest:
        """Validate manifest text; relative paths resolve against ``source``'s folder."""
        where = str(source) if source else "<manifest>"
        data = decode_toml(text, _ManifestFile, where, ManifestError)
        lim = data.limits
        memory = _parse_memory(lim.memory, where)
        try:
            limits = Limits(
                memory=memory,
                fuel=lim.fuel,
                timeout=lim.timeout_ms / 1000,
                max_payload=parse_size(lim.max_payload),
                max_outbox=lim.max_outbox,
                max_outbox_bytes=None if lim.max_outbox_bytes is None else parse_size(lim.max_outbox_bytes),
                max_storage_bytes=None
                if lim.max_storage_bytes is None
                else parse_size(lim.max_storage_bytes),
                max_stored_bytes=parse_size(lim.max_stored_bytes),
                max_metadata=parse_size(lim.max_metadata),
                max_headers=lim.max_headers,
                max_log_record=parse_size(lim.max_log_record),
                max_log_bytes=parse_size(lim.max_log_bytes),
                max_request_timeout=lim.max_request_timeout_ms / 1000,
                max_pending_requests=lim.max_pending_requests,
                max_keys=lim.max_keys,
                max_instances=lim.max_instances,
                max_tables=lim.max_tables,
                max_table_elements=lim.max_table_elements,
                max_memories=lim.max_memories,
            )
        except ValueError as exc:
            raise ManifestError(f"{where}: [limits]: {exc}") from exc
        base = source.parent if source else Path.cwd()
        component = (base / data.component).resolve()
        name = data.name or (source.parent.name if source else component.stem)
        build = (
            GuestBuild(data.build.module, (base / data.build.path).resolve(), data.build.language)
            if data.build
            else None
        )
        return cls(
            name=name,
            component=component,
            limits=limits,
            description=data.description,
            source=source,
            build=build,
        )


#: No component runs in less than one 64 KiB page; a bare number below it is
#: a forgotten unit (``memory = 64`` meaning 64 MiB), refused at load.
_MIN_MEMORY = 64 * KiB


def _parse_memory(value: int | str, where: str) -> int:
    try:
        size = parse_size(value)
    except ValueError as exc:
        raise ManifestError(f"{where}: key `limits.memory`: {exc}") from exc
    if size < _MIN_MEMORY:
        raise ManifestError(
            f"{where}: key `limits.memory`: {value!r} is {size} bytes, less than any component needs "
            f'(one 64 KiB page); give a unit, e.g. memory = "{value} MiB"'
        )
    return size


def decode_toml(text: bytes | str, type: type[T], where: str, error: type[Exception]) -> T:
    """Decode a TOML file into ``type``; ``error`` says where and which key is wrong."""
    try:
        return msgspec.toml.decode(text, type=type)
    except msgspec.ValidationError as exc:
        raise error(f"{where}: {explain_validation(str(exc), type)}") from exc
    except msgspec.DecodeError as exc:
        raise error(f"{where}: not valid TOML: {exc}") from exc


_UNKNOWN = re.compile(r"^Object contains unknown field `(.+)`$")
_BAD_ENUM = re.compile(r"^Invalid enum value '(.*)'$")


def explain_validation(message: str, type: object = None) -> str:
    """Turn msgspec's ``... - at `$.limits.fuel` `` into ``key `limits.fuel`: ...``;
    with the decoded ``type``, a misspelt key gets the closest valid one and a
    wrong enum value the list of valid ones."""
    text, sep, where = message.rpartition(" - at `$")
    if not sep:
        text, where = message, ""
    key = where.rstrip("`").lstrip(".")
    if type is not None:
        text += _hint(text, key, type)
    return f"key `{key}`: {text}" if key else text


def _hint(text: str, key: str, type: object) -> str:
    names: set[str] = set()
    choices: dict[str, tuple[object, ...]] = {}
    _collect(msgspec.inspect.type_info(type), names, choices, set())
    if unknown := _UNKNOWN.match(text):
        close = difflib.get_close_matches(unknown.group(1), sorted(names), n=1)
        return f"; did you mean `{close[0]}`?" if close else ""
    if bad := _BAD_ENUM.match(text):
        field = re.sub(r"\[\d+\]", "", key.rpartition(".")[2])
        values = [str(v) for v in choices.get(field, ())]
        if not values:
            return ""
        close = difflib.get_close_matches(bad.group(1), values, n=1)
        return f" (valid: {', '.join(values)})" + (f"; did you mean '{close[0]}'?" if close else "")
    return ""


def _collect(
    info: msgspec.inspect.Type, names: set[str], choices: dict[str, tuple[object, ...]], seen: set[int]
) -> None:
    """Every field name of the structs reachable from ``info``, and the
    values of the Literal-typed ones."""
    if id(info) in seen:
        return
    seen.add(id(info))
    if isinstance(info, msgspec.inspect.StructType):
        for field in info.fields:
            names.add(field.encode_name)
            if isinstance(field.type, msgspec.inspect.LiteralType):
                choices[field.encode_name] = field.type.values
            _collect(field.type, names, choices, seen)
    elif isinstance(info, msgspec.inspect.UnionType):
        for member in info.types:
            _collect(member, names, choices, seen)
    elif isinstance(info, msgspec.inspect.ListType | msgspec.inspect.VarTupleType):
        _collect(info.item_type, names, choices, seen)
