"""The compiled-artifact cache's bounds: a size cap with least-recently-used
eviction, and what ``wasmactors cache`` lists and prunes.

An artifact is ``<digest>-<fingerprint>.cwasm`` in the cache folder, with the
component's file name beside it in ``.name``; its modification time is when
it was last used (a load touches it).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import msgspec

from ._limits import MiB, parse_size

__all__ = ["DEFAULT_MAX_CACHE", "CacheEntry", "cache_entries", "max_cache_size", "prune_cache", "touch"]

#: The default cap on the artifacts' total size (``$WASMACTORS_CACHE_MAX`` overrides it).
DEFAULT_MAX_CACHE = 512 * MiB
_SUFFIX = ".cwasm"


class CacheEntry(msgspec.Struct, frozen=True):
    """One compiled artifact."""

    path: Path
    #: The component file it was compiled from, if recorded.
    name: str
    size: int
    #: When it was last loaded or written (seconds since the epoch).
    last_used: float


def max_cache_size() -> int:
    """``$WASMACTORS_CACHE_MAX`` (e.g. ``"1 GiB"``), else :data:`DEFAULT_MAX_CACHE`."""
    value = os.environ.get("WASMACTORS_CACHE_MAX")
    if not value:
        return DEFAULT_MAX_CACHE
    try:
        return parse_size(value)
    except ValueError as exc:
        raise ValueError(f"WASMACTORS_CACHE_MAX: {exc}") from exc


def cache_entries(cache: Path) -> list[CacheEntry]:
    """Every artifact in ``cache``, most recently used first."""
    entries = []
    for path in cache.glob(f"*{_SUFFIX}") if cache.is_dir() else ():
        try:
            st = path.stat()
        except OSError:
            continue
        try:
            name = path.with_suffix(".name").read_text().strip()
        except OSError:
            name = ""
        entries.append(CacheEntry(path, name, st.st_size, st.st_mtime))
    return sorted(entries, key=lambda e: e.last_used, reverse=True)


def prune_cache(cache: Path, max_size: int) -> list[CacheEntry]:
    """Delete the least recently used artifacts until the rest fit in
    ``max_size`` bytes; returns what was deleted."""
    kept, removed = 0, []
    for entry in cache_entries(cache):
        if kept + entry.size <= max_size:
            kept += entry.size
            continue
        entry.path.unlink(missing_ok=True)
        entry.path.with_suffix(".name").unlink(missing_ok=True)
        removed.append(entry)
    return removed


def touch(path: Path) -> None:
    """Mark an artifact as just used."""
    try:
        now = time.time()
        os.utime(path, (now, now))
    except OSError:
        pass  # a read-only cache still serves
