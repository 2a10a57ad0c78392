"""Loading components: sniffing the input, the compiled-artifact cache,
and validation against the `actor` world."""

from __future__ import annotations

import hashlib
import logging
import os
import re
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
    ImportMismatchError,
    MissingImportsError,
    NotWasmError,
    WorldMismatchError,
)
from ._layout import Layout
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


_ONE_OF_EACH = Layout(memories=1, tables=1)


class Component:
    """A compiled, validated actor component. Cheap to instantiate many times;
    owned by its :class:`Engine`."""

    def __init__(
        self,
        engine: Engine,
        raw: wc.Component,
        *,
        name: str,
        digest: str,
        cached: bool,
        layout: Layout = _ONE_OF_EACH,
    ) -> None:
        self.engine = engine
        #: wasmtime's compiled component.
        self.raw = raw
        #: A name for messages: the file stem, or what the caller gave.
        self.name = name
        #: SHA-256 of the component's bytes.
        self.digest = digest
        #: Whether it came from the compiled-artifact cache.
        self.cached = cached
        #: Linear memories its core modules define: an instance may create
        #: that many, and the memory budget is split between them.
        self.memories = layout.memories
        #: Tables its core modules define: likewise for ``max_table_elements``.
        self.tables = layout.tables
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
    except (WorldMismatchError, ImportMismatchError) as exc:
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
        raise CompileError(f"{name}: wasmtime rejected the component: {error_chain(exc)}") from exc
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
    _check_imports(engine, compiled, name)


def _check_imports(engine: Engine, compiled: wc.Component, name: str) -> None:
    """Every import is one the host provides, with the type it implements.

    The wasmactors interfaces are compared function by function with
    :data:`HOST_SIGNATURES` (the host registers them untyped, so wasmtime
    would not). Everything else, WASI included, is checked by wasmtime's own
    linker in a trial instantiation that stops before any guest code runs.
    """
    raw_engine = engine.raw
    missing: list[str] = []
    mismatched: list[str] = []
    problems: list[str] = []
    for imp, ext in sorted(compiled.type.imports(raw_engine).items()):
        if imp.startswith("wasi:"):
            continue
        offered = PROVIDED_INTERFACES.get(imp)
        funcs = instance_funcs(raw_engine, ext)
        if offered is None or funcs is None:
            missing.append(imp)
            continue
        for func, fty in sorted(funcs.items()):
            expected = offered.get(func)
            if expected is None:
                missing.append(f"{imp}#{func}")
            elif (found := render_func(fty)) != expected:
                mismatched.append(f"{imp}#{func}")
                problems.append(f"`{imp}#{func}` has the wrong type: expected {expected}, found {found}")
    if missing:
        raise MissingImportsError(
            f"{name} imports what the host does not provide: {', '.join(missing)}. "
            f"The host offers {', '.join(sorted(PROVIDED_INTERFACES))} and WASI p2.",
            missing,
        )
    if mismatched:
        raise ImportMismatchError(
            f"{name} imports host functions with the wrong type: {'; '.join(problems)}", mismatched
        )
    _trial_link(engine, compiled, name)


# The trial store admits no core instance, so instantiation stops with this
# error right after the linker has type-checked every import.
_TRIAL_STOP = "instance count too high"
_IMPORT_NAME = re.compile(r"imports \w+ `([^`]+)`")


def _trial_link(engine: Engine, compiled: wc.Component, name: str) -> None:
    store = wasmtime.Store(engine.raw)
    try:
        store.set_limits(instances=0)
        store.set_wasi(wasmtime.WasiConfig())
        engine.linker.instantiate(store, compiled)
    except WasmtimeError as exc:
        text = str(exc)
        if _TRIAL_STOP in text:
            return
        match = _IMPORT_NAME.search(text)
        imp = match.group(1) if match else "?"
        chain = error_chain(exc)
        if "wrong type" in text and "implementation is missing" not in text:
            raise ImportMismatchError(f"{name} imports `{imp}` with the wrong type: {chain}", [imp]) from exc
        raise MissingImportsError(f"{name} imports what the host does not provide: {chain}", [imp]) from exc
    finally:
        store.close()


def known_digest(cache: Path | None, path: Path) -> tuple[str, Layout] | None:
    """The SHA-256 and layout recorded for ``path`` if the file is
    unchanged since (same size, inode, mtime and ctime), so a cached load
    need not read 18 MB."""
    if cache is None:
        return None
    try:
        entry = _index_entry(cache, path)
        recorded = entry.read_text().split()
        if len(recorded) == 4 and recorded[0] == _stat_key(path):
            return recorded[1], Layout(int(recorded[2]), int(recorded[3]))
    except (OSError, ValueError):
        pass
    return None


def remember_digest(cache: Path | None, path: Path, digest: str, layout: Layout) -> None:
    if cache is None:
        return
    try:
        entry = _index_entry(cache, path)
        entry.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=entry.parent, suffix=".tmp")
        with os.fdopen(fd, "w") as out:
            out.write(f"{_stat_key(path)} {digest} {layout.memories} {layout.tables}")
        os.replace(tmp, entry)
    except OSError:
        pass


def _index_entry(cache: Path, path: Path) -> Path:
    return cache / "index" / hashlib.sha256(str(path.resolve()).encode()).hexdigest()


def _stat_key(path: Path) -> str:
    st = path.stat()
    return f"{st.st_size}:{st.st_ino}:{st.st_mtime_ns}:{st.st_ctime_ns}"


_CAUSE_NUMBER = re.compile(r"^\d+:\s*")


def error_chain(exc: BaseException) -> str:
    """A wasmtime error with its whole cause chain on one line (``a: b: c``),
    without the wasm backtrace."""
    parts: list[str] = []
    skipping = False
    for raw in str(exc).splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("wasm backtrace:"):
            skipping = True
            continue
        if line == "Caused by:":
            skipping = False
            continue
        if skipping:
            continue
        line = _CAUSE_NUMBER.sub("", line)
        if line and line not in parts:
            parts.append(line)
    return ": ".join(parts) or type(exc).__name__


def wasmtime_version() -> str:
    return getattr(wasmtime, "__version__", None) or _dist_version()


def _dist_version() -> str:
    from importlib.metadata import version

    return version("wasmtime")
