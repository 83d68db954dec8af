"""This machine's speed against the CPU the cost models were calibrated on, so that an estimate in
seconds (core.case.Cost) means seconds here.

The cases' cost models were fitted to step times measured on a 2-core AMD EPYC. The same code runs
about 2.2x faster on a 2-core AVX-512 Xeon (measured on 2026-12-01, the app's own work: poly's
scan 2.1x, linreg's sweep 2.2x, a CIFAR epoch 2.3x, the float32 matmul peak 2.2x), and a hosted
demo may be slower than either. Unscaled, a fast machine's estimates ran 4-5x over the real time
(poly), refusing runs well within the limit and asking to confirm short ones.

`factor()` is this machine's time for a small fixed probe (small ops, as the interpreter-bound cases
run, and a matmul, as case 2 runs) over the reference CPU's time for it: the best of five (~20 ms), with
one torch thread (the per-core speed: the cost models assume the thread policy's own counts). A probe
taken while the machine is busy reads slow (up to 10x, measured: a CI run whose first probe fell in a
load spike estimated every run 5-18x too long, refused none but asked to confirm them and skipped the
seed set), and load only ever slows it: so the factor is the best probe seen, probed again at most
every REPROBE_S while estimates are asked for. High estimates are the safe side for a limit, and they
come down at the next probe.
"""

from __future__ import annotations

import math
import threading
import time

# the probe's best time on the reference CPU (the 2-core AMD EPYC the cost models were fitted on): its time on
# the Xeon, 2.65 ms (2.60-2.68 over three processes), times the measured ratio of the machines' run times, 2.2
REFERENCE_S = 5.8e-3
BOUNDS = (0.2, 5.0)  # a factor outside these is a broken probe, not a machine
REPROBE_S = 30.0  # a new probe at most this often (20 ms each): the best one counts


def _probe_once(a, b, x, w) -> float:
    start = time.perf_counter()
    for _ in range(20):
        a @ b  # 16 MFLOP
    for _ in range(200):  # an epoch of the small cases: a few microsecond-sized ops
        r = x @ w - 1.0
        (r * r).sum()
    return time.perf_counter() - start


def probe() -> float:
    """The probe's best time of five, in seconds, with one torch thread."""
    import torch  # here: the cost models are imported where torch is not (core.case)

    generator = torch.Generator().manual_seed(0)
    a, b = torch.randn(128, 256, generator=generator), torch.randn(256, 256, generator=generator)
    x, w = torch.randn(30, 5, generator=generator), torch.randn(5, 1, generator=generator)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _probe_once(a, b, x, w)  # warm: first-call allocations and dispatch caches
        return min(_probe_once(a, b, x, w) for _ in range(5))
    finally:
        torch.set_num_threads(threads)


class Speed:
    """The best probe time seen in this process (a busy machine only reads slower), probed again when the
    last probe is REPROBE_S old; thread-safe: sessions ask for estimates from their own threads."""

    def __init__(self, measure=probe, every_s: float = REPROBE_S, clock=time.monotonic):
        self._measure, self._every, self._clock = measure, every_s, clock
        self._lock = threading.Lock()
        self._best, self._at = math.inf, -math.inf

    def factor(self) -> float:
        """Seconds here per second on the reference CPU (1.0 there, ~0.45 on the Xeon), within BOUNDS."""
        with self._lock:
            now = self._clock()
            if now - self._at >= self._every:
                self._at = now
                seconds = self._measure()
                if math.isfinite(seconds) and seconds > 0:
                    self._best = min(self._best, seconds)
            best = self._best
        ratio = best / REFERENCE_S
        return min(max(ratio, BOUNDS[0]), BOUNDS[1]) if math.isfinite(ratio) else 1.0


_SPEED = Speed()


def factor() -> float:
    """This process's `Speed.factor()`."""
    return _SPEED.factor()


def scaled(reference_seconds: float) -> float:
    """A cost model's seconds on the reference CPU, as seconds on this machine."""
    return reference_seconds * factor()
