"""Compiled kernels for the layer that dominates case 1: a hidden layer fed by a single input,
followed by a single linear output (1-128-1 on 4000 points, as posted).

Why: that layer's work is 512k activations a step, and in torch every elementwise pass over them is a
separate trip through memory; even the sigmoid form of tanh in core/nets.py costs 2.1 ms a step on one
thread of the 2-core CPU this app targets, and a plain autograd loop 4.2 ms. Compiled by numba into one
pass for the forward (affine map, tanh, output sum) and one for the backward (every gradient reduced
on the fly), the layer costs about 0.6 ms a step. numba (a well-kept JIT, wheels wherever torch has
them) compiles on first use (a few seconds) and caches the machine code beside this file when it may
(the kernels are module-level functions for that: a closure's cache entry is never found again).

A training step (`HeadStep`) runs nothing else on the data: forward, the loss's derivative written out
as autograd takes it, and backward, over two fixed halves of the rows, on two cores when the run has
them (0.35 ms a step on the AMD EPYC; 0.115 ms on the AVX-512 Xeon, with 512-bit vectors and the
backward taking four rows a pass), and the optimizer's update (`updater`: torch's SGD, Adam and RMSprop
maths on torch's own state, ~10 us instead of torch's ~0.3 ms of bookkeeping).

tanh is Eigen's float32 rational approximation (the one XLA and TensorFlow use) up to |z| = 9, and
exactly +-1 beyond, as float32 tanh is: within 3e-7 of the exact value everywhere, torch.tanh's
rounding level. The backward takes tanh' = 1 - a^2 from the output, as autograd does; sums over the
data are accumulated in float32 blocks added in float64. tests/test_nets.py compares values and
gradients with float64 autograd, NaN and saturation included, the update with torch's optimizers, and
the halves in series with the halves at once (the same bits); tests/test_sine.py whole runs with the
torch path.

The sharpness measurement's Hessian-vector product of the same layer (`head_hessian`, Pearlmutter's
R-operator written out) is compiled too: one pass over the activations per product instead of a double
backward through the torch layers (~10x fewer seconds), over the same two halves, at once where that
is faster; tests/test_nets.py checks it against float64 double backward and the halves in series
against the halves at once, tests/test_sine.py the sharpness of whole runs.

Used only where it applies (numba importable, CPU, float32, one input, tanh / relu / identity); every
other layer runs the torch code in core/nets.py. CLINIC_KERNELS=0 turns it off (the tests' oracle).
"""

from __future__ import annotations

import functools
import math
import os
import threading
import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

ACTS = {"identity": 0, "tanh": 1, "relu": 2}
BLOCK = 64  # rows summed in float32 before adding to the float64 totals

try:  # optional: without numba every layer takes the torch path
    import numba
except ImportError:  # pragma: no cover - numba is in requirements.txt
    numba = None


def applies(x: torch.Tensor, w1: torch.Tensor, act: str, *others: torch.Tensor | None) -> bool:
    """Whether the compiled pair computes this layer: numba there and on, one float32 input on the CPU, and
    every other tensor given (`others`: b1, w2, b2, None where absent) float32 on the CPU too."""
    return (
        numba is not None
        and os.environ.get("CLINIC_KERNELS", "1") != "0"
        and act in ACTS
        and x.dim() == 2
        and x.shape[1] == 1
        and all(t is None or (t.dtype == torch.float32 and t.device.type == "cpu") for t in (x, w1, *others))
    )


class Kernels(NamedTuple):
    forward: Callable
    forwards: Callable  # parallel
    backward: Callable
    step: Callable
    steps: Callable  # parallel
    gather: Callable
    hessian: Callable
    hessians: Callable  # parallel
    adam: Callable
    rmsprop: Callable
    sgd: Callable
    count_flat: Callable


def _full_vector_width() -> None:
    """Let LLVM use the CPU's whole vector width. Its tuning for Intel CPUs with AVX-512 prefers 256-bit
    vectors (clang's -mprefer-vector-width=256); these kernels are long runs of float32 arithmetic over
    rows of 128, which 512-bit vectors take in half the instructions: a 1-128-1 training step on two
    cores of an AVX-512 Xeon took 0.115 ms instead of 0.135 (BENCHMARKS.md). Set once, before numba
    compiles anything in this process (its target machine is made at the first compilation, and its
    on-disk cache is keyed by these features); an explicit NUMBA_CPU_FEATURES is left as it is."""
    if numba.config.CPU_FEATURES is not None or os.environ.get("NUMBA_CPU_FEATURES"):
        return
    from llvmlite import binding

    try:
        features = binding.get_host_cpu_features()
    except RuntimeError:  # LLVM cannot read them on this host: numba's own choice stands
        return
    if features.get("avx512f"):
        numba.config.CPU_FEATURES = features.flatten() + ",-prefer-256-bit"


if numba is not None:
    _full_vector_width()
if numba is not None and numba.config.THREADING_LAYER not in ("tbb", "omp", "safe", "threadsafe"):
    # the default falls back to numba's workqueue, which aborts the process when two threads (two
    # sessions' runs) launch parallel kernels at once; with none thread-safe, HeadStep runs in series
    numba.config.THREADING_LAYER = "threadsafe"
# fastmath without nnan/ninf: a diverging run's NaN and inf must come out as torch's would (its
# divergence is detected at the same step); reassoc lets the sums vectorise
_FAST = {"nsz", "arcp", "contract", "afn", "reassoc"}
_OPTIONS = {"nogil": True, "fastmath": _FAST, "error_model": "numpy", "boundscheck": False}


def _jit(fn, **extra):
    """numba's compiled fn (module-level, so that its machine code is cached across processes), or fn
    itself without numba (never called then: `applies` is False). `extra` adds to or overrides _OPTIONS."""
    if numba is None:
        return fn
    options = {**_OPTIONS, **extra}
    try:
        return numba.njit(cache=True, **options)(fn)
    except RuntimeError:  # no writable cache location: compile in memory each process
        return numba.njit(**options)(fn)


@functools.partial(_jit, inline="always")
def _tanh(z):
    # Eigen's float tanh rational (odd, 13/6), within 1e-8 of tanh up to |z| = 9; beyond it exactly
    # +-1, as float32 tanh is from 9.01 on (a saturated unit's derivative 1 - a^2 is then 0, as in torch)
    one, c = np.float32(1), np.float32(9)
    y = c if z > c else z  # written so that a NaN stays NaN
    y = -c if y < -c else y
    y2 = y * y
    p = np.float32(-2.76076847742355e-16)
    p = p * y2 + np.float32(2.00018790482477e-13)
    p = p * y2 + np.float32(-8.60467152213735e-11)
    p = p * y2 + np.float32(5.12229709037114e-08)
    p = p * y2 + np.float32(1.48572235717979e-05)
    p = p * y2 + np.float32(6.37261928875436e-04)
    p = p * y2 + np.float32(4.89352455891786e-03)
    q = np.float32(1.19825839466702e-06)
    q = q * y2 + np.float32(1.18534705686654e-04)
    q = q * y2 + np.float32(2.26843463243900e-03)
    q = q * y2 + np.float32(4.89352518554385e-03)
    t = y * p / q
    t = one if z >= c else t
    return -one if z <= -c else t


@functools.partial(_jit, inline="always")
def _slope(a, act):
    """act'(u) from the output a = act(u), as autograd takes it: 1 - a^2 (tanh), 0 where a <= 0 (relu)."""
    if act == 1:
        return np.float32(1) - a * a
    if act == 2:
        return np.float32(0) if a <= 0 else np.float32(1)
    return np.float32(1)


@_jit
def _forward(x, w, b, v, c, act, a, z, lo, hi):
    """For the rows lo..hi: a[i, j] = act(x[i] w[j] + b[j]); z[i] = sum_j a[i, j] v[j] + c."""
    h = a.shape[1]
    for i in range(lo, hi):
        xi = x[i]
        row = a[i]
        s = np.float32(0)
        for j in range(h):
            u = xi * w[j] + b[j]
            if act == 1:
                u = _tanh(u)
            elif act == 2:
                u = np.float32(0) if u < 0 else u  # NaN stays NaN, as in torch.relu
            row[j] = u
            s += u * v[j]
        z[i] = s + c


@functools.partial(_jit, inline="always")
def _flush(part, bw, bb, bv):
    """Add a block's float32 sums to the float64 totals part (3, h), and zero them for the next block."""
    for j in range(bw.shape[0]):
        part[0, j] += bw[j]
        part[1, j] += bb[j]
        part[2, j] += bv[j]
    bw[:] = 0
    bb[:] = 0
    bv[:] = 0


@_jit
def _backward(x, w, v, a, g, act, need_x, part, dx, lo, hi):
    """From the output gradient g (n,), the rows lo..hi's share of dv = a^T g, dz1 = g v * act'(a),
    dw = x^T dz1, db = sum dz1, as float64 sums in part (3, h): (dw, db, dv); dx = dz1 w (when need_x);
    act' from the output a."""
    h = a.shape[1]
    part[:] = 0
    bw, bb, bv = np.zeros(h, np.float32), np.zeros(h, np.float32), np.zeros(h, np.float32)
    for start in range(lo, hi, BLOCK):  # float32 sums over a block of rows (vectorised), float64 across blocks
        stop = min(start + BLOCK, hi)
        rest = start if need_x else stop - (stop - start) % 4
        for i in range(start, rest, 4):  # four rows a pass: one load and store of the sums, not four
            g0, g1, g2, g3 = g[i], g[i + 1], g[i + 2], g[i + 3]
            x0, x1, x2, x3 = x[i], x[i + 1], x[i + 2], x[i + 3]
            r0, r1, r2, r3 = a[i], a[i + 1], a[i + 2], a[i + 3]
            for j in range(h):
                vj = v[j]
                a0, a1, a2, a3 = r0[j], r1[j], r2[j], r3[j]
                d0 = g0 * vj * _slope(a0, act)
                d1 = g1 * vj * _slope(a1, act)
                d2 = g2 * vj * _slope(a2, act)
                d3 = g3 * vj * _slope(a3, act)
                sw, sb, sv = bw[j], bb[j], bv[j]  # added row by row, as the loop below adds them
                sw += d0 * x0
                sb += d0
                sv += g0 * a0
                sw += d1 * x1
                sb += d1
                sv += g1 * a1
                sw += d2 * x2
                sb += d2
                sv += g2 * a2
                sw += d3 * x3
                sb += d3
                sv += g3 * a3
                bw[j], bb[j], bv[j] = sw, sb, sv
        for i in range(rest, stop):  # the rows left, one at a time (all of them when dx is wanted)
            gi = g[i]
            xi = x[i]
            row = a[i]
            t = np.float32(0)
            for j in range(h):
                aj = row[j]
                dz = gi * v[j] * _slope(aj, act)
                bw[j] += dz * xi
                bb[j] += dz
                bv[j] += gi * aj
                t += dz * w[j]
            if need_x:
                dx[i] = t
        _flush(part, bw, bb, bv)


@_jit
def _gather(parts, dw, db, dv):
    """dw, db, dv (float32) from the parts' float64 sums (k, 3, h), added in order."""
    for j in range(parts.shape[2]):
        sw, sb, sv = 0.0, 0.0, 0.0
        for k in range(parts.shape[0]):
            sw += parts[k, 0, j]
            sb += parts[k, 1, j]
            sv += parts[k, 2, j]
        dw[j] = sw
        db[j] = sb
        dv[j] = sv


# its float64 sums in row order, not reassociated: vectorised, they came out a bit apart in the series
# and at-once compilations of a step (512-bit vectors), and one of them is the output bias's gradient
@functools.partial(_jit, fastmath=_FAST - {"reassoc"})
def _point_loss(z, y, kind, out_tanh, n, g, lo, hi):
    """For the rows lo..hi, the loss of the predictions act(z) (tanh or identity) against y and its
    derivative in z, written to g, as autograd takes it: sse sum r^2 (2r), mse mean r^2 (2r/n), l1 mean
    |r| (sign(r)/n), times the output tanh's 1 - t^2. -> float64 sums of (the loss's terms, r^2, g)."""
    loss, squares, total = 0.0, 0.0, 0.0
    scale = np.float32(1) if kind == 0 else np.float32(1) / np.float32(n)
    for i in range(lo, hi):
        t = _tanh(z[i]) if out_tanh else z[i]
        r = t - y[i]
        if kind == 2:
            loss += abs(r)
            d = scale * (np.float32(1) if r > 0 else (np.float32(-1) if r < 0 else r))  # sign; NaN stays
        else:
            loss += r * r
            d = np.float32(2) * r * scale
        squares += r * r
        if out_tanh:
            d = d * (np.float32(1) - t * t)
        g[i] = d
        total += d
    return loss, squares, total


@_jit
def _step(x, y, w, b, v, c, act, kind, out_tanh, a, z, g, part, lo, hi):
    """A training step's passes over the rows lo..hi: forward, loss and its derivative, backward into
    part. -> the loss's float64 sums (see point_loss)."""
    _forward(x, w, b, v, c, act, a, z, lo, hi)
    sums = _point_loss(z, y, kind, out_tanh, x.shape[0], g, lo, hi)
    _backward(x, w, v, a, g, act, False, part, g, lo, hi)
    return sums


@_jit
def _hessian(x, w, b, v, a, g1, g2, act, vw, vb, vv, vc, part, lo, hi):
    """The Hessian of L = sum_i l_i(z_i) in (w, b, v, c) times the vector (vw, vb, vv, vc), by
    Pearlmutter's R-operator, with g1 = dl_i/dz_i, g2 = d2l_i/dz_i2 (a separable loss) and the
    activations a at the weights: Ru = x vw + vb, Rz = sum_j vv a + v act'(u) Ru + vc;
    Hv_v = sum_i g2 Rz a + g1 act' Ru,  Hv_b = sum_i g2 Rz v act' + g1 (vv act' + v act'' Ru),
    Hv_w = the same weighted by x_i, Hv_c = sum_i g2 Rz (returned); the rows lo..hi's share of (Hv_w, Hv_b,
    Hv_v) as float64 sums in part (3, h), as `_backward`'s. act', act'' from the output a."""
    h = a.shape[1]
    part[:] = 0
    bw, bb, bv = np.zeros(h, np.float32), np.zeros(h, np.float32), np.zeros(h, np.float32)
    d, e, ru = np.empty(h, np.float32), np.empty(h, np.float32), np.empty(h, np.float32)
    sc = 0.0
    for start in range(lo, hi, BLOCK):
        for i in range(start, min(start + BLOCK, hi)):
            xi = x[i]
            row = a[i]
            rz = np.float32(0)
            for j in range(h):
                aj = row[j]
                dj = _slope(aj, act)
                ej = np.float32(-2) * aj * dj if act == 1 else np.float32(0)  # act'': tanh's only
                r = xi * vw[j] + vb[j]
                d[j] = dj
                e[j] = ej
                ru[j] = r
                rz += vv[j] * aj + v[j] * dj * r
            q = g2[i] * (rz + vc)
            p = g1[i]
            sc += q
            for j in range(h):
                t = q * v[j] * d[j] + p * (vv[j] * d[j] + v[j] * e[j] * ru[j])
                bb[j] += t
                bw[j] += t * xi
                bv[j] += q * row[j] + p * d[j] * ru[j]
        _flush(part, bw, bb, bv)
    return sc


@_jit
def _adam(p, g, m, v, beta1, beta2, step_size, bc2_sqrt, eps):
    """torch's Adam step (no weight decay, amsgrad or maximize), in its float32 operations: m.lerp_(g, 1 - b1),
    v = v b2 + (1 - b2) g^2, p -= step_size m / (sqrt(v) / bc2_sqrt + eps)."""
    w, b2, c2 = np.float32(1 - beta1), np.float32(beta2), np.float32(1 - beta2)
    s, q, e = np.float32(step_size), np.float32(bc2_sqrt), np.float32(eps)
    for i in range(p.shape[0]):
        gi = g[i]
        mi = m[i] + w * (gi - m[i])  # lerp below weight 0.5, as torch computes it
        vi = v[i] * b2 + c2 * gi * gi
        m[i] = mi
        v[i] = vi
        p[i] = p[i] - s * (mi / (np.sqrt(vi) / q + e))


@_jit
def _rmsprop(p, g, v, alpha, lr, eps):
    """torch's RMSprop step (not centred, no momentum or weight decay): v = v a + (1 - a) g^2,
    p -= lr g / (sqrt(v) + eps)."""
    a, c, s, e = np.float32(alpha), np.float32(1 - alpha), np.float32(lr), np.float32(eps)
    for i in range(p.shape[0]):
        gi = g[i]
        vi = v[i] * a + c * gi * gi
        v[i] = vi
        p[i] = p[i] - s * (gi / (np.sqrt(vi) + e))


@_jit
def _sgd(p, g, buf, momentum, lr):
    """torch's SGD step (no dampening, Nesterov or weight decay): buf = momentum buf + g (when momentum),
    p -= lr buf."""
    mu, s = np.float32(momentum), np.float32(lr)
    for i in range(p.shape[0]):
        d = g[i]
        if momentum != 0:
            d = buf[i] * mu + d
            buf[i] = d
        p[i] = p[i] - s * d


@functools.partial(_jit, parallel=True)
def _steps(x, y, w, b, v, c, act, kind, out_tanh, a, z, g, parts, bounds, sums):
    """`step` on each part's rows (bounds (k, 2)) at once, a thread a part: its sums into sums (k, 3)."""
    for q in numba.prange(parts.shape[0]):
        sums[q, 0], sums[q, 1], sums[q, 2] = _step(
            x, y, w, b, v, c, act, kind, out_tanh, a, z, g, parts[q], bounds[q, 0], bounds[q, 1]
        )


@functools.partial(_jit, parallel=True)
def _forwards(x, w, b, v, c, act, a, z, bounds):
    """`forward` on each part's rows (bounds (k, 2)) at once, a thread a part."""
    for q in numba.prange(bounds.shape[0]):
        _forward(x, w, b, v, c, act, a, z, bounds[q, 0], bounds[q, 1])


@functools.partial(_jit, parallel=True)
def _hessians(x, w, b, v, a, g1, g2, act, vw, vb, vv, vc, parts, bounds, scs):
    """`hessian` on each part's rows (bounds (k, 2)) at once, a thread a part: Hv_c's share into scs (k,)."""
    for q in numba.prange(parts.shape[0]):
        scs[q] = _hessian(x, w, b, v, a, g1, g2, act, vw, vb, vv, vc, parts[q], bounds[q, 0], bounds[q, 1])


@_jit
def _count_flat(a, mode):
    """How many of a lie in their activation's flat part, compared in float32 as torch compares them:
    |a| > 0.99 (tanh, mode 1), a <= 0 (relu, 2: dead), |a - 0.5| > 0.495 (sigmoid, 3). NaN counts as not."""
    n = 0
    if mode == 1:
        t = np.float32(0.99)
        for i in range(a.size):
            n += abs(a[i]) > t
    elif mode == 2:
        for i in range(a.size):
            n += a[i] <= np.float32(0)
    else:
        c, t = np.float32(0.5), np.float32(0.495)
        for i in range(a.size):
            n += abs(a[i] - c) > t
    return n


FLAT = {"tanh": 1, "relu": 2, "sigmoid": 3}


def count_flat(a: torch.Tensor, activation: str) -> int | None:
    """The count of `a`'s activations in the flat part of `activation` (see _count_flat) in one compiled
    pass (~15x faster than torch's abs, compare and count over a 1-128-1 run's 512k activations: that was
    a tenth of the run), or None where it does not apply (no numba, not a float32 CPU tensor)."""
    if (
        numba is None
        or os.environ.get("CLINIC_KERNELS", "1") == "0"
        or activation not in FLAT
        or a.dtype != torch.float32
        or a.device.type != "cpu"
        or a.requires_grad
    ):
        return None
    return int(_get().count_flat(a.contiguous().view(-1).numpy(), FLAT[activation]))


_KERNELS = Kernels(
    _forward, _forwards, _backward, _step, _steps, _gather, _hessian, _hessians, _adam, _rmsprop, _sgd, _count_flat
)


def _get() -> Kernels:
    return _KERNELS


def _flat(t: torch.Tensor | None, size: int) -> np.ndarray:
    if t is None:
        return np.zeros(size, np.float32)
    return t.detach().reshape(-1).contiguous().numpy()


def head_forward(x, w1, b1, w2, b2, act: str, at_once: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (z (n, 1), a (n, h)) as core/nets.py's head computes them; at_once: over PARTS row ranges on as
    many threads (each row is computed alone, so the bits are the same)."""
    k = _get()
    n, h = x.shape[0], w1.shape[1]
    a = torch.empty(n, h, dtype=torch.float32)
    z = torch.empty(n, 1, dtype=torch.float32)
    c = np.float32(b2.detach().reshape(-1)[0].item()) if b2 is not None else np.float32(0)
    args = (_flat(x, n), _flat(w1, h), _flat(b1, h), _flat(w2, h), c, ACTS[act], a.numpy(), z.numpy().reshape(-1))
    if not (at_once and _parallel_works() and _at_once(k.forwards, *args, _bounds(n))):
        k.forward(*args, 0, n)
    return z, a


def head_backward(x, w1, w2, a, gz, act: str, need_x: bool):
    """-> (dx (n, 1) or None, dw1 (1, h), db1 (h,), dw2 (h, 1))."""
    k = _get()
    n, h = a.shape
    dw, db, dv = torch.empty(1, h), torch.empty(h), torch.empty(h, 1)
    dx = torch.empty(n, 1) if need_x else torch.empty(1, 1)
    part = np.empty((1, 3, h))
    k.backward(
        _flat(x, n), _flat(w1, h), _flat(w2, h), a.detach().numpy(), _flat(gz, n), ACTS[act], need_x, part[0],
        dx.numpy().reshape(-1), 0, n,
    )  # fmt: skip
    k.gather(part, dw.numpy().reshape(-1), db.numpy(), dv.numpy().reshape(-1))
    return (dx if need_x else None), dw, db, dv


def head_hessian(x, w1, b1, w2, b2, act: str, loss: Callable[[torch.Tensor], torch.Tensor], ways: Faster | None = None):
    """The Hessian-vector product of `loss(z)` in the head's weights (core/nets.py's `head`:
    z = act(x w1 + b1) w2 + b2, one input, one output), at their current values. loss: z (n, 1) -> the
    scalar loss, a sum or mean over the points of a function of each z_i (so that its Hessian in z is
    diagonal: its diagonal is taken by autograd on z alone). -> hv([vw1, vb1, vw2, vb2]) -> the
    products for w1, b1, w2, b2, shaped as the weights; an absent bias (None) takes a None direction
    and gives None. The activations are computed once here: each product is then one pass over them, in
    HeadStep's PARTS fixed parts added in order: one after the other, or at once on two cores where
    `ways` (a `Faster`, kept across measurements by the caller whose run has the cores) finds that
    faster; the same bits either way."""
    k = _get()
    n, h = x.shape[0], w1.shape[1]
    z, a = head_forward(x, w1, b1, w2, b2, act, at_once=ways is not None and ways.favour)
    z.requires_grad_()
    with torch.enable_grad():
        (g1,) = torch.autograd.grad(loss(z), z, create_graph=True)
        g2 = torch.autograd.grad(g1.sum(), z, allow_unused=True)[0] if g1.requires_grad else None
    g2 = torch.zeros_like(z) if g2 is None else g2

    def points(g):  # force: autograd's second derivative of a piecewise-linear loss is a ZeroTensor
        return np.ascontiguousarray(g.detach().reshape(-1).numpy(force=True), dtype=np.float32)

    fixed = (_flat(x, n), _flat(w1, h), _flat(b1, h), _flat(w2, h), a.numpy(), points(g1), points(g2), ACTS[act])
    bounds = _bounds(n)

    def hv(vs):
        vw1, vb1, vw2, vb2 = vs
        hw, hb, hv_ = torch.empty(1, h), torch.empty(h), torch.empty(h, 1)
        vc = np.float32(vb2.reshape(-1)[0].item()) if vb2 is not None else np.float32(0)
        args = (*fixed, _flat(vw1, h), _flat(vb1, h), _flat(vw2, h), vc)
        parts, scs = np.empty((PARTS, 3, h)), np.empty(PARTS)

        def in_series():
            for q, (lo, hi) in enumerate(bounds):
                scs[q] = k.hessian(*args, parts[q], lo, hi)

        _in_parts(ways, lambda: _at_once(k.hessians, *args, parts, bounds, scs), in_series)
        k.gather(parts, hw.numpy().reshape(-1), hb.numpy(), hv_.numpy().reshape(-1))
        hc = torch.full((1,), float(scs.sum()), dtype=torch.float32) if b2 is not None else None
        return [hw, hb if b1 is not None else None, hv_, hc]

    return hv


def _bounds(n: int) -> np.ndarray:
    """The PARTS fixed row ranges (PARTS, 2) of n rows (not np.linspace: 25 us, a tenth of a product)."""
    return np.array([(n * q // PARTS, n * (q + 1) // PARTS) for q in range(PARTS)], dtype=np.int64)


def _in_parts(ways: Faster | None, at_once: Callable[[], bool], in_series: Callable[[], None]) -> None:
    """The parts' work at once (`at_once`, which says whether it could) where `ways` picks that, else
    `in_series`; timed for `ways`. Without `ways` (a run without the cores), always in series."""
    together = ways is not None and _parallel_works() and ways.pick()
    start = time.perf_counter()
    if not (together and at_once()):
        in_series()
    if ways is not None:
        ways.record(together, time.perf_counter() - start)


def _at_once(kernel, *args) -> bool:
    """Runs a prange kernel; False (and never again in this process) where no thread-safe layer is found."""
    try:
        kernel(*args)
    except (ValueError, RuntimeError, ImportError):  # no thread-safe threading layer here (tbb or OpenMP)
        _no_parallel.set()
        return False
    return True


class HeadStep:
    """One training step of the head (core/nets.py's `head`, one input, one output) under a separable loss,
    with nothing but the compiled passes per step: forward, the loss and its derivative written out as
    autograd takes it, and backward, into buffers allocated once (the activations, and the weights'
    .grad, set here once and overwritten each step).

    The rows are cut in PARTS fixed parts whose gradient sums are added in a fixed order, so the result
    is the same bits whether the parts run one after the other or at once, one core each (`parallel`:
    when core/threads.py's policy gives this run the cores). At once, a step of 1-128-1 on 4000 points
    takes 0.35 ms against 0.65 ms on the 2-core CPU; but while another process keeps a core busy it took
    1.2 ms (the threads wait for each other at the end of every step), and 7.5 ms while the browser drew
    beside the server, so the two ways are timed as the run goes (`Faster`) and the faster one is used.

    loss: "sse" (sum of squares), "mse" (their mean) or "l1" (mean absolute error) of act(z) against y,
    act tanh when out_tanh. Call it -> (loss, mean squared error); the activations a and outputs z of
    the step stay in .a and .z until the next."""

    def __init__(self, x, y, w1, b1, w2, b2, act: str, loss: str, out_tanh: bool):
        n, h = x.shape[0], w1.shape[1]
        self.k, self.n, self.kind = _get(), n, LOSSES[loss]
        self.a, self.z, self.g = torch.empty(n, h), torch.empty(n, 1), torch.empty(n)
        for p in (w1, b1, w2, b2):
            if p is not None:
                p.grad = torch.zeros_like(p)
        scratch = np.zeros(h, np.float32)  # the gradient of an absent first bias
        self.grads = (_flat(w1.grad, h), scratch if b1 is None else b1.grad.numpy(), _flat(w2.grad, h))
        self.b2_grad = b2.grad.numpy() if b2 is not None else None
        self.parts, self.sums = np.zeros((PARTS, 3, h)), np.zeros((PARTS, 3))
        self.bounds = _bounds(n)
        self.args = (
            _flat(x, n), _flat(y, n), _flat(w1, h), _flat(b1, h), _flat(w2, h), ACTS[act], self.kind, out_tanh,
            self.a.numpy(), self.z.numpy().reshape(-1), self.g.numpy(),
        )  # fmt: skip
        self.ways = Faster()
        self.c = _flat(b2, 1)  # a view of the output bias, as the args are of the other weights (zeros if none)

    def __call__(self, parallel: bool = False) -> tuple[float, float]:
        args = (*self.args[:5], self.c[0], *self.args[5:])

        def in_series():
            for q, (lo, hi) in enumerate(self.bounds):
                self.sums[q] = self.k.step(*args, self.parts[q], lo, hi)

        at_once = lambda: _at_once(self.k.steps, *args, self.parts, self.bounds, self.sums)  # noqa: E731
        _in_parts(self.ways if parallel else None, at_once, in_series)
        self.k.gather(self.parts, *self.grads)
        loss, squares, total = self.sums.sum(0)
        if self.b2_grad is not None:
            self.b2_grad[0] = total
        return (loss if self.kind == 0 else loss / self.n), squares / self.n


class Faster:
    """Picks the faster of two ways (False, True) to do the same work, from their times as it goes. The
    way in favour is timed on every call (an exponential average over ~5 calls), so a slowdown shows at
    once: a second core taken by another process makes the parallel way wait for it (measured: 7.5 ms
    steps instead of 0.4 ms while the browser drew). The other way is tried for `window` calls at the
    start of every period; a period doubles each time the trial loses (up to `longest` calls) and falls
    back to `period` when the favour changes. Starts in favour of True."""

    def __init__(self, period: int = 50, window: int = 3, longest: int = 800, weight: float = 0.2):
        self.base, self.period, self.window, self.longest, self.weight = period, period, window, longest, weight
        self.favour, self.calls = True, 0  # calls in this period
        self.cost: dict[bool, float | None] = {False: None, True: None}  # seconds a call, as last seen
        self.trial: list[float] = []

    def pick(self) -> bool:
        return self.favour != (self.calls < self.window)

    def record(self, way: bool, seconds: float) -> None:
        if self.calls < self.window:  # trying the other way: its cost is this window's mean
            self.trial.append(seconds)
            if len(self.trial) == self.window:
                self.cost[way] = sum(self.trial) / self.window
                self.trial = []
                if not self._switch():
                    self.period = min(2 * self.period, self.longest)
        else:
            last = self.cost[way]
            self.cost[way] = seconds if last is None else last + self.weight * (seconds - last)
            self._switch()
        self.calls += 1
        if self.calls >= self.period:
            self.calls = 0

    def _switch(self) -> bool:
        here, there = self.cost[self.favour], self.cost[not self.favour]
        if here is None or there is None or here <= there:
            return False
        self.favour, self.period, self.calls = not self.favour, self.base, self.window  # no trial right away
        return True


PARTS = 2  # fixed, so that a run's numbers do not depend on the cores it got
_no_parallel = threading.Event()  # set once the first parallel call has found no thread-safe layer


def _parallel_works() -> bool:
    return not _no_parallel.is_set()


def updater(optimizer: torch.optim.Optimizer) -> Callable[[], None] | None:
    """`optimizer.step()` as one compiled pass per parameter, on the optimizer's own state (so that it stays
    torch's: core/curvature.py reads Adam's and RMSprop's second moments): about 10x less time than torch's
    step for the few small tensors of case 1 (torch's step costs ~0.3 ms in bookkeeping whatever the sizes).
    For SGD (with or without momentum), Adam and RMSprop without weight decay, amsgrad, Nesterov, dampening,
    centring or maximize, on float32 CPU parameters with float lrs; None otherwise (call optimizer.step()).
    The first step, which creates the state, is torch's own. tests/test_nets.py compares 30 steps of each with
    torch's."""
    kind = type(optimizer)
    if numba is None or os.environ.get("CLINIC_KERNELS", "1") == "0" or kind not in _OPTIMIZERS:
        return None
    needed = _OPTIMIZERS[kind]
    for group in optimizer.param_groups:
        if any(group.get(k, v) != v for k, v in needed.items()) or not isinstance(group["lr"], float):
            return None
        if not all(p.dtype == torch.float32 and p.device.type == "cpu" and p.is_contiguous() for p in group["params"]):
            return None
    k = _get()
    moments = {torch.optim.SGD: (), torch.optim.Adam: ("exp_avg", "exp_avg_sq"), torch.optim.RMSprop: ("square_avg",)}
    needs = ("momentum_buffer",) if kind is torch.optim.SGD else ("step", *moments[kind])
    views: dict[int, tuple] = {}  # id(p) -> (p.grad, then numpy views of p, p.grad and p's state), made once

    def view(group, p) -> tuple | None:
        got = views.get(id(p))
        if got is not None and got[0] is p.grad:
            return got
        state, stateful = optimizer.state[p], kind is not torch.optim.SGD or group["momentum"]
        if stateful and not all(n in state for n in needs):
            return None  # the first step is torch's: it makes the state it keeps (plain SGD keeps none)
        arrays = [state[n].view(-1).numpy() for n in needs if n != "step"] if stateful else []
        step = state["step"].numpy() if "step" in needs else None
        views[id(p)] = got = (p.grad, p.detach().view(-1).numpy(), _flat(p.grad, p.numel()), step, *arrays)
        return got

    def step() -> None:
        work = [(g, view(g, p)) for g in optimizer.param_groups for p in g["params"] if p.grad is not None]
        if any(v is None for _, v in work):
            optimizer.step()  # a first step: torch creates the state it keeps
            return
        for group, (_, w, g, t, *state) in work:
            lr = group["lr"]
            if kind is torch.optim.SGD:
                momentum = group["momentum"]
                k.sgd(w, g, state[0] if momentum else g, momentum, lr)
                continue
            t[...] += 1
            n = float(t)
            if kind is torch.optim.Adam:
                beta1, beta2 = group["betas"]
                k.adam(w, g, *state, beta1, beta2, lr / (1 - beta1**n), math.sqrt(1 - beta2**n), group["eps"])
            else:
                k.rmsprop(w, g, *state, group["alpha"], lr, group["eps"])

    return step


LOSSES = {"sse": 0, "mse": 1, "l1": 2}
_PLAIN = {"weight_decay": 0, "maximize": False, "differentiable": False}
_OPTIMIZERS = {  # the options each compiled optimizer step takes as torch's
    torch.optim.SGD: {**_PLAIN, "dampening": 0, "nesterov": False},
    torch.optim.Adam: {**_PLAIN, "amsgrad": False, "capturable": False, "decoupled_weight_decay": False},
    torch.optim.RMSprop: {**_PLAIN, "centered": False, "momentum": 0, "capturable": False},
}
