"""Loading components: sniffing the input, the compiled-artifact cache,
and validation against the `actor` world."""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import msgspec
import wasmtime
from wasmtime import WasmtimeError
from wasmtime import component as wc

from ._cache import max_cache_size, prune_cache, touch
from ._errors import (
    CompileError,
    CoreModuleError,
    MissingImportsError,
    NotWasmError,
    WorldMismatchError,
)
from ._wit import EXPECTED_EXPORTS, HANDLER, PROVIDED_INTERFACES, describe_item, instance_funcs, render_func

if TYPE_CHECKING:
    from ._engine import Engine

__all__ = ["Component", "ComponentInfo"]

_log = logging.getLogger("wasmactors.runtime")
#: Components at least this big take seconds to compile: their first load is announced.
ANNOUNCE_COMPILE = 1024 * 1024

_MAGIC = b"\0asm"
_CORE_VERSION = b"\x01\x00\x00\x00"
_HOW_TO_COMPONENTIZE = (
    "Actors must be WebAssembly components targeting the `actor` world in wit/: "
    "build Python guests with `componentize-py -d wit -w actor componentize app -o app.wasm` "
    "(see examples/README.md), other languages with their component toolchain "
    "(for example `wasm-tools component new`)."
)


class Component:
    """A compiled, validated actor component. Cheap to instantiate many times;
    owned by its :class:`Engine`."""

    def __init__(self, engine: Engine, raw: wc.Component, *, name: str, digest: str, cached: bool) -> None:
        self.engine = engine
        #: wasmtime's compiled component.
        self.raw = raw
        #: A name for messages: the file stem, or what the caller gave.
        self.name = name
        #: SHA-256 of the component's bytes.
        self.digest = digest
        #: Whether it came from the compiled-artifact cache.
        self.cached = cached
        # Export indices are valid for every instance of this component, so
        # instantiation only has to resolve them to functions.
        handler = raw.get_export_index(HANDLER)
        self.export_indices = tuple(
            raw.get_export_index(f, handler) for f in ("handle-message", "handle-callback")
        )

    def __repr__(self) -> str:
        return f"<Component {self.name} {self.digest[:12]}>"


class ComponentInfo(msgspec.Struct, frozen=True):
    """What a component file holds, described in WIT terms (see
    :meth:`Engine.inspect <wasmactors.runtime.Engine.inspect>`)."""

    #: The file name, or what the caller gave.
    name: str
    #: SHA-256 of the component's bytes.
    digest: str
    #: Size of the component in bytes.
    size: int
    #: Import name -> its functions or signature, in WIT syntax.
    imports: dict[str, str]
    #: Export name -> its functions or signature, in WIT syntax. An
    #: instance export lists each function on its own key, ``name#function``.
    exports: dict[str, str]
    #: Why it does not fit the `actor` world (empty: it fits).
    problems: tuple[str, ...] = ()

    @property
    def fits(self) -> bool:
        """True when the host would accept it as an actor."""
        return not self.problems


def describe(engine: Engine, compiled: wc.Component, name: str, digest: str, size: int) -> ComponentInfo:
    """The component's imports and exports, and what keeps it out of the `actor` world."""
    raw_engine = engine.raw
    ctype = compiled.type
    imports = {n: describe_item(raw_engine, e.ty) for n, e in sorted(ctype.imports(raw_engine).items())}
    exports: dict[str, str] = {}
    for n, e in sorted(ctype.exports(raw_engine).items()):
        funcs = instance_funcs(raw_engine, e)
        if funcs is None:
            exports[n] = describe_item(raw_engine, e.ty)
        else:
            exports.update({f"{n}#{f}": render_func(t, names=True) for f, t in sorted(funcs.items())})
    problems: tuple[str, ...] = ()
    try:
        validate(engine, compiled, name)
    except MissingImportsError as exc:
        problems = tuple(f"imports `{m}`, which the host does not provide" for m in exc.missing)
    except WorldMismatchError as exc:
        problems = (str(exc).removeprefix(f"{name} "),)
    return ComponentInfo(name, digest, size, imports, exports, problems)


def read_source(source: str | bytes | os.PathLike[str], name: str | None) -> tuple[bytes, str]:
    """The component bytes (binary or WAT text) and a display name.

    ``bytes`` are the content itself; ``str`` and path-likes name a file."""
    if isinstance(source, bytes | bytearray):
        return bytes(source), name or "<bytes>"
    path = Path(source)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise NotWasmError(f"{path}: cannot read: {exc.strerror}") from exc
    return data, name or path.name


def sniff(data: bytes, name: str) -> None:
    """Reject what is clearly not a component before wasmtime sees it."""
    if data.startswith(_MAGIC):
        if data[4:8] == _CORE_VERSION:
            raise CoreModuleError(
                f"{name} is a core WebAssembly module, not a component. " + _HOW_TO_COMPONENTIZE
            )
        return
    head = data[:4096].lstrip()
    try:
        text = head.decode()
    except UnicodeDecodeError:
        text = ""
    text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith(";;")).lstrip()
    if text.startswith("(module"):
        raise CoreModuleError(
            f"{name} is a core module in WAT text, not a component. " + _HOW_TO_COMPONENTIZE
        )
    if not text.startswith("(component"):
        raise NotWasmError(
            f"{name} is not WebAssembly: expected a component binary "
            f"(starting with \\0asm) or WAT text starting with `(component`."
        )


def _artifact(engine: Engine, digest: str) -> Path | None:
    cache = engine.cache_dir
    return cache / f"{digest}-{engine.fingerprint}.cwasm" if cache else None


def load_artifact(engine: Engine, digest: str) -> wc.Component | None:
    """The cached compilation of the component with ``digest``, if there is a good one."""
    artifact = _artifact(engine, digest)
    if artifact is None or not artifact.exists():
        return None
    try:
        compiled = wc.Component.deserialize_file(engine.raw, str(artifact))
        touch(artifact)  # the cache evicts the least recently used first
        return compiled
    except WasmtimeError:
        artifact.unlink(missing_ok=True)  # stale or corrupt: the caller recompiles
        return None


def compile_component(engine: Engine, data: bytes, name: str, digest: str) -> tuple[wc.Component, bool]:
    """Compile ``data``, going through the artifact cache when one is configured."""
    cached = load_artifact(engine, digest)
    if cached is not None:
        return cached, True
    artifact = _artifact(engine, digest)
    if len(data) >= ANNOUNCE_COMPILE:  # guests compile for 10-50 s: say why nothing happens
        _log.info(
            "compiling %s (%.1f MiB) with wasmtime: the first load of a component takes a while%s",
            name,
            len(data) / 2**20,
            "; it is cached afterwards" if artifact is not None else "",
        )
    try:
        compiled = wc.Component(engine.raw, data)
    except WasmtimeError as exc:
        raise CompileError(f"{name}: wasmtime rejected the component: {_first_lines(exc)}") from exc
    if artifact is not None:
        _store_artifact(artifact, compiled, name)
    return compiled, False


def _store_artifact(artifact: Path, compiled: wc.Component, name: str) -> None:
    try:
        artifact.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=artifact.parent, suffix=".tmp")
        with os.fdopen(fd, "wb") as out:
            out.write(compiled.serialize())
        os.replace(tmp, artifact)  # atomic: readers never see a partial file
        artifact.with_suffix(".name").write_text(name)
        prune_cache(artifact.parent, max_cache_size())
    except (OSError, ValueError):
        pass  # an unwritable cache (or a bad WASMACTORS_CACHE_MAX) only costs the next load a recompile


def validate(engine: Engine, compiled: wc.Component, name: str) -> None:
    """Check the exports fit the `actor` world and every import is provided."""
    raw_engine = engine.raw
    ctype = compiled.type
    exports = ctype.exports(raw_engine)
    handler = exports.get(HANDLER)
    funcs = instance_funcs(raw_engine, handler) if handler is not None else None
    if funcs is None:
        found = ", ".join(sorted(exports)) or "nothing"
        raise WorldMismatchError(
            f"{name} does not export `{HANDLER}` (it exports {found}). " + _HOW_TO_COMPONENTIZE
        )
    problems = []
    for func, expected in EXPECTED_EXPORTS.items():
        fty = funcs.get(func)
        if fty is None:
            problems.append(f"missing `{func}`")
            continue
        got = render_func(fty)
        if got != expected:
            problems.append(f"`{func}` has the wrong type:\n  expected {expected}\n  found    {got}")
    if problems:
        raise WorldMismatchError(f"{name} does not match the `actor` world: " + "; ".join(problems))
    missing = []
    for imp, ext in ctype.imports(raw_engine).items():
        if imp.startswith("wasi:"):
            continue  # WASI p2 comes from wasmtime; a version it lacks fails at instantiation
        offered = PROVIDED_INTERFACES.get(imp)
        if offered is None:
            missing.append(imp)
            continue
        for func in instance_funcs(raw_engine, ext) or {}:
            if func not in offered:
                missing.append(f"{imp}#{func}")
    if missing:
        raise MissingImportsError(
            f"{name} imports what the host does not provide: {', '.join(missing)}. "
            f"The host offers {', '.join(sorted(PROVIDED_INTERFACES))} and WASI p2.",
            missing,
        )


def known_digest(cache: Path | None, path: Path) -> str | None:
    """The SHA-256 recorded for ``path`` if the file is unchanged since (same
    size, inode, mtime and ctime), so a cached load need not read 18 MB."""
    if cache is None:
        return None
    try:
        entry = _index_entry(cache, path)
        recorded = entry.read_text().split()
    except (OSError, ValueError):
        return None
    if len(recorded) == 2 and recorded[0] == _stat_key(path):
        return recorded[1]
    return None


def remember_digest(cache: Path | None, path: Path, digest: str) -> None:
    if cache is None:
        return
    try:
        entry = _index_entry(cache, path)
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            out.write(f"{_stat_key(path)} {digest}")
        os.replace(tmp, entry)
    except OSError:
        pass


def _index_entry(cache: Path, path: Path) -> Path:
    return cache / "index" / hashlib.sha256(str(path.resolve()).encode()).hexdigest()


def _stat_key(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"


def _first_lines(exc: BaseException, n: int = 3) -> str:
    return " ".join(line.strip() for line in str(exc).splitlines()[:n] if line.strip())


def wasmtime_version() -> str:
    return getattr(wasmtime, "__version__", None) or _dist_version()


def _dist_version() -> str:
    from importlib.metadata import version

    return version("wasmtime")
