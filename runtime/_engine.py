"""The engine: wasmtime configuration, the epoch ticker, the shared linker
and component loading."""

from __future__ import annotations

import enum
import hashlib
import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING

import wasmtime
from wasmtime import component as wc

from . import _component
from ._host import define_host_functions
from ._layout import count_memories
from ._ticker import EpochTicker

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["Engine", "default_cache_dir"]


class UseDefault(enum.Enum):
    """Sentinel: resolve the default when the engine is created, not at import."""

    CACHE_DIR = enum.auto()


def default_cache_dir() -> Path:
    """``$WASMACTORS_CACHE_DIR``, else ``$XDG_CACHE_HOME/wasmactors``, else
    ``~/.cache/wasmactors``."""
    env = os.environ.get("WASMACTORS_CACHE_DIR")
    if env:
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "wasmactors"


class Engine:
    """Compiles components and runs their instances.

    One engine serves a whole actor system: it owns the wasmtime engine
    (component model, fuel and epoch interruption on), a ticker that
    advances the epoch every ``epoch_tick`` seconds (the resolution of call
    timeouts), the linker holding WASI p2 and the wasmactors host functions,
    and the compiled-artifact cache.

    Use it as a context manager, or call :meth:`close`, to stop the ticker.

    ``cache_dir`` (default: :func:`default_cache_dir`) holds compiled
    artifacts keyed by the component's SHA-256, the wasmtime version and this
    configuration; ``None`` disables the cache.
    wasmtime trusts the artifacts it deserializes, so the folder must be
    writable only by you.
    """

    def __init__(
        self,
        *,
        epoch_tick: float = 0.002,
        cache_dir: str | os.PathLike[str] | UseDefault | None = UseDefault.CACHE_DIR,
        max_wasm_stack: int = 512 * 1024,
    ) -> None:
        if not epoch_tick > 0:
            raise ValueError(f"epoch_tick must be positive, got {epoch_tick}")
        config = wasmtime.Config()
        config.consume_fuel = True
        config.epoch_interruption = True
        config.max_wasm_stack = max_wasm_stack
        self.raw = wasmtime.Engine(config)
        #: Seconds between epoch increments: call timeouts fire within one tick.
        self.epoch_tick = epoch_tick
        if isinstance(cache_dir, UseDefault):
            cache_dir = default_cache_dir()
        #: Where compiled artifacts are kept; ``None``: no cache.
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        #: Part of every cache key: artifacts of another wasmtime or config are never tried.
        self.fingerprint = hashlib.sha256(
            f"{_component.wasmtime_version()}|{platform.machine()}|fuel|epoch|stack={max_wasm_stack}".encode()
        ).hexdigest()[:16]
        self.linker = wc.Linker(self.raw)
        self.linker.add_wasip2()
        define_host_functions(self.linker)
        #: Advances the epoch every tick: a POSIX timer calling wasmtime's C
        #: function where available, so timeouts fire on time however busy
        #: the GIL is (``ticker.native``), else a Python thread.
        self.ticker = EpochTicker(self.raw, epoch_tick)

    @property
    def closed(self) -> bool:
        return self.ticker.closed

    def load(
        self, source: str | bytes | os.PathLike[str], *, name: str | None = None
    ) -> _component.Component:
        """Compile (or fetch from the cache) and validate a component.

        ``source`` is a file path, or the content as ``bytes`` (a binary
        component or WAT text). Raises a
        :class:`~wasmactors.runtime.ComponentError` subclass that says what is
        wrong: not wasm, a core module, a mismatch with the `actor` world, or
        imports the host does not provide.
        """
        path = None if isinstance(source, bytes | bytearray) else Path(source)
        compiled = None
        if path is not None:  # an unchanged file we compiled before: no need to read it
            known = _component.known_digest(self.cache_dir, path)
            if known is not None:
                digest, memories = known
                compiled = _component.load_artifact(self, digest)
            display = name or path.name
            cached = True
        if compiled is None:
            compiled, display, digest, _, cached, memories = self._compile(source, name)
            if path is not None:
                _component.remember_digest(self.cache_dir, path, digest, memories)
        _component.validate(self, compiled, display)
        stem = Path(display).stem if not display.startswith("<") else display
        return _component.Component(
            self, compiled, name=stem, digest=digest, cached=cached, memories=memories
        )

    def inspect(
        self, source: str | bytes | os.PathLike[str], *, name: str | None = None
    ) -> _component.ComponentInfo:
        """Describe a component's imports and exports in WIT terms and whether
        it fits the `actor` world, without rejecting it when it does not.
        Raises only when ``source`` is not a component at all (not wasm, a
        core module, or wasmtime cannot compile it)."""
        compiled, display, digest, size, _, _ = self._compile(source, name)
        return _component.describe(self, compiled, display, digest, size)

    def _compile(
        self, source: str | bytes | os.PathLike[str], name: str | None
    ) -> tuple[wc.Component, str, str, int, bool, int]:
        """Read, sniff and compile (or fetch from the cache): the compiled
        component, its display name, digest, size, whether it was cached and
        how many linear memories it defines."""
        data, display = _component.read_source(source, name)
        _component.sniff(data, display)
        digest = hashlib.sha256(data).hexdigest()
        compiled, cached = _component.compile_component(self, data, display, digest)
        binary = data if data.startswith(b"\0asm") else wasmtime.wat2wasm(data)  # compiled: valid text
        return compiled, display, digest, len(data), cached, count_memories(binary)

    def close(self) -> None:
        """Stop the epoch ticker. Instances must be closed first."""
        self.ticker.close()

    def __enter__(self) -> Engine:
        return self

    def __exit__(
        self, typ: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
