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
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

ITERS, TOL = 20, 1e-3  # power iterations at most; stop when the estimate changes by less than this (relative)
COLD = 3  # a probe's measurement from a random start (no last eigenvector) may take this many times the iterations


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
    hessian: Callable[[], Callable[[list[torch.Tensor]], list[torch.Tensor | None]]] | None = None,
) -> Sharpness:
    """The largest eigenvalue of the Hessian of `loss_fn()` in `params`, at their current values.

    loss_fn: () -> the scalar training loss (full batch, or a fixed measurement batch), built from
    differentiable torch ops (a custom autograd Function must support double backward).
    precondition: the diagonal of P⁻¹, one tensor per parameter (see `preconditioner`): the
    eigenvalue is then that of P⁻¹ᐟ² H P⁻¹ᐟ² (the same spectrum as P⁻¹H).
    generator: draws the random start vector (default: a fresh generator seeded 0, never the
    global one); start: a start vector instead (e.g. the last measurement's `vector`).
    hessian: where the caller has a faster exact product (core/kernels.py's `head_hessian`): called
    once at these weights, it returns v -> H v (one tensor per parameter, None for zero) and
    replaces the double backward of `loss_fn`.

    Power iteration finds the eigenvalue largest in magnitude; when that one is negative, Lanczos
    (`_lanczos`) finds the largest. The cost is one backward pass with create_graph and then one
    double-backward pass per iteration.
    """
    params = list(params)
    saved = [p.grad for p in params]
    try:
        with torch.enable_grad():
            return _top(loss_fn, params, iters, tol, generator, precondition, start, hessian)
    finally:
        for p, g in zip(params, saved, strict=True):
            p.grad = g


def _autograd_hessian(loss_fn, params) -> Callable[[list[torch.Tensor]], list[torch.Tensor | None]]:
    """v -> H v by double backward: one backward pass with create_graph now, one more per product."""
    loss = loss_fn()
    grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)  # never touches .grad
    live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]  # the others: zero rows

    def product(u: list[torch.Tensor]) -> list[torch.Tensor | None]:
        if not live:
            return [None] * len(params)
        return list(
            torch.autograd.grad(
                [grads[i] for i in live], params, [u[i] for i in live], retain_graph=True, allow_unused=True
            )
        )

    return product


def _top(loss_fn, params, iters, tol, generator, precondition, start, hessian=None) -> Sharpness:
    product = hessian() if hessian is not None else _autograd_hessian(loss_fn, params)
    roots = [d.sqrt() for d in precondition] if precondition is not None else None

    def hessian_times(v: list[torch.Tensor]) -> list[torch.Tensor]:  # (P^-1/2 H P^-1/2) v
        u = [x * r for x, r in zip(v, roots, strict=True)] if roots is not None else v
        hv = [h if h is not None else torch.zeros_like(p) for h, p in zip(product(u), params, strict=True)]
        return [h * r for h, r in zip(hv, roots, strict=True)] if roots is not None else hv

    if start is not None:
        v = [s.detach().to(p.device, p.dtype).clone() for s, p in zip(start, params, strict=True)]
    else:
        g = generator if generator is not None else torch.Generator().manual_seed(0)
        v = [torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device) for p in params]
    norm = float(_dot(v, v).sqrt())
    v = [x / norm for x in v]
    lam, v, spent, rel = _power(hessian_times, v, iters, tol)
    if math.isfinite(lam) and lam < 0:  # the dominant eigenvalue is negative: Lanczos finds the top one
        g = generator if generator is not None else torch.Generator().manual_seed(1)
        fresh = [torch.randn(p.shape, generator=g, dtype=p.dtype).to(p.device) for p in params]
        lam, v, spent2, rel = _lanczos(hessian_times, fresh, iters, tol / 10)  # its Ritz value creeps up: stop later
        spent += spent2
    return Sharpness(lam, spent, rel, bool(rel <= tol), tuple(x.detach() for x in v))


def _lanczos(op, v, iters: int, tol: float):
    """The largest eigenvalue of the symmetric operator `op` by Lanczos with full
    reorthogonalisation, from `v`: where power iteration would need the operator shifted past a
    large negative eigenvalue (a saturated network's Hessian, say), and converge slowly, a Krylov
    space of ~20 products finds the top of the spectrum (measured on case 1 at its start: 124.14
    against the full Hessian's 124.21 in 20). -> (top Ritz value, its unit Ritz vector, products,
    last relative change of the Ritz value)."""
    shapes = [x.shape for x in v]
    sizes = [x.numel() for x in v]

    def flat(xs):
        return torch.cat([x.reshape(-1) for x in xs]).double()

    def unflat(f):
        return [
            part.reshape(shape).to(x.dtype) for part, shape, x in zip(torch.split(f, sizes), shapes, v, strict=True)
        ]

    q = flat(v)
    # the basis as rows of one matrix, written in place: no copy of the whole basis per product (a list
    # stacked at every step copied O(iters^2) vectors: 0.9 of CIFAR's 1.4 s Lanczos, 24 products of 925k
    # weights); rows never written are never touched, so memory is what the products spent
    basis = torch.empty((iters + 1, q.numel()), dtype=q.dtype, device=q.device)
    basis[0] = q / q.norm()
    alpha, beta = [], []
    top, prev, rel, it = math.nan, math.nan, math.inf, 0
    ritz = np.ones(1)
    for it in range(1, iters + 1):
        w = flat(op(unflat(basis[it - 1])))
        alpha.append(float(w @ basis[it - 1]))
        q_all = basis[:it]  # (j, P)
        for _ in range(2):  # twice is enough (Kahan): keeps the basis orthogonal in floating point
            w = w - q_all.T @ (q_all @ w)
        t = np.diag(alpha) + np.diag(beta, 1) + np.diag(beta, -1)
        values, vectors = np.linalg.eigh(t)
        top, ritz = float(values[-1]), vectors[:, -1]
        rel = abs(top - prev) / abs(top) if top != 0 and math.isfinite(prev) else math.inf
        prev = top
        b = float(w.norm())
        if rel <= tol or b <= 1e-12 * max(1.0, abs(top)) or not math.isfinite(top):
            break
        beta.append(b)
        basis[it] = w / b
    y = torch.from_numpy(ritz).to(basis) @ basis[: len(ritz)]
    return top, unflat(y / y.norm()), it, rel


def batch_sharpness(
    loss_fns: Sequence[Callable[[], torch.Tensor]], params: Sequence[torch.Tensor], **kwargs
) -> Sharpness:
    """The mean over batches of each batch's top eigenvalue (the sharpness minibatch SGD meets):
    `loss_fns`, one per fixed measurement batch; `kwargs` as for `top_eigenvalue`, except that
    `start` is one start vector (or None) per batch."""
    starts = kwargs.pop("start", None) or [None] * len(loss_fns)
    return _mean([top_eigenvalue(f, params, start=s, **kwargs) for f, s in zip(loss_fns, starts, strict=True)])


def _mean(each: Sequence[Sharpness]) -> Sharpness:
    """Several batches' measurements as one: the mean value, the iterations summed, the worst
    relative change; no single vector."""
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


def limit(optimizer: str, lr: float, beta: float = 0.0) -> float:
    """The stability line in the loss's units for an optimizer by name: 2/lr for "gd" (and
    "sgd", "rmsprop"), 2(1 + β)/lr for "momentum" (heavy ball, β), (2 + 2β)/((1 - β)·lr) for
    "adam" (β = β1: 38/lr at 0.9); NaN otherwise (L-BFGS has no fixed step)."""
    if optimizer in ("gd", "sgd", "rmsprop"):
        return 2 / lr
    if optimizer == "momentum":
        return 2 * (1 + beta) / lr
    if optimizer == "adam":
        return (2 + 2 * beta) / ((1 - beta) * lr)
    return math.nan


def stability_limit(optimizer: torch.optim.Optimizer) -> float:
    """`limit` for a torch optimizer, at its base lr (its constructor's lr)."""
    lr, d = _base_lr(optimizer), optimizer.defaults
    if isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
        return limit("adam", lr, d["betas"][0])
    if isinstance(optimizer, (torch.optim.SGD, torch.optim.RMSprop)):
        beta = d.get("momentum", 0.0)
        return limit("momentum", lr, beta) if beta else limit("gd", lr)
    return math.nan


def adam_preconditioner(exp_avg_sq: torch.Tensor, step: float, betas=(0.9, 0.999), eps: float = 1e-8):
    """Adam's diagonal P⁻¹ = 1 / ((1 - β1^t)(sqrt(v̂) + eps)), v̂ = v / (1 - β2^t), from its second
    moment v after t steps (Cohen et al. 2022: the update is lr·P⁻¹·m with m not bias-corrected)."""
    beta1, beta2 = betas
    v_hat = exp_avg_sq / (1 - beta2**step)
    return 1 / (v_hat.sqrt().add(eps).mul(1 - beta1**step))


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
            if isinstance(optimizer, torch.optim.RMSprop):
                inverse = 1 / state["square_avg"].sqrt().add(group["eps"])
            else:
                inverse = adam_preconditioner(state["exp_avg_sq"], float(state["step"]), group["betas"], group["eps"])
            out.append(ratio * inverse)
            plain = False
        else:
            out.append(torch.full_like(p, ratio))
            plain = plain and ratio == 1
    return None if plain else [d.detach() for d in out]


# ---------------------------------------------------------------------------- over training


def schedule(steps: int, every: int) -> np.ndarray:
    """The 1-based steps measured in a run of `steps`: 1, every k-th, and the last (none for every = 0)."""
    if steps <= 0 or every <= 0:
        return np.zeros(0, dtype=int)
    return np.unique(np.r_[1, np.arange(every, steps + 1, every), steps])


def every_for(steps: int, measurements: int) -> int:
    """The k of `schedule` that gives about `measurements` measurements over `steps` (0: never)."""
    return max(1, math.ceil(steps / measurements)) if measurements > 0 else 0


class Probe:
    """Sharpness during training: call it after the optimizer's step (1-based `step`) on the
    steps of `schedule`; it measures at the weights after that step, with the optimizer's
    preconditioner (Adam, RMSprop, per-group lrs) when it has one. One loss function: full-batch
    sharpness; several (fixed batches): batch sharpness. Each measurement warm-starts from the
    last one's eigenvector (each batch from its own)."""

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
        hessians: Sequence[Callable | None] | None = None,
    ):
        """hessians: beside each loss function, a faster exact Hessian-vector product or None (see
        `top_eigenvalue`'s `hessian`)."""
        self.loss_fns, self.params, self.optimizer = list(loss_fns), list(params), optimizer
        self.hessians = list(hessians) if hessians is not None else [None] * len(self.loss_fns)
        self.due = set(schedule(steps, every).tolist())
        self.generator = torch.Generator().manual_seed(seed)
        self.iters, self.tol = iters, tol
        self.limit = stability_limit(optimizer)
        self.lr = _base_lr(optimizer)
        adaptive = isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW, torch.optim.RMSprop))
        self.variant = variant(adaptive, len(self.loss_fns))
        self.warmup = warmup(optimizer)
        self.records: list[tuple[int, Sharpness]] = []
        self.seconds = 0.0  # spent measuring (what it adds to the run's time)
        self._starts = [None] * len(self.loss_fns)  # each batch's last eigenvector: the next start

    def __call__(self, step: int) -> None:
        if step not in self.due:
            return
        start = time.perf_counter()
        pre = preconditioner(self.optimizer, self.params)
        each = [
            top_eigenvalue(
                f,
                self.params,
                iters=self.iters if s is not None else COLD * self.iters,  # a random start needs more
                tol=self.tol,
                generator=self.generator,
                precondition=pre,
                start=s,
                hessian=hv,
            )
            for f, s, hv in zip(self.loss_fns, self._starts, self.hessians, strict=True)
        ]
        self._starts = [m.vector if math.isfinite(m.value) else None for m in each]
        self.records.append((step, each[0] if len(each) == 1 else _mean(each)))
        self.seconds += time.perf_counter() - start

    def frame(self, steps_run: int | None = None) -> pd.DataFrame:
        return frame(self.records, self.limit, steps_run, lr=self.lr, variant=self.variant, warmup=self.warmup)


def warmup(optimizer: torch.optim.Optimizer | str, beta1: float = 0.9) -> int:
    """Steps during which Adam's line does not apply yet: its first 1/(1 - β1) steps (10 at 0.9),
    while the moment averages still fill up (at step 1 the step is lr·sign(g) and P⁻¹ = 1/((1-β1)|g|))
    and the 38/lr derivation, which assumes the averages' steady state, does not hold. 0 otherwise."""
    if isinstance(optimizer, torch.optim.Optimizer):
        if not isinstance(optimizer, (torch.optim.Adam, torch.optim.AdamW)):
            return 0
        beta1 = optimizer.defaults["betas"][0]
    elif optimizer != "adam":
        return 0
    return math.ceil(1 / (1 - beta1))


def variant(preconditioned: bool, batches: int) -> str:
    """What was measured, in words: "λmax", "batch λmax (4 batches)", "preconditioned λmax"..."""
    name = "preconditioned " if preconditioned else ""
    return name + (f"batch λmax ({batches} batches)" if batches > 1 else "λmax")


COLUMNS = ("step", "sharpness", "limit", "lr", "variant", "settled", "iterations", "rel_change", "converged")


def frame(
    records: Sequence[tuple[int, Sharpness]],
    limit: float,
    steps_run: int | None = None,
    *,
    lr: float = math.nan,
    variant: str = "λmax",
    warmup: int = 0,
) -> pd.DataFrame:
    """The measurements as a table: step, sharpness, limit (the stability line), lr (the base lr
    the line is drawn for), variant (what was measured), settled (past the optimizer's `warmup`
    steps, where the line applies), iterations, rel_change, converged; only the steps up to
    `steps_run` (a diverged run's later steps are not its)."""
    rows = [(s, m.value, limit, lr, variant, s > warmup, m.iterations, m.rel_change, m.converged) for s, m in records]
    out = pd.DataFrame(rows, columns=list(COLUMNS)).astype({"step": int, "sharpness": float, "limit": float})
    return out if steps_run is None else out[out["step"] <= steps_run].reset_index(drop=True)


def rule(limit: float, lr: float) -> str:
    """The line's name: "2/lr", "3.8/lr" (momentum 0.9), "38/lr" (Adam)."""
    if not (math.isfinite(limit) and math.isfinite(lr)):
        return "no line"
    return f"{limit * lr:.3g}/lr"


def metrics(sharp: pd.DataFrame, limit: float) -> dict[str, object]:
    """The run's sharpness figures: the largest measured (finite) value past the warm-up, the last,
    the line, and the first measured step past the warm-up above it (None if none)."""
    values = sharp["sharpness"].to_numpy(dtype=float)
    finite = sharp[np.isfinite(values)]
    settled = finite[finite["settled"].astype(bool)] if "settled" in finite else finite
    above = settled[settled["sharpness"] > limit] if math.isfinite(limit) else settled.iloc[:0]
    return {
        "sharpness_max": float(settled["sharpness"].max()) if len(settled) else math.nan,
        "sharpness_final": float(finite["sharpness"].iloc[-1]) if len(finite) else math.nan,
        "stability_limit": float(limit),
        "crossed_at": int(above["step"].iloc[0]) if len(above) else None,
    }


EDGE = 1.1  # a sharpness within 10% of its line is on the edge of stability, not past it (see above_line)


def above_line(metrics: Mapping[str, object], lr: float) -> tuple[str, float] | None:
    """When the measured sharpness rose past its line by more than the edge (EDGE): (the evidence in
    words, an lr that puts the line above the largest measured sharpness with a 10% margin, to 2
    digits); None otherwise. At the edge of stability the sharpness hovers at its line (Cohen et al.
    2021; 2022 for Adam's preconditioned sharpness), a rounding error either side of it: poly's Adam
    preset ends 0.98× its line on one CPU and 1.02× on another, the same run."""
    crossed, top, line = metrics.get("crossed_at"), metrics.get("sharpness_max"), metrics.get("stability_limit")
    if crossed is None or not (math.isfinite(top) and math.isfinite(line)) or top <= EDGE * line:
        return None
    name = rule(line, lr)
    safe = float(f"{0.9 * lr * line / top:.2g}")
    evidence = (
        f"Measured: the sharpness rose past {name} = {line:.3g} at step {crossed:,} and reached {top:.3g}, "
        f"{top / line:.3g}× the line. Along its sharpest direction each step of lr {lr:g} then overshoots the "
        f"minimum by more than it corrects. An lr below {name.split('/')[0]}/λmax = {lr * line / top:.3g} keeps "
        f"it under the line; so does a loss in other units (a mean instead of a sum divides λmax by n)."
    )
    return evidence, safe


def column(sharp: pd.DataFrame, steps_run: int) -> np.ndarray:
    """(steps_run,) the history's sharpness column: the measurement on the measured steps, NaN elsewhere."""
    out = np.full(steps_run, np.nan)
    kept = sharp[(sharp["step"] >= 1) & (sharp["step"] <= steps_run)]
    out[kept["step"].to_numpy() - 1] = kept["sharpness"].to_numpy()
    return out
