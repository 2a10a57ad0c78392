"""The root of every error wasmactors raises, below all three layers.

``runtime``, ``messaging`` and ``actors`` each keep their own error tree in
their own ``_errors`` module; each tree's root derives from
:class:`WasmActorsError`, which lives here so that no layer has to import
another one just for its base class.
"""

from __future__ import annotations

__all__ = ["WasmActorsError"]


class WasmActorsError(Exception):
    """Base class of every error raised by wasmactors."""
