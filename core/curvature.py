"""Sharpness: the top eigenvalue of the training loss's Hessian, by power iteration on
Hessian-vector products (double backward), and the stability line it is read against.

Full-batch gradient descent at step size lr is stable along a direction of curvature λ only
while |1 - lr·λ| < 1, so only while the sharpness λmax stays below 2/lr; on neural networks
λmax rises during training until it meets that line ("progressive sharpening", then the "edge
of stability": Cohen et al., ICLR 2021, arXiv 2103.00065). Heavy-ball momentum β moves the
line to 2(1 + β)/lr. For Adam the sharpness that meets a line is the *preconditioned* one,
λmax(P⁻¹ᐟ² H P⁻¹ᐟ²) with P = (1 - β1^t)·diag(sqrt(v̂) + eps), against (2 + 2β1)/((1 - β1)·lr),
38/lr at β1 = 0.9 (Cohen et al. 2022, arXiv 2207.14484); RMSprop's P = diag(sqrt(v) + eps),
against 2/lr. For minibatch SGD the loop sees each batch's own loss: the batch sharpness here is
the mean over a few fixed batches of each batch's λmax (Andreyev & Beneventano, arXiv
2412.20553, use the mean curvature along each batch's gradient, which is at most this).

Everything is in the loss's own units: a sum over n points has n times the mean's sharpness,
and its line 2/lr is drawn for the lr that the optimizer applies to that sum.

A measurement changes nothing in the model: `torch.autograd.grad` never writes `.grad` (and
the grads are put back anyway), the weights are only read, no hook is installed, and the start
vector comes from the caller's generator, never from the global RNG.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

ITERS, TOL = 20, 1e-3  # power iterations at most; stop when the estimate changes by less than this (relative)


@dataclass(frozen=True)
class Sharpness:
    value: float  # the top eigenvalue (of H, or of P^-1/2 H P^-1/2 when preconditioned)
    iterations: int  # Hessian-vector products spent
    rel_change: float  # relative change of the estimate at the last iteration: the tolerance reached
    converged: bool  # rel_change <= tol within the iterations allowed
    # the unit eigenvector estimate, one tensor per parameter (a warm start for the next measurement)
    vector: tuple[torch.Tensor, ...] | None = field(default=None, repr=False, compare=False)


def _dot(a: Sequence[torch.Tensor], b: Sequence[torch.Tensor]) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b, strict=True)).double()


def _power(op, v, iters: int, tol: float):
    """Power iteration of the symmetric operator `op` from the unit vector `v`.
    -> (Rayleigh quotient, unit vector, iterations, last relative change)."""
    lam, prev, rel, it = math.nan, math.nan, math.inf, 0
    for it in range(1, iters + 1):  # noqa: B007  `it` is the count spent
        hv = op(v)
        lam = float(_dot(v, hv))  # sync point: one read per iteration, to know when to stop
        norm = float(_dot(hv, hv).sqrt())
        if not math.isfinite(lam) or norm == 0:
            rel = 0.0 if norm == 0 else math.nan
            break
        v = [h / norm for h in hv]
        rel = abs(lam - prev) / abs(lam) if lam != 0 and math.isfinite(prev) else math.inf
        prev = lam
        if rel <= tol:
            break
    return lam, v, it, rel


def top_eigenvalue(
    loss_fn: Callable[[], torch.Tensor],
    params: Sequence[torch.Tensor],
    *,
    iters: int = ITERS,
    tol: float = TOL,
    generator: torch.Generator | None = None,
    precondition: Sequence[torch.Tensor] | None = None,
    start: Sequence[torch.Tensor] | None = None,
) -> Sharpness:
    """The largest eigenvalue of the Hessian of `loss_fn()` in `params`, at their current values.

    loss_fn: () -> the scalar training loss (full batch, or a fixed measurement batch), built from
    differentiable torch ops (a custom autograd Function must support double backward).
    precondition: the diagonal of P⁻¹, one tensor per parameter (see `preconditioner`): the
    eigenvalue is then that of P⁻¹ᐟ² H P⁻¹ᐟ² (the same spectrum as P⁻¹H).
    generator: draws the random start vector (default: a fresh generator seeded 0, never the
    global one); start: a start vector instead (e.g. the last measurement's `vector`).

    Power iteration finds the eigenvalue largest in magnitude; when that one is negative, a second
    run on H + |λ|·I finds the largest. The cost is one backward pass with create_graph and then one
    double-backward pass per iteration.
    """
    params = list(params)
    saved = [p.grad for p in params]
    try:
        with torch.enable_grad():
            return _top(loss_fn, params, iters, tol, generator, precondition, start)
    finally:
        for p, g in zip(params, saved, strict=True):
            p.grad = g


def _top(loss_fn, params, iters, tol, generator, precondition, start) -> Sharpness:
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)  # never touches .grad
    live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]  # the others: zero rows
    roots = [d.sqrt() for d in precondition] if precondition is not None else None

    def hessian_times(v: list[torch.Tensor]) -> list[torch.Tensor]:  # (P^-1/2 H P^-1/2) v
        u = [x * r for x, r in zip(v, roots, strict=True)] if roots is not None else v
        hv = [torch.zeros_like(p) for p in params]
        if live:
            got = torch.autograd.grad(
                [grads[i] for i in live], params, [u[i] for i in live], retain_graph=True, allow_unused=True
            )
            hv = [h if h is not None else z for h, z in zip(got, hv, strict=True)]
        return [h * r for h, r in zip(hv, roots, strict=True)] if roots is not None else hv

    if start is not None:
        v = [s.detach().to(p.device, p.dtype).clone() for s, p in zip(start, params, strict=True)]
    else:
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        v = [torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device) for p in params]
    norm = float(_dot(v, v).sqrt())
    v = [x / norm for x in v]
    lam, v, spent, rel = _power(hessian_times, v, iters, tol)
    if math.isfinite(lam) and lam < 0:  # the dominant eigenvalue is negative: shift it to the bottom
        shift = -lam
        lam2, v, spent2, rel = _power(
            lambda x: [h + shift * y for h, y in zip(hessian_times(x), x, strict=True)], v, iters, tol
        )
        lam, spent = lam2 - shift, spent + spent2
    return Sharpness(lam, spent, rel, bool(rel <= tol), tuple(x.detach() for x in v))


def batch_sharpness(
    loss_fns: Sequence[Callable[[], torch.Tensor]], params: Sequence[torch.Tensor], **kwargs
) -> Sharpness:
    """The mean over batches of each batch's top eigenvalue (the sharpness minibatch SGD meets):
    `loss_fns`, one per fixed measurement batch; `kwargs` as for `top_eigenvalue` (`start` may be
    one vector per batch). Iterations are summed, the relative change is the worst batch's."""
    starts = kwargs.pop("start", None) or [None] * len(loss_fns)
    each = [top_eigenvalue(f, params, start=s, **kwargs) for f, s in zip(loss_fns, starts, strict=True)]
    return Sharpness(
        value=float(np.mean([s.value for s in each])),
        iterations=sum(s.iterations for s in each),
        rel_change=max(s.rel_change for s in each),
        converged=all(s.converged for s in each),
        vector=None,
    )


# ---------------------------------------------------------------------------- the optimizer's line


def _base_lr(optimizer: torch.optim.Optimizer) -> float:
    return float(optimizer.defaults["lr"])


def stability_limit(optimizer: torch.optim.Optimizer) -> float:
    """The line the (preconditioned) sharpness must stay under, in the loss's units, for the
    optimizer's base lr (its constructor's lr): 2/lr for gradient descent and RMSprop,
    2(1 + β)/lr with heavy-ball momentum β, (2 + 2β1)/((1 - β1)·lr) for Adam (38/lr at β1 = 0.9).
    NaN for optimizers without a fixed step (L-BFGS)."""
    lr, d = _base_lr(optimizer), optimizer.defaults
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        beta1 = d["betas"][0]
        return (2 + 2 * beta1) / ((1 - beta1) * lr)
    if isinstance(optimizer, (torch.optim.SGD, torch.optim.RMSprop)):
        return 2 * (1 + d.get("momentum", 0.0)) / lr
    return math.nan


def preconditioner(optimizer: torch.optim.Optimizer, params: Sequence[torch.Tensor]) -> list[torch.Tensor] | None:
    """The diagonal of P⁻¹ per parameter, relative to the base lr, read off the optimizer's state:
    the step the optimizer takes is lr·P⁻¹·(its gradient or momentum). Adam:
    1 / ((1 - β1^t)(sqrt(v̂) + eps)) with v̂ = v / (1 - β2^t); RMSprop: 1 / (sqrt(v) + eps); a
    parameter group with its own lr: times group lr / base lr. None when P is the identity (plain
    SGD with one lr), or before Adam's or RMSprop's first step (no state yet)."""
    base = _base_lr(optimizer)
    group_of = {id(p): g for g in optimizer.param_groups for p in g["params"]}
    adaptive = isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop))
    out, plain = [], True
    for p in params:
        group = group_of[id(p)]
        ratio = group["lr"] / base
        if adaptive:
            state = optimizer.state.get(p, {})
            if "step" not in state:
                return None
            t = float(state["step"])
            if isinstance(optimizer, torch.optim.RMSprop):
                denom = state["square_avg"].sqrt().add(group["eps"])
            else:
                beta1, beta2 = group["betas"]
                v_hat = state["exp_avg_sq"] / (1 - beta2**t)
                denom = v_hat.sqrt().add(group["eps"]).mul(1 - beta1**t)
            out.append(ratio / denom)
            plain = False
        else:
            out.append(torch.full_like(p, ratio))
            plain = plain and ratio == 1
    return None if plain else [d.detach() for d in out]


# ---------------------------------------------------------------------------- over training


def schedule(steps: int, every: int) -> np.ndarray:
    """The 1-based steps measured in a run of `steps`: 1, every k-th, and the last."""
    return np.unique(np.r_[1, np.arange(every, steps + 1, every), steps]) if steps > 0 else np.zeros(0, dtype=int)


def every_for(steps: int, measurements: int) -> int:
    """The k of `schedule` that gives about `measurements` measurements over `steps`."""
    return max(1, math.ceil(steps / max(1, measurements)))


class Probe:
    """Sharpness during training: call it after the optimizer's step (1-based `step`) on the
    steps of `schedule`; it measures at the weights after that step, with the optimizer's
    preconditioner (Adam, RMSprop, per-group lrs) when it has one. One loss function: full-batch
    sharpness; several (fixed batches): batch sharpness. Each measurement warm-starts from the
    last one's eigenvector (batch sharpness from a fresh start each time)."""

    def __init__(
        self,
        loss_fns: Sequence[Callable[[], torch.Tensor]],
        params: Sequence[torch.Tensor],
        optimizer: torch.optim.Optimizer,
        *,
        every: int,
        steps: int,
        seed: int = 0,
        iters: int = ITERS,
        tol: float = TOL,
    ):
        self.loss_fns, self.params, self.optimizer = list(loss_fns), list(params), optimizer
        self.due = set(schedule(steps, every).tolist())
        self.generator = torch.Generator().manual_seed(seed)
        self.iters, self.tol = iters, tol
        self.limit = stability_limit(optimizer)
        self.records: list[tuple[int, Sharpness]] = []
        self._start = None

    def __call__(self, step: int) -> None:
        if step not in self.due:
            return
        kw = {"iters": self.iters, "tol": self.tol, "generator": self.generator}
        kw["precondition"] = preconditioner(self.optimizer, self.params)
        if len(self.loss_fns) == 1:
            s = top_eigenvalue(self.loss_fns[0], self.params, start=self._start, **kw)
            self._start = s.vector if math.isfinite(s.value) else None
        else:
            s = batch_sharpness(self.loss_fns, self.params, **kw)
        self.records.append((step, s))

    def frame(self, steps_run: int | None = None) -> pd.DataFrame:
        return frame(self.records, self.limit, steps_run)


COLUMNS = ("step", "sharpness", "limit", "iterations", "rel_change", "converged")


def frame(records: Sequence[tuple[int, Sharpness]], limit: float, steps_run: int | None = None) -> pd.DataFrame:
    """The measurements as a table: step, sharpness, limit (the stability line), iterations,
    rel_change, converged; only the steps up to `steps_run` (a diverged run's later steps are not its)."""
    rows = [(s, m.value, limit, m.iterations, m.rel_change, m.converged) for s, m in records]
    out = pd.DataFrame(rows, columns=list(COLUMNS)).astype({"step": int, "sharpness": float, "limit": float})
    return out if steps_run is None else out[out["step"] <= steps_run].reset_index(drop=True)


def metrics(sharp: pd.DataFrame, limit: float) -> dict[str, object]:
    """The run's sharpness figures: the largest and the last measured (finite) value, the line,
    and the first measured step above it (None if none)."""
    values = sharp["sharpness"].to_numpy(dtype=float)
    finite = sharp[np.isfinite(values)]
    above = finite[finite["sharpness"] > limit] if math.isfinite(limit) else finite.iloc[:0]
    return {
        "sharpness_max": float(finite["sharpness"].max()) if len(finite) else math.nan,
        "sharpness_final": float(finite["sharpness"].iloc[-1]) if len(finite) else math.nan,
        "stability_limit": float(limit),
        "crossed_at": int(above["step"].iloc[0]) if len(above) else None,
    }


def column(sharp: pd.DataFrame, steps_run: int) -> np.ndarray:
    """(steps_run,) the history's sharpness column: the measurement on the measured steps, NaN elsewhere."""
    out = np.full(steps_run, np.nan)
    kept = sharp[(sharp["step"] >= 1) & (sharp["step"] <= steps_run)]
    out[kept["step"].to_numpy() - 1] = kept["sharpness"].to_numpy()
    return out
