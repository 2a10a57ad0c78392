"""Guest stdout and stderr, routed to the actor's logger line by line."""

from __future__ import annotations

import logging
from typing import Any

from ._host import RECORD_OVERHEAD

__all__ = ["GuestOutput"]

_MAX_LINE = 8192
_TAIL = 4096


class GuestOutput:
    """Receives WASI stdout/stderr writes (from wasmtime, on the calling
    thread) and logs each complete line; never mixes guest output into the
    host's own stdout."""

    def __init__(
        self, logger: logging.Logger | logging.LoggerAdapter[Any], budget: int | None = None
    ) -> None:
        self.logger = logger
        self._partial = {"stdout": b"", "stderr": b""}
        #: stderr written since the last :meth:`mark`, capped (for crash reports).
        self.stderr_tail = b""
        #: Bytes one call may log (``None``: unbounded); lines past it are
        #: dropped, with one warning. WASI delivers output on its own thread,
        #: so a call's last lines may count against the next call's budget.
        self.budget = budget
        self._logged = 0
        self._dropping = False

    def mark(self) -> None:
        """Start a new call: forget the previous call's stderr tail and budget."""
        if self.stderr_tail:
            self.stderr_tail = b""
        self._logged = 0
        self._dropping = False

    def stdout(self, data: bytes) -> None:
        self._write("stdout", logging.INFO, data)

    def stderr(self, data: bytes) -> None:
        self.stderr_tail = (self.stderr_tail + data)[-_TAIL:]
        self._write("stderr", logging.WARNING, data)

    def _write(self, stream: str, level: int, data: bytes) -> None:
        # Called through a ctypes callback: must not raise.
        try:
            buf = self._partial[stream] + data
            *lines, rest = buf.split(b"\n")
            if len(rest) > _MAX_LINE:
                lines.append(rest)
                rest = b""
            self._partial[stream] = rest
            for line in lines:
                cost = len(line) + RECORD_OVERHEAD  # empty lines are not free
                if self.budget is not None and self._logged + cost > self.budget:
                    if not self._dropping:
                        self._dropping = True
                        self.logger.warning(
                            "dropping stdout/stderr: one call may print %d bytes", self.budget
                        )
                    continue
                self._logged += cost
                self.logger.log(level, "%s: %s", stream, line[:_MAX_LINE].decode(errors="replace"))
        except Exception:  # noqa: BLE001 - a logging failure must not reach wasmtime
            pass

    def flush(self) -> None:
        """Log any unterminated last line."""
        for stream, level in (("stdout", logging.INFO), ("stderr", logging.WARNING)):
            if self._partial[stream]:
                self._write(stream, level, b"\n")
