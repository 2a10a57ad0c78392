"""The epoch ticker: advances an engine's epoch every tick, without Python.

Call timeouts are epoch deadlines, so they fire only as promptly as the epoch
advances. A Python thread that increments it must win the GIL on every tick
and falls behind while other threads hold it (a 50 ms timeout fired after
53-88 ms, up to 375 ms, under load). Instead a POSIX timer with
``SIGEV_THREAD`` calls wasmtime's C function
``wasmtime_engine_increment_epoch`` directly, with the engine as its
argument: no Python runs per tick, so the GIL plays no part.

Where POSIX timers are not available (macOS has no ``timer_create``), a
Python thread ticks instead, and says so in :attr:`EpochTicker.native`.

Lifetime: a notification already under way when the timer is deleted may
still run. The timer therefore holds its own handle on the engine (a
``wasmtime_engine_clone``), which is deliberately never freed: a late tick
then advances the epoch of an engine nobody uses any more instead of
touching freed memory. It costs one small allocation per closed engine.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from ctypes import c_int, c_long, c_void_p

import wasmtime
from wasmtime import _ffi as ffi

__all__ = ["EpochTicker"]

_CLOCK_MONOTONIC = 1
_SIGEV_THREAD = 2


class _SigEvent(ctypes.Structure):
    # glibc's struct sigevent on 64-bit Linux: 64 bytes.
    _fields_ = [
        ("value", c_void_p),  # union sigval: the engine pointer
        ("signo", c_int),
        ("notify", c_int),
        ("function", c_void_p),  # void (*)(union sigval)
        ("attributes", c_void_p),  # pthread_attr_t *
        ("_pad", c_int * 8),
    ]


class _TimeSpec(ctypes.Structure):
    _fields_ = [("sec", c_long), ("nsec", c_long)]


class _ITimerSpec(ctypes.Structure):
    _fields_ = [("interval", _TimeSpec), ("value", _TimeSpec)]


def _libc() -> ctypes.CDLL | None:
    if not sys.platform.startswith("linux") or ctypes.sizeof(c_void_p) != 8:
        return None
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        for name in ("timer_create", "timer_settime", "timer_delete"):
            getattr(libc, name)
    except (OSError, AttributeError):
        return None
    libc.timer_create.argtypes = [c_int, ctypes.POINTER(_SigEvent), ctypes.POINTER(c_void_p)]
    libc.timer_settime.argtypes = [c_void_p, c_int, ctypes.POINTER(_ITimerSpec), c_void_p]
    libc.timer_delete.argtypes = [c_void_p]
    return libc


_LIBC = _libc()
_INCREMENT = ctypes.cast(ffi.dll.wasmtime_engine_increment_epoch, c_void_p).value
_clone = ffi.dll["wasmtime_engine_clone"]  # a fresh function object: wasmtime-py's own keeps its argtypes
_clone.restype = c_void_p
_clone.argtypes = [c_void_p]


class EpochTicker:
    """Advances ``engine``'s epoch every ``tick`` seconds until :meth:`close`
    (``native=False`` forces the Python thread, for comparison)."""

    def __init__(self, engine: wasmtime.Engine, tick: float, *, native: bool = True) -> None:
        self.tick = tick
        self._timer: c_void_p | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        #: True when a POSIX timer ticks (no Python per tick).
        self.native = native and _LIBC is not None and self._start_timer(engine)
        if not self.native:
            self._thread = threading.Thread(
                target=self._run, args=(engine,), name="wasmactors-epoch", daemon=True
            )
            self._thread.start()

    def _start_timer(self, engine: wasmtime.Engine) -> bool:
        assert _LIBC is not None
        handle = _clone(ctypes.cast(engine.ptr(), c_void_p))  # never freed: see the module docs
        event = _SigEvent(value=handle, notify=_SIGEV_THREAD, function=_INCREMENT)
        timer = c_void_p()
        if _LIBC.timer_create(_CLOCK_MONOTONIC, ctypes.byref(event), ctypes.byref(timer)) != 0:
            return False
        sec, frac = divmod(self.tick, 1.0)
        period = _TimeSpec(int(sec), max(1, int(frac * 1e9)) if not sec else int(frac * 1e9))
        spec = _ITimerSpec(interval=period, value=period)
        if _LIBC.timer_settime(timer, 0, ctypes.byref(spec), None) != 0:
            _LIBC.timer_delete(timer)
            return False
        self._timer = timer
        return True

    def _run(self, engine: wasmtime.Engine) -> None:
        stop, tick = self._stop, self.tick
        while not stop.wait(tick):
            engine.increment_epoch()

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        """Stop ticking. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._timer is not None:
            assert _LIBC is not None
            _LIBC.timer_delete(self._timer)
            self._timer = None
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join()
