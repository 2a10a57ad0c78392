"""The epoch ticker: POSIX timers advance the epoch without Python, and a
stall of their notifications (a busy machine keeping glibc's notification
thread off the CPU) costs no tick as long as it is shorter than the window."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from wasmactors.runtime import Engine

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="POSIX timers: Linux only")

# A child that counts ticks with sem_post as the notification function (the
# same path as wasmtime_engine_increment_epoch, but a count it can read) and
# prints how many ticks it lost over one second.
_CHILD = """
import ctypes, sys, time
from wasmactors.runtime._ticker import TimerSet
libc, pylibc = ctypes.CDLL("libc.so.6"), ctypes.PyDLL("libc.so.6")
sem = ctypes.create_string_buffer(32)
libc.sem_init(sem, 0, 0)
tick = 0.005
post = ctypes.cast(libc.sem_post, ctypes.c_void_p).value
timers = TimerSet(post, ctypes.addressof(sem), tick, float(sys.argv[1]))
start = time.monotonic()
print(len(timers), flush=True)
time.sleep(1.0)
count = ctypes.c_int()
pylibc.sem_getvalue(sem, ctypes.byref(count))
elapsed = time.monotonic() - start
timers.close()
print(round(elapsed / tick - count.value), flush=True)
"""


def _ticks_lost_to_a_stall(window: float) -> tuple[int, int]:
    """Timers of ``window`` seconds in a child stopped for 0.2 s: (timers, ticks lost)."""
    child = subprocess.Popen([sys.executable, "-c", _CHILD, str(window)], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    timers = int(child.stdout.readline())
    time.sleep(0.3)  # the overlap this test is about: a stall in the middle of the second
    os.kill(child.pid, signal.SIGSTOP)
    time.sleep(0.2)
    os.kill(child.pid, signal.SIGCONT)
    out, _ = child.communicate(timeout=30)
    assert child.returncode == 0
    return timers, int(out)


def test_a_stall_shorter_than_the_window_loses_no_tick() -> None:
    """Stopped for 0.2 s (40 ticks of 5 ms), phased timers over a 0.5 s window deliver
    every tick after it; a single timer merges the missed ones into one and loses them."""
    timers, lost = _ticks_lost_to_a_stall(0.5)
    assert timers == 100
    assert lost <= 5, lost
    timers, lost = _ticks_lost_to_a_stall(0)
    assert timers == 1
    assert lost >= 20, lost


def test_the_engine_ticks_with_phased_posix_timers_and_stops_them() -> None:
    """An engine's ticker is native (no Python per tick) with one timer per tick of its window."""
    engine = Engine(cache_dir=None)
    assert engine.ticker.native
    assert engine.ticker.timers == 50  # 0.1 s window / 2 ms tick
    engine.close()
    assert engine.ticker.timers == 0
