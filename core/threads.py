"""How many CPU threads torch may use for a run, decided by workload size and by how
many runs are in flight in this process.

Why this exists: torch's default is one intra-op thread per core. On a small shared
machine that is a trap: measured on the 2-core CPU this app targets, a 3000-step loop
on 4000 points took 8 s with one thread and 58-120 s with two threads while another
process held one core (threads spin-waiting on a descheduled peer). A Streamlit server
training for two sessions at once is exactly that situation.

The policy:
- small workloads (elementwise work on at most ~10^6 floats per op, as in cases 1, 3
  and 4) always use one torch thread: a second thread buys little and risks the trap
  (case 1's compiled step is the exception: one parallel region a step, not dozens, used
  only while `threads_for(heavy=True)` gives it the cores and only while it times faster:
  core/kernels.py's HeadStep);
- a heavy workload (big matmuls, as in case 2) gets `cores // runs_in_flight` threads,
  re-read at every progress check, so a second session arriving halves the first
  one's threads instead of oversubscribing the cores;
- a workload bound by the Python interpreter lock (thousands of microsecond-sized ops,
  as in cases 3 and 4) runs one at a time: two at once cannot beat 2x anyway, and they
  paid for every hand-over of the lock on top (measured: 0.11 s alone, 0.30 s each
  when two shared it; queued, the second finishes at about 2x).

`torch.set_num_threads` sets the calling thread's OpenMP/MKL thread count (and the
default for threads not yet started); each run calls it from its own thread.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch


def available_cores() -> int:
    """Cores this process may run on (a container's CPU set, not the host's count)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


class ThreadPolicy:
    def __init__(self, cores: int | None = None):
        self.cores = cores or available_cores()
        self._lock = threading.Lock()
        self._in_flight = 0
        self._serial = threading.Lock()  # held by the one interpreter-bound run in progress

    @property
    def in_flight(self) -> int:
        return self._in_flight

    def threads_for(self, heavy: bool) -> int:
        if not heavy:
            return 1
        return max(1, self.cores // max(1, self._in_flight))

    def apply(self, heavy: bool) -> int:
        """Set this thread's torch thread count for a run of this kind; return it."""
        n = self.threads_for(heavy)
        if torch.get_num_threads() != n:
            torch.set_num_threads(n)
        return n

    @contextmanager
    def share(self, heavy: bool, serial: bool = False) -> Iterator[None]:
        """Count a run as in flight while the block runs, with its threads set. serial: wait
        until no other serial run is in progress (interpreter-bound work queues)."""
        with self._serial if serial else contextlib.nullcontext():
            with self._lock:
                self._in_flight += 1
            try:
                self.apply(heavy)
                yield
            finally:
                with self._lock:
                    self._in_flight -= 1


# The one process-wide policy: torch's thread pool is process-wide state, so the count
# of runs sharing it must be too. All access goes through the lock above.
POLICY = ThreadPolicy()


class Stopped(Exception):
    """A run ended by its Stop button (or its caller) at a progress check."""


class Gate:
    """At most `slots` heavy runs at once in this process; the others wait in line, first come
    first served. While a run waits, `on_wait(position)` is called every `poll_s` seconds
    (1 = next in line): the app shows the position there, and may raise to give up waiting.
    """

    def __init__(self, slots: int | None = None, poll_s: float = 0.25):
        self.slots = slots or available_cores()
        self.poll_s = poll_s
        self._cond = threading.Condition()
        self._running = 0
        self._line: list[object] = []  # tickets of the runs waiting, in arrival order

    @property
    def running(self) -> int:
        return self._running

    @property
    def waiting(self) -> int:
        return len(self._line)

    @contextmanager
    def slot(self, on_wait: Callable[[int], None] | None = None) -> Iterator[None]:
        ticket = object()
        with self._cond:
            self._line.append(ticket)
        try:
            while True:
                with self._cond:
                    position = self._line.index(ticket)
                    if position == 0 and self._running < self.slots:
                        self._line.pop(0)
                        self._running += 1
                        self._cond.notify_all()
                        break
                    self._cond.wait(self.poll_s)
                if on_wait is not None:
                    on_wait(position + 1)
        except BaseException:
            with self._cond:
                if ticket in self._line:
                    self._line.remove(ticket)
                self._cond.notify_all()
            raise
        try:
            yield
        finally:
            with self._cond:
                self._running -= 1
                self._cond.notify_all()


def release_freed_memory() -> bool:
    """Hand the heap's free memory back to the OS (glibc's malloc_trim). Called after each run:
    `keep_freed_memory` keeps freed blocks for speed *during* a run, and without this an idle
    server would hold on to the peak of its biggest run. False where there is no glibc."""
    try:
        return ctypes.CDLL("libc.so.6").malloc_trim(0) == 1
    except (OSError, AttributeError):
        return False


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to reuse freed big blocks instead of returning them to the OS.

    A training step allocates and frees several 2 MB activations; by default glibc
    serves each from a fresh mmap, and touching fresh pages costs page faults (measured:
    a third of case 1's step time went to the kernel). This is the in-process equivalent
    of PyTorch's advice to run CPU training under jemalloc or tcmalloc. Idempotent;
    returns False where there is no glibc (macOS, Windows, musl).
    """
    try:
        libc = ctypes.CDLL("libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    m_trim_threshold, m_mmap_threshold = -1, -3
    ok = mallopt(m_mmap_threshold, 256 << 20) == 1  # blocks up to 256 MB come from the heap
    return mallopt(m_trim_threshold, 1 << 30) == 1 and ok  # keep up to 1 GB of freed heap


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat float32 values below 1.2e-38 as zero in this thread while the block runs.

    Saturated units produce gradients that underflow into denormal numbers, and x86
    arithmetic on denormals is up to 100x slower: measured, the `fixed` sine run took
    4-11 s with them and 4 s without. The flag is per thread (MXCSR); it is cleared after,
    which is every thread's default.
    """
    supported = torch.set_flush_denormal(True)  # returns whether the CPU supports it
    try:
        yield
    finally:
        if supported:
            torch.set_flush_denormal(False)
