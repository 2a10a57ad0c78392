"""The epoch ticker: advances an engine's epoch every tick, without Python.

Call timeouts are epoch deadlines, so they fire only as promptly as the epoch
advances. A Python thread that increments it must win the GIL on every tick
and falls behind while other threads hold it (a 50 ms timeout fired after
53-88 ms, up to 375 ms, under load). Instead a POSIX timer with
``SIGEV_THREAD`` calls wasmtime's C function
``wasmtime_engine_increment_epoch`` directly, with the engine as its
argument: no Python runs per tick, so the GIL plays no part.

A periodic POSIX timer whose notification is late does not queue the
expirations it missed: they are merged into one (the timer's "overrun"). A
busy machine that keeps glibc's notification thread off the CPU for 30 ms
would so cost 14 ticks for good, and every call under way would time out
14 ticks late. The ticker therefore runs ``WINDOW / tick`` timers (50 at the
default 2 ms tick), each firing once per window, their phases one tick
apart: together they tick every ``tick``, and a stall shorter than the
window loses no tick, because every timer that expired during it still
delivers its one notification when the stall ends. A call's timeout is then
late by the longest stall, not by the sum of all stalls during the call.

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

__all__ = ["WINDOW", "EpochTicker", "TimerSet"]

_CLOCK_MONOTONIC = 1
_SIGEV_THREAD = 2
_TIMER_ABSTIME = 1

#: The longest stall of the timer notifications that loses no tick, in seconds.
WINDOW = 0.1


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
    libc.clock_gettime.argtypes = [c_int, ctypes.POINTER(_TimeSpec)]
    libc.timer_settime.argtypes = [c_void_p, c_int, ctypes.POINTER(_ITimerSpec), c_void_p]
    libc.timer_delete.argtypes = [c_void_p]
    return libc


_LIBC = _libc()
_INCREMENT: int = ctypes.cast(ffi.dll.wasmtime_engine_increment_epoch, c_void_p).value or 0
_clone = ffi.dll["wasmtime_engine_clone"]  # a fresh function object: wasmtime-py's own keeps its argtypes
_clone.restype = c_void_p
_clone.argtypes = [c_void_p]


#: At most this many timers per ticker (a very short tick gets a shorter window).
_MAX_TIMERS = 100


def _timespec(ns: int) -> _TimeSpec:
    return _TimeSpec(ns // 10**9, ns % 10**9)


class TimerSet:
    """POSIX timers that call the C function ``function(value)`` on glibc's
    notification threads every ``tick`` seconds, in ``window / tick`` phases
    one tick apart (see the module docs), until :meth:`close`. Raises
    ``OSError`` if not even one timer can be made."""

    def __init__(self, function: int, value: int, tick: float, window: float) -> None:
        assert _LIBC is not None
        self._timers: list[c_void_p] = []
        self._event = _SigEvent(value=value, notify=_SIGEV_THREAD, function=function)
        tick_ns = max(1, round(tick * 1e9))
        count = max(1, min(_MAX_TIMERS, round(window / tick)))
        if not self._arm(tick_ns, count):
            # Out of timers (RLIMIT_SIGPENDING): one timer, which ticks but
            # loses the ticks of a stall.
            self.close()
            if not self._arm(tick_ns, 1):
                self.close()
                raise OSError(ctypes.get_errno(), "cannot create a POSIX timer")

    def _arm(self, tick_ns: int, count: int) -> bool:
        assert _LIBC is not None
        now = _TimeSpec()
        if _LIBC.clock_gettime(_CLOCK_MONOTONIC, ctypes.byref(now)) != 0:
            return False
        first = now.sec * 10**9 + now.nsec + tick_ns
        for i in range(count):
            timer = c_void_p()
            if _LIBC.timer_create(_CLOCK_MONOTONIC, ctypes.byref(self._event), ctypes.byref(timer)) != 0:
                return False
            # Timer i fires first at `first + i` ticks, then every `count` ticks.
            spec = _ITimerSpec(interval=_timespec(tick_ns * count), value=_timespec(first + i * tick_ns))
            if _LIBC.timer_settime(timer, _TIMER_ABSTIME, ctypes.byref(spec), None) != 0:
                _LIBC.timer_delete(timer)
                return False
            self._timers.append(timer)
        return True

    def __len__(self) -> int:
        return len(self._timers)

    def close(self) -> None:
        """Delete the timers (a notification already under way may still run)."""
        assert _LIBC is not None
        while self._timers:
            _LIBC.timer_delete(self._timers.pop())


class EpochTicker:
    """Advances ``engine``'s epoch every ``tick`` seconds until :meth:`close`,
    losing no tick to a stall of the timers' notifications shorter than
    ``window`` seconds (``window=0``: one timer, which loses them;
    ``native=False`` forces the Python thread: both for comparison)."""

    def __init__(
        self, engine: wasmtime.Engine, tick: float, *, native: bool = True, window: float = WINDOW
    ) -> None:
        self.tick = tick
        self._timers: TimerSet | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if native and _LIBC is not None:
            handle = _clone(ctypes.cast(engine.ptr(), c_void_p))  # never freed: see the module docs
            try:
                self._timers = TimerSet(_INCREMENT, handle, tick, window)
            except OSError:
                self._timers = None
        #: True when POSIX timers tick (no Python per tick).
        self.native = self._timers is not None
        if not self.native:
            self._thread = threading.Thread(
                target=self._run, args=(engine,), name="wasmactors-epoch", daemon=True
            )
            self._thread.start()

    @property
    def timers(self) -> int:
        """POSIX timers ticking (0 for the Python thread)."""
        return 0 if self._timers is None else len(self._timers)

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
        if self._timers is not None:
            self._timers.close()
        thread = self._thread
        if thread is not None and thread.is_alive() and thread is not threading.current_thread():
            thread.join()
