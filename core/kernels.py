"""Compiled kernels for the layer that dominates case 1: a hidden layer fed by a single input,
followed by a single linear output (1-128-1 on 4000 points, as posted).

Why: that layer's work is 512k activations a step, and in torch every elementwise pass over them is a
separate trip through memory; even the sigmoid form of tanh in core/nets.py costs 2.1 ms a step on one
thread of the 2-core CPU this app targets, and a plain autograd loop 4.2 ms. Compiled by numba into one
pass for the forward (affine map, tanh, output sum) and one for the backward (every gradient reduced
on the fly), the layer costs about 0.5 ms a step. numba (a well-kept JIT, wheels wherever torch has
them) compiles on first use (under a second) and caches the machine code beside this file when it may.

tanh is Eigen's float32 rational approximation (the one XLA and TensorFlow use) up to |z| = 9, and
exactly +-1 beyond, as float32 tanh is: within 3e-7 of the exact value everywhere, torch.tanh's
rounding level. The backward takes tanh' = 1 - a^2 from the output, as autograd does; sums over the
data are accumulated in float32 blocks added in float64. tests/test_nets.py compares values and
gradients with float64 autograd, NaN and saturation included; tests/test_sine.py whole runs with the
torch path.

The sharpness measurement's Hessian-vector product of the same layer (`head_hessian`, Pearlmutter's
R-operator written out) is compiled too: one pass over the activations per product instead of a double
backward through the torch layers (~10x fewer seconds); tests/test_nets.py checks it against float64
double backward, tests/test_sine.py the sharpness of whole runs.

Used only where it applies (numba importable, CPU, float32, one input, tanh / relu / identity); every
other layer runs the torch code in core/nets.py. CLINIC_KERNELS=0 turns it off (the tests' oracle).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import numpy as np
import torch

ACTS = {"identity": 0, "tanh": 1, "relu": 2}
BLOCK = 64  # rows summed in float32 before adding to the float64 totals

try:  # optional: without numba every layer takes the torch path
    import numba
except ImportError:  # pragma: no cover - numba is in requirements.txt
    numba = None

_lock = threading.Lock()
_kernels: tuple | None = None


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


def _build() -> tuple:
    # fastmath without nnan/ninf: a diverging run's NaN and inf must come out as torch's would (its
    # divergence is detected at the same step); reassoc lets the sums vectorise
    fast = {"nsz", "arcp", "contract", "afn", "reassoc"}
    options = {"nogil": True, "fastmath": fast, "error_model": "numpy", "boundscheck": False}

    def jit(fn, **extra):
        try:
            return numba.njit(cache=True, **options, **extra)(fn)
        except RuntimeError:  # no writable cache location: compile in memory each process
            return numba.njit(**options, **extra)(fn)

    def tanh(z):
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

    tanh = jit(tanh, inline="always")

    def slope(a, act):
        """act'(u) from the output a = act(u), as autograd takes it: 1 - a^2 (tanh), 0 where a <= 0 (relu)."""
        if act == 1:
            return np.float32(1) - a * a
        if act == 2:
            return np.float32(0) if a <= 0 else np.float32(1)
        return np.float32(1)

    slope = jit(slope, inline="always")

    def forward(x, w, b, v, c, act, a, z):
        """a[i, j] = act(x[i] w[j] + b[j]); z[i] = sum_j a[i, j] v[j] + c."""
        n, h = a.shape
        for i in range(n):
            xi = x[i]
            row = a[i]
            for j in range(h):
                u = xi * w[j] + b[j]
                if act == 1:
                    u = tanh(u)
                elif act == 2:
                    u = np.float32(0) if u < 0 else u  # NaN stays NaN, as in torch.relu
                row[j] = u
            s = np.float32(0)
            for j in range(h):
                s += row[j] * v[j]
            z[i] = s + c

    def backward(x, w, v, a, g, act, need_x, dw, db, dv, dx):
        """From the output gradient g (n,): dv = a^T g, dz1 = g v * act'(a), dw = x^T dz1, db = sum dz1,
        dx = dz1 w (when need_x); act' from the output a."""
        n, h = a.shape
        sw, sb, sv = np.zeros(h, np.float64), np.zeros(h, np.float64), np.zeros(h, np.float64)
        bw, bb, bv = np.empty(h, np.float32), np.empty(h, np.float32), np.empty(h, np.float32)
        for start in range(0, n, BLOCK):  # float32 sums over a block of rows (vectorised), float64 across blocks
            bw[:] = 0
            bb[:] = 0
            bv[:] = 0
            for i in range(start, min(start + BLOCK, n)):
                gi = g[i]
                xi = x[i]
                row = a[i]
                t = np.float32(0)
                for j in range(h):
                    aj = row[j]
                    dz = gi * v[j] * slope(aj, act)
                    bw[j] += dz * xi
                    bb[j] += dz
                    bv[j] += gi * aj
                    t += dz * w[j]
                if need_x:
                    dx[i] = t
            for j in range(h):
                sw[j] += bw[j]
                sb[j] += bb[j]
                sv[j] += bv[j]
        for j in range(h):
            dw[j] = sw[j]
            db[j] = sb[j]
            dv[j] = sv[j]

    def hessian(x, w, b, v, a, g1, g2, act, vw, vb, vv, vc, hw, hb, hv):
        """The Hessian of L = sum_i l_i(z_i) in (w, b, v, c) times the vector (vw, vb, vv, vc), by
        Pearlmutter's R-operator, with g1 = dl_i/dz_i, g2 = d2l_i/dz_i2 (a separable loss) and the
        activations a at the weights: Ru = x vw + vb, Rz = sum_j vv a + v act'(u) Ru + vc;
        Hv_v = sum_i g2 Rz a + g1 act' Ru,  Hv_b = sum_i g2 Rz v act' + g1 (vv act' + v act'' Ru),
        Hv_w = the same weighted by x_i, Hv_c = sum_i g2 Rz (returned). act', act'' from the output a."""
        n, h = a.shape
        sw, sb, sv = np.zeros(h, np.float64), np.zeros(h, np.float64), np.zeros(h, np.float64)
        bw, bb, bv = np.empty(h, np.float32), np.empty(h, np.float32), np.empty(h, np.float32)
        d, e, ru = np.empty(h, np.float32), np.empty(h, np.float32), np.empty(h, np.float32)
        sc = 0.0
        for start in range(0, n, BLOCK):
            bw[:] = 0
            bb[:] = 0
            bv[:] = 0
            for i in range(start, min(start + BLOCK, n)):
                xi = x[i]
                row = a[i]
                rz = np.float32(0)
                for j in range(h):
                    aj = row[j]
                    dj = slope(aj, act)
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
            for j in range(h):
                sw[j] += bw[j]
                sb[j] += bb[j]
                sv[j] += bv[j]
        for j in range(h):
            hw[j] = sw[j]
            hb[j] = sb[j]
            hv[j] = sv[j]
        return sc

    return jit(forward), jit(backward), jit(hessian)


def _get() -> tuple:
    global _kernels
    with _lock:  # built once per process; compiling is numba's own business (it holds its own lock)
        if _kernels is None:
            _kernels = _build()
        return _kernels


def _flat(t: torch.Tensor | None, size: int) -> np.ndarray:
    if t is None:
        return np.zeros(size, np.float32)
    return t.detach().reshape(-1).contiguous().numpy()


def head_forward(x, w1, b1, w2, b2, act: str) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (z (n, 1), a (n, h)) as core/nets.py's head computes them."""
    forward, _, _ = _get()
    n, h = x.shape[0], w1.shape[1]
    a = torch.empty(n, h, dtype=torch.float32)
    z = torch.empty(n, 1, dtype=torch.float32)
    c = np.float32(b2.detach().reshape(-1)[0].item()) if b2 is not None else np.float32(0)
    forward(_flat(x, n), _flat(w1, h), _flat(b1, h), _flat(w2, h), c, ACTS[act], a.numpy(), z.numpy().reshape(-1))
    return z, a


def head_backward(x, w1, w2, a, gz, act: str, need_x: bool):
    """-> (dx (n, 1) or None, dw1 (1, h), db1 (h,), dw2 (h, 1))."""
    _, backward, _ = _get()
    n, h = a.shape
    dw, db, dv = torch.empty(1, h), torch.empty(h), torch.empty(h, 1)
    dx = torch.empty(n, 1) if need_x else torch.empty(1, 1)
    backward(
        _flat(x, n), _flat(w1, h), _flat(w2, h), a.detach().numpy(), _flat(gz, n), ACTS[act], need_x,
        dw.numpy().reshape(-1), db.numpy(), dv.numpy().reshape(-1), dx.numpy().reshape(-1),
    )  # fmt: skip
    return (dx if need_x else None), dw, db, dv


def head_hessian(x, w1, b1, w2, b2, act: str, loss: Callable[[torch.Tensor], torch.Tensor]):
    """The Hessian-vector product of `loss(z)` in the head's weights (core/nets.py's `head`:
    z = act(x w1 + b1) w2 + b2, one input, one output), at their current values. loss: z (n, 1) -> the
    scalar loss, a sum or mean over the points of a function of each z_i (so that its Hessian in z is
    diagonal: its diagonal is taken by autograd on z alone). -> hv([vw1, vb1, vw2, vb2]) -> the
    products for w1, b1, w2, b2, shaped as the weights; an absent bias (None) takes a None direction
    and gives None. The activations are computed once here: each product is then one pass over them."""
    _, _, hessian = _get()
    n, h = x.shape[0], w1.shape[1]
    z, a = head_forward(x, w1, b1, w2, b2, act)
    z.requires_grad_()
    with torch.enable_grad():
        (g1,) = torch.autograd.grad(loss(z), z, create_graph=True)
        g2 = torch.autograd.grad(g1.sum(), z, allow_unused=True)[0] if g1.requires_grad else None
    g2 = torch.zeros_like(z) if g2 is None else g2

    def points(g):  # force: autograd's second derivative of a piecewise-linear loss is a ZeroTensor
        return np.ascontiguousarray(g.detach().reshape(-1).numpy(force=True), dtype=np.float32)

    xs, w, b, v, a_ = _flat(x, n), _flat(w1, h), _flat(b1, h), _flat(w2, h), a.numpy()
    p, q, code = points(g1), points(g2), ACTS[act]

    def hv(vs):
        vw1, vb1, vw2, vb2 = vs
        hw, hb, hv_ = torch.empty(1, h), torch.empty(h), torch.empty(h, 1)
        vc = np.float32(vb2.reshape(-1)[0].item()) if vb2 is not None else np.float32(0)
        c = hessian(
            xs, w, b, v, a_, p, q, code, _flat(vw1, h), _flat(vb1, h), _flat(vw2, h), vc,
            hw.numpy().reshape(-1), hb.numpy(), hv_.numpy().reshape(-1),
        )  # fmt: skip
        hc = torch.full((1,), c, dtype=torch.float32) if b2 is not None else None
        return [hw, hb if b1 is not None else None, hv_, hc]

    return hv
