"""Case 3: fitting a polynomial with nn.Linear converges painfully (PyTorch forums,
"Finding coefficients of a polynomial through linear regression").

As posted: 6 points x = linspace(2, 5, 6), y = sin(x); features [x^4, x^3, x^2, x] into
nn.Linear(4, 1) (its bias is the constant term); MSELoss(reduction='sum'); SGD lr 1e-6;
1000 epochs. The loss is quadratic in the 5 coefficients with Hessian H = 2 XᵀX (X with a
column of ones), whose eigenvalues span 6.2e-5 to 1.2e6: condition number 2e10. Plain
gradient descent is stable only for lr < 2/λmax = 1.62e-6, and at such a step the flattest
direction shrinks by lr·λmin ~ 1e-10 per epoch. Re-basing (Legendre polynomials of x mapped
to [-1, 1]) brings the condition number to 12, and the same plain SGD reaches the
least-squares optimum within a few hundred epochs.

Speed: the learning-rate scan trains every rate at once as one batched computation (weights
(R, p), one learning rate per row, the gradient of the quadratic in closed form, four tensor ops
an epoch for SGD). Measured on the shared 2-core CPU under load: 29 rates × 10,000 epochs in
0.15-0.22 s (min-median of 7), against 90-160 s for the posted loop run once per rate
(bench/poly.py). `posted_loop` below is that plain-PyTorch reference; the tests compare the two.

Also: the learning-rate range test (`lr_find`), whose explosion lands at 1.1-1.3× the analytic limit
in float32 and 1.3-1.6× in float64 (measured: the rate keeps growing while the steepest direction
climbs back from rounding level), and your own (x, y)
points (`points`) in place of sin(x), with the closed form and the curvature taken on them.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from numpy.polynomial import Legendre, Polynomial

from core import curvature, lrfind, nets, points, rng
from core.case import Case, Cost, Finding
from core.settings import Setting
from core.train import History, Progress, RunResult, history_frame, train


@dataclass(frozen=True)
class PolyConfig:
    degree: int = 4  # features x^degree ... x, plus nn.Linear's bias as the constant term
    n_points: int = 6  # x = linspace(x_min, x_max, n_points)
    x_min: float = 2.0
    x_max: float = 5.0
    noise: float = 0.0  # std of Gaussian noise added to y = sin(x); the post has none
    points: tuple[tuple[float, float], ...] = ()  # your own (x, y) points instead (a CSV upload)
    basis: str = "raw"  # raw powers of x, as posted
    optimizer: str = "sgd"  # torch.optim.SGD, no momentum
    lr: float = 1e-6
    momentum: float = 0.9  # β, used only by optimizer=momentum
    epochs: int = 1000  # full-batch steps
    reduction: str = "sum"  # MSELoss(reduction='sum'), as posted
    dtype: str = "float32"  # the dtype of nn.Linear's weights (the post's features were float64: see NOTE)
    init: str = "default"  # nn.Linear's own init
    seed: int = 0  # for the init (and the noise)


AS_POSTED = PolyConfig()
PRESETS = {
    "as-posted": AS_POSTED,
    "as-posted-10k": dataclasses.replace(AS_POSTED, epochs=10_000),  # the poster's "loss still about 1"
    # just above 2/λmax = 1.62e-6: the steepest direction grows ×1.46 per epoch
    "lr-2e-6": dataclasses.replace(AS_POSTED, lr=2e-6),
    # z-scored monomials: κ 2e10 -> 1.1e7, still far too flat; lr 0.9·(2/λmax)
    "standardized": dataclasses.replace(AS_POSTED, basis="standardized", lr=0.038, epochs=10_000),
    # powers of t = x mapped to [-1, 1]: κ = 365; lr 0.9·(2/λmax)
    "centered": dataclasses.replace(AS_POSTED, basis="centered", lr=0.1, epochs=10_000),
    "adam": dataclasses.replace(AS_POSTED, optimizer="adam", lr=1e-2, epochs=10_000),
    "lbfgs": dataclasses.replace(AS_POSTED, optimizer="lbfgs", lr=1.0, epochs=50),
    # ours: Legendre basis (κ = 12), a mean loss, and plain SGD at a step read off the curvature
    # (2/λmax = 0.82 for the mean): the optimum within a few hundred epochs, in float32
    "fixed": dataclasses.replace(AS_POSTED, basis="legendre", reduction="mean", lr=0.5),
}

WHY = {
    "as-posted": "The post: raw powers [x⁴, x³, x², x], a sum loss, SGD at lr 1e-6 for 1000 epochs: it crawls.",
    "as-posted-10k": "The post's 10,000 epochs: the loss is still about 1, as the poster saw.",
    "lr-2e-6": "Just above the stability limit 2/λmax = 1.62e-6: the loss explodes, as the poster saw above ~1e-4.",
    "standardized": "z-scored powers: κ falls from 2e10 to 1e7, still far too flat for SGD.",
    "centered": "Powers of x mapped to [-1, 1]: κ = 365, SGD reaches the optimum in 10,000 epochs.",
    "adam": "Adam on the raw powers: no stability limit, but it still ends far above the optimum.",
    "lbfgs": "L-BFGS: a line search picks each step; it reaches the optimum in float64.",
    "fixed": "Ours: Legendre polynomials (κ = 12), a mean loss, SGD at a rate read off the curvature.",
}

BASES = ("raw", "standardized", "centered", "legendre")
OPTIMIZERS = ("sgd", "momentum", "adam", "lbfgs")
DTYPES = {"float32": torch.float32, "float64": torch.float64}
LBFGS_MAX_EPOCHS = 5000  # ~0.4 ms a step here, so at most ~2 s
MAX_POINT_EPOCHS = 50_000_000  # n_points × epochs: ~4 s for the whole scan on the 2-core CPU

SETTINGS = (
    Setting("degree", "degree of the polynomial: features x^degree ... x, plus the bias", lo=1, hi=20),
    Setting("n_points", "data points, x = linspace(x_min, x_max, n_points)", lo=2, hi=10_000),
    Setting("x_min", "left end of the x range", lo=-1000, hi=1000),
    Setting("x_max", "right end of the x range", lo=-1000, hi=1000),
    Setting("noise", "std of Gaussian noise added to y = sin(x)", lo=0, hi=10),
    Setting(
        "points",
        "your own (x, y) points instead of sin(x): n_points, x_min, x_max and noise are then ignored, and the "
        "centered and legendre bases map your x range to [-1, 1]",
        **points.RULES,
    ),
    Setting(
        "basis",
        "features: raw powers of x (as posted), standardized (z-scored powers), centered (powers of x mapped "
        "to [-1, 1]), legendre (Legendre polynomials of x mapped to [-1, 1])",
        choices=BASES,
    ),
    Setting("optimizer", "sgd (plain, as posted), momentum (SGD with β = momentum), adam, lbfgs", choices=OPTIMIZERS),
    Setting("lr", "learning rate", lo=0, hi=100, lo_open=True),
    Setting("momentum", "β for optimizer=momentum (ignored otherwise)", lo=0, hi=0.999),
    Setting("epochs", "full-batch optimizer steps", lo=1, hi=50_000),
    Setting("reduction", "sum of squared errors (as posted) or their mean", choices=("sum", "mean")),
    Setting("dtype", "dtype of the weights and features", choices=tuple(DTYPES)),
    Setting("init", "default (nn.Linear's uniform init) or zeros", choices=("default", "zeros")),
    Setting("seed", "random seed for the init and the noise", lo=0, hi=2**31 - 1),
)

NOTE = (
    "The code as posted no longer runs on current PyTorch: `torch.tensor` of a list of numpy float64 "
    "values is float64, nn.Linear's weights are float32, and the matrix product refuses mixed dtypes. "
    "The poster's code ran, so their PyTorch made float32 tensors of those values. Here the features are "
    "computed in float64, as numpy does, and cast to the layer's dtype (the `dtype` setting)."
)


# ---------------------------------------------------------------------------- data and bases


def make_data(config: PolyConfig) -> tuple[np.ndarray, np.ndarray]:
    """x (n,) = linspace(x_min, x_max, n), y (n,) = sin(x) + noise·N(0, 1), both float64 as in numpy;
    or the user's points as they are (no noise)."""
    if config.points:
        xy = np.array(config.points, dtype=np.float64)  # (n, 2)
        return xy[:, 0], xy[:, 1]
    x = np.linspace(config.x_min, config.x_max, config.n_points)
    y = np.sin(x)
    if config.noise > 0:
        g = rng.generator(config.seed, 0)
        y = y + config.noise * torch.randn(config.n_points, generator=g, dtype=torch.float64).numpy()
    return x, y


def truth(x: np.ndarray) -> np.ndarray:
    return np.sin(x)


def size(config: PolyConfig) -> int:
    return len(config.points) or config.n_points


def x_range(config: PolyConfig) -> tuple[float, float]:
    """The data's x range: [x_min, x_max], or the smallest and largest x of the user's points."""
    if config.points:
        xs = [x for x, _ in config.points]
        return min(xs), max(xs)
    return config.x_min, config.x_max


def basis_polynomials(config: PolyConfig, x: np.ndarray) -> list[Polynomial | Legendre]:
    """The feature columns as functions of x, highest degree first (x^4, x^3, x^2, x as posted).

    `x` is the data (the standardized basis z-scores each power over it).
    """
    domain = list(x_range(config))  # numpy maps this domain to t in [-1, 1]
    degrees = range(config.degree, 0, -1)
    if config.basis == "raw":
        return [Polynomial.basis(k) for k in degrees]
    if config.basis == "centered":
        return [Polynomial.basis(k, domain=domain) for k in degrees]
    if config.basis == "legendre":
        return [Legendre.basis(k, domain=domain) for k in degrees]
    if config.basis == "standardized":  # (x^k - mean) / std over the data (numpy's std, ddof 0)
        polys = []
        for k in degrees:
            column = x**k
            polys.append((Polynomial.basis(k) - column.mean()) / column.std())
        return polys
    raise ValueError(f"unknown basis {config.basis!r}")


def features(config: PolyConfig, x: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
    """(len(at), degree) feature matrix in float64, evaluated at `at` (default: the data x).
    Raw powers are computed as the post does, x**k."""
    at = x if at is None else at
    if config.basis == "raw":
        return np.stack([at**k for k in range(config.degree, 0, -1)], axis=1)
    return np.stack([p(at) for p in basis_polynomials(config, x)], axis=1)


def design(config: PolyConfig, x: np.ndarray) -> np.ndarray:
    """(n, p) float64: the features and a column of ones (nn.Linear's bias); p = degree + 1."""
    return np.hstack([features(config, x), np.ones((len(x), 1))])


def to_raw(config: PolyConfig, x: np.ndarray) -> np.ndarray:
    """(degree + 1, p) matrix M: raw power coefficients [c_degree ... c_1, c_0] = M @ [weights, bias]."""
    d = config.degree
    m = np.zeros((d + 1, d + 1))
    for j, poly in enumerate(basis_polynomials(config, x)):
        coef = poly.convert(kind=Polynomial).coef  # power coefficients in x, lowest first
        m[: d + 1, j] = np.pad(coef, (0, d + 1 - len(coef)))[::-1]
    m[d, d] = 1.0  # the bias is the constant term
    return m


# ---------------------------------------------------------------------------- curvature and closed form


def hessian(a: np.ndarray, reduction: str) -> np.ndarray:
    """H of the loss in the coefficients: 2 AᵀA for the sum, 2 AᵀA / n for the mean."""
    h = 2 * a.T @ a
    return h / len(a) if reduction == "mean" else h


def eigenvalues(a: np.ndarray, reduction: str) -> np.ndarray:
    """The Hessian's eigenvalues, ascending, in float64."""
    return torch.linalg.eigvalsh(torch.from_numpy(hessian(a, reduction))).numpy()


def stable_lr(lam_max: float, optimizer: str, momentum: float) -> float:
    """The largest step for which gradient descent does not diverge along the steepest direction:
    |1 - lr·λmax| < 1, i.e. lr < 2/λmax; with heavy-ball momentum β, lr < 2(1 + β)/λmax."""
    return 2 * (1 + momentum) / lam_max if optimizer == "momentum" else 2 / lam_max


def closed_form(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The least-squares coefficients (p,) by torch.linalg.lstsq in float64."""
    sol = torch.linalg.lstsq(torch.from_numpy(a), torch.from_numpy(y).unsqueeze(1), driver="gelsd").solution
    return sol.squeeze(1).numpy()


def loss_np(a: np.ndarray, y: np.ndarray, theta: np.ndarray, reduction: str) -> float:
    r = a @ theta - y
    return float(np.sum(r * r) / (len(y) if reduction == "mean" else 1))


def stable_limit(config: PolyConfig) -> float:
    """The stability limit of `config`'s optimizer (plain SGD for L-BFGS) on its features as
    rounded to its dtype: what the scan is centred on."""
    x, _ = make_data(config)
    a = torch.from_numpy(design(config, x)).to(DTYPES[config.dtype]).double().numpy()
    lam_max = eigenvalues(a, config.reduction)[-1]
    return stable_lr(lam_max, "sgd" if config.optimizer == "lbfgs" else config.optimizer, config.momentum)


def condition(config: PolyConfig) -> float:
    """The condition number of the design matrix (features and ones), in float64."""
    x, _ = make_data(config)
    return float(np.linalg.cond(design(config, x)))


# ---------------------------------------------------------------------------- training


def init_weights(config: PolyConfig) -> np.ndarray:
    """The starting coefficients (p,) = [nn.Linear weight..., bias], from the run's own generator.
    `default` draws exactly what nn.Linear(degree, 1) draws from the same generator state."""
    if config.init == "zeros":
        return np.zeros(config.degree + 1)
    w, b = nets.init_layer(config.degree, 1, bias=True, init="default", generator=rng.generator(config.seed, 1))
    return torch.cat([w[:, 0], b]).double().numpy()


@dataclass(frozen=True)
class Descent:
    """What `descend` returns, as numpy: one row per learning rate."""

    loss: np.ndarray  # (epochs_run, R) loss at each epoch, before its step (NaN from a row's first non-finite)
    diverged_at: np.ndarray  # (R,) 1-based epoch of the first non-finite loss; 0 = never
    weights: np.ndarray  # (R, p) final coefficients, float64 (NaN for diverged rows)
    # (epoch, row) -> (weights (p,), Adam's second moment (p,)) after that epoch, for the rows and epochs watched
    watched: dict = dataclasses.field(default_factory=dict)


def descend(
    a: torch.Tensor,
    y: torch.Tensor,
    w0: torch.Tensor,
    lrs: torch.Tensor,
    *,
    epochs: int,
    optimizer: str = "sgd",
    momentum: float = 0.0,
    reduction: str = "sum",
    check_every: int = 250,
    on_chunk=None,
    watch: tuple[int, set[int]] | None = None,
) -> Descent:
    """Full-batch training of R copies of the model at once, one learning rate per row.

    a (n, p): features and ones; y (n,); w0 (p,) start for every row; lrs (R,). All in the run's
    dtype and on its device. Each epoch is what nn.Linear + MSELoss + torch.optim does for each
    row, with the gradient of the quadratic written out: r = A w - y, loss = Σ r² (/ n for the
    mean), grad = 2 Aᵀ r (/ n). The update follows torch.optim's formulas for SGD, SGD with
    momentum (buf = β buf + g) and Adam (default betas and eps).

    Finiteness is read back every `check_every` epochs (one sync per chunk, none per epoch);
    rows whose loss went non-finite are recorded and dropped from the batch. `on_chunk(epochs_done,
    loss_so_far)` is called after every chunk and may raise to interrupt. watch: (row, 1-based
    epochs): that row's weights and Adam second moment after those epochs, in `Descent.watched`
    (for the sharpness measurement), while the row has not diverged.
    """
    n, p = a.shape
    rows = len(lrs)
    at = a.t().contiguous()  # (p, n)
    a_grad = a * (2.0 / n if reduction == "mean" else 2.0)  # (n, p): grad = r @ a_grad
    neg_y = -y.unsqueeze(0)  # (1, n)
    losses = torch.full((epochs, rows), float("nan"), dtype=a.dtype, device=a.device)
    w = w0.unsqueeze(0).repeat(rows, 1)  # (R, p)
    neg_lr = -lrs.unsqueeze(1)  # (R, 1)
    live = torch.arange(rows, device=a.device)  # original row of each row still training
    diverged_at = np.zeros(rows, dtype=np.int64)
    final = torch.full((rows, p), float("nan"), dtype=torch.float64)
    buf = torch.zeros_like(w)  # momentum buffer / Adam's first moment
    sq = torch.zeros_like(w)  # Adam's second moment
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    watched = {}
    row, epochs_watched = watch if watch is not None else (-1, set())
    start = 0
    while start < epochs and len(live):
        stop = min(start + check_every, epochs)
        chunk = torch.empty(stop - start, len(live), dtype=a.dtype, device=a.device)  # (epochs, live rows)
        out = chunk.unbind(0)  # one view per epoch, made once: no indexing in the loop
        for i, e in enumerate(range(start, stop)):
            r = torch.addmm(neg_y, w, at)  # (R, n) residuals
            torch.linalg.vecdot(r, r, out=out[i])  # (R,) Σ r², the sum loss
            g = r.mm(a_grad)  # (R, p) the gradient
            if optimizer == "sgd":
                w.addcmul_(g, neg_lr)
            elif optimizer == "momentum":
                buf.mul_(momentum).add_(g)  # torch.optim.SGD: buf = β buf + g (buf = g at the first step)
                w.addcmul_(buf, neg_lr)
            elif optimizer == "adam":
                t = e + 1
                buf.lerp_(g, 1 - beta1)
                sq.mul_(beta2).addcmul_(g, g, value=1 - beta2)
                denom = (sq.sqrt() / math.sqrt(1 - beta2**t)).add_(eps)
                w.addcdiv_(buf * (neg_lr / (1 - beta1**t)), denom)
            else:
                raise ValueError(f"descend does not do {optimizer!r}")
            if e + 1 in epochs_watched:  # a copy of R·p numbers; the row's position among the live rows is found later
                watched[e + 1] = (live, w.clone(), sq.clone())
        if reduction == "mean":
            chunk.div_(n)  # MSELoss's mean: the sum over n
        bad = ~torch.isfinite(chunk)
        keep = None
        if bad.any():  # sync point: once per chunk
            first = torch.where(bad.any(0), bad.float().argmax(0), -1).cpu().numpy()
            keep = first < 0
            for i in np.flatnonzero(~keep):
                diverged_at[int(live[i])] = start + int(first[i]) + 1
                chunk[int(first[i]) :, i] = float("nan")  # nothing after the first non-finite loss
        losses[start:stop].index_copy_(1, live, chunk)
        if keep is not None and not keep.all():  # drop the diverged rows from the batch
            k = torch.from_numpy(np.flatnonzero(keep)).to(a.device)
            live, w, buf, sq, neg_lr = live[k], w[k], buf[k], sq[k], neg_lr[k]
        start = stop
        if on_chunk is not None:
            on_chunk(start, losses[:start])
    final[live.cpu()] = w.double().cpu()
    kept = {}  # the watched row's own numbers (a diverged row's later epochs are cut by the caller)
    for e, (rows_then, w_then, sq_then) in watched.items():
        at = (rows_then == row).nonzero()
        if len(at):
            kept[e] = (w_then[int(at[0, 0])], sq_then[int(at[0, 0])])
    loss = losses[:start].double().cpu().numpy()
    return Descent(loss=loss, diverged_at=diverged_at, weights=final.numpy(), watched=kept)


def lbfgs(a: torch.Tensor, y: torch.Tensor, w0: torch.Tensor, config: PolyConfig, on_progress=None):
    """L-BFGS (torch.optim, strong-Wolfe line search) on nn.Linear's parameters through the
    shared loop. Returns (History, final coefficients (p,) float64)."""
    weight = w0[:-1].reshape(1, -1).clone().requires_grad_()  # (1, degree), nn.Linear's layout
    bias = w0[-1:].clone().requires_grad_()  # (1,)
    x, target = a[:, :-1], y.unsqueeze(1)  # (n, degree), (n, 1)
    optimizer = torch.optim.LBFGS([weight, bias], lr=config.lr, line_search_fn="strong_wolfe")

    def loss_fn(step: int = 0) -> torch.Tensor:
        return F.mse_loss(F.linear(x, weight, bias), target, reduction=config.reduction)

    every = curvature.every_for(config.epochs, SHARPNESS_MEASUREMENTS)
    probe = curvature.Probe([loss_fn], [weight, bias], optimizer, every=every, steps=config.epochs, seed=config.seed)
    params = {"weight": weight, "bias": bias}
    history = train(params, optimizer, loss_fn, config.epochs, on_progress=on_progress, sharpness=probe)
    sharp = probe.frame(history.steps_run)
    return history, torch.cat([weight.detach()[0], bias.detach()]).double().cpu().numpy(), sharp


def posted_loop(config: PolyConfig, lr: float, epochs: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The posted pipeline in plain PyTorch, one learning rate at a time: nn.Linear(degree, 1),
    nn.MSELoss, torch.optim, on the CPU. The reference the fast path is tested against (and the
    benchmark's "posted" side). Returns (loss per epoch up to the first non-finite one, final
    coefficients [weight..., bias])."""
    x, y = make_data(config)
    dtype = DTYPES[config.dtype]
    x_data = torch.tensor(features(config, x), dtype=dtype)  # (n, degree): the post's float64 list, cast
    y_data = torch.tensor(y, dtype=dtype).unsqueeze(1)  # (n, 1)
    model = torch.nn.Linear(config.degree, 1, dtype=dtype)
    w0 = torch.from_numpy(init_weights(config)).to(dtype)
    with torch.no_grad():
        model.weight.copy_(w0[:-1].unsqueeze(0))
        model.bias.copy_(w0[-1:])
    criterion = torch.nn.MSELoss(reduction=config.reduction)
    if config.optimizer == "sgd":
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    elif config.optimizer == "momentum":
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=config.momentum)
    else:
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(config.epochs if epochs is None else epochs):
        y_pred = model(x_data)
        loss = criterion(y_pred, y_data)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.detach())
    loss = torch.stack(losses).double().numpy()
    bad = np.flatnonzero(~np.isfinite(loss))
    loss = loss[: bad[0]] if len(bad) else loss
    return loss, torch.cat([model.weight.detach()[0], model.bias.detach()]).double().numpy()


def scan_rates(config: PolyConfig, limit: float) -> np.ndarray:
    """The learning rates of the scan: 24 over six decades around the stability limit `limit`
    (Adam: five decades around its lr), the edge at 0.9, 0.99, 1.01 and 1.1 × the limit, and the
    configured lr (not for L-BFGS, whose lr is not an SGD step). The limit itself is left out:
    there |1 - lr·λmax| = 1 and rounding decides."""
    if config.optimizer == "adam":
        return np.unique(np.r_[config.lr * np.logspace(-3, 2, 25), config.lr])
    decades = np.logspace(-4, 2, 25)
    grid = limit * np.r_[decades[~np.isclose(decades, 1)], 0.9, 0.99, 1.01, 1.1]
    return np.unique(grid if config.optimizer == "lbfgs" else np.r_[grid, config.lr])


# ---------------------------------------------------------------------------- learning-rate range test

LR_FIND_BELOW, LR_FIND_ABOVE = 100.0, 10.0  # the range: from 100× below min(lr, limit) to 10× above max(lr, limit)
LR_FIND_STEPS_PER_DECADE = 500  # the rate grows ×1.0046 a step: the explosion lands within ~1.3× the limit


def lr_find_range(config: PolyConfig) -> tuple[float, float, int]:
    """(lr_min, lr_max, steps) of the range test: two decades below the smaller of the lr and the
    stability limit (Adam: its lr), one above the larger; 500 steps a decade (1500 to 4000)."""
    limit = config.lr if config.optimizer == "adam" else stable_limit(config)
    lo, hi = min(config.lr, limit) / LR_FIND_BELOW, max(config.lr, limit) * LR_FIND_ABOVE
    steps = int(np.clip(round(LR_FIND_STEPS_PER_DECADE * math.log10(hi / lo)), 1500, 4000))
    return lo, hi, steps


def lr_find(config: PolyConfig, device: torch.device, on_progress=None) -> RunResult:
    """The learning-rate range test (fastai's lr_find) on these settings: nn.Linear's parameters
    and torch.optim (SGD, SGD with momentum, Adam) through the shared loop, the rate growing
    exponentially each step. Along the steepest direction each step multiplies the error by
    |1 - lr·λmax|, so the loss explodes once the rate passes 2/λmax (2(1+β)/λmax with momentum),
    a little later than the rule: the error there starts at rounding level and needs some steps
    to grow. L-BFGS picks its own step length: the test does not apply (ValueError)."""
    if config.optimizer == "lbfgs":
        raise ValueError("the learning-rate range test does not apply to lbfgs: it picks its own step by line search")
    dtype = DTYPES[config.dtype]
    x, y = make_data(config)
    features_ = torch.from_numpy(features(config, x)).to(device, dtype)  # (n, degree)
    target = torch.from_numpy(y).to(device, dtype).unsqueeze(1)  # (n, 1)
    w0 = torch.from_numpy(init_weights(config)).to(device, dtype)
    weight = w0[:-1].reshape(1, -1).clone().requires_grad_()  # (1, degree), nn.Linear's layout
    bias = w0[-1:].clone().requires_grad_()  # (1,)
    params = [weight, bias]
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=config.lr)
    else:
        beta = config.momentum if config.optimizer == "momentum" else 0.0
        optimizer = torch.optim.SGD(params, lr=config.lr, momentum=beta)

    def loss_fn(step: int) -> torch.Tensor:
        return F.mse_loss(F.linear(features_, weight, bias), target, reduction=config.reduction)

    lo, hi, steps = lr_find_range(config)
    return lrfind.range_test(
        {"weight": weight, "bias": bias},
        optimizer,
        loss_fn,
        base_lr=config.lr,
        lr_min=lo,
        lr_max=hi,
        steps=steps,
        on_progress=on_progress,
    )


# ---------------------------------------------------------------------------- run


def reference(config: PolyConfig) -> PolyConfig | None:
    """The run to compare with: the posted settings, on the user's points when there are any (how
    the posted recipe does on your data); None when those settings cannot fit your points."""
    ref = dataclasses.replace(AS_POSTED, points=config.points)
    return None if check(ref) else ref


def run(config: PolyConfig, device: torch.device, on_progress=None) -> RunResult:
    dtype = DTYPES[config.dtype]
    x, y = make_data(config)
    a64 = design(config, x)  # (n, p) float64
    a = torch.from_numpy(a64).to(device, dtype)  # what the model sees: the features in its dtype
    y_t = torch.from_numpy(y).to(device, dtype)
    w0 = torch.from_numpy(init_weights(config)).to(device, dtype)

    # the curvature of the loss the model trains on (its features as rounded to dtype), in float64
    lam = eigenvalues(a.double().cpu().numpy(), config.reduction)
    coef_star = closed_form(a64, y)
    loss_star = loss_np(a64, y, coef_star, config.reduction)

    # L-BFGS picks its own step by line search: it has no lr to scan, so the scan shows plain SGD
    scanned = "sgd" if config.optimizer == "lbfgs" else config.optimizer
    limit = stable_lr(lam[-1], scanned, config.momentum)
    rates = scan_rates(config, limit)
    if config.optimizer == "lbfgs":
        history, theta, sharp = lbfgs(a, y_t, w0, config, _shifted(on_progress, 0, 2 * config.epochs))
        main, offset, total = None, config.epochs, 2 * config.epochs  # progress: L-BFGS, then the scan
    else:
        main, offset, total = int(np.flatnonzero(rates == config.lr)[0]), 0, config.epochs  # the lr is a row

    def on_chunk(done: int, loss: torch.Tensor) -> None:
        if on_progress is not None:
            curve = history.loss if main is None else loss[:, main].double().cpu().numpy()
            on_progress(Progress(offset + done, total, curve))

    d = descend(
        a,
        y_t,
        w0,
        torch.from_numpy(rates).to(device, dtype),
        epochs=config.epochs,
        optimizer=scanned,
        momentum=config.momentum,
        reduction=config.reduction,
        on_chunk=on_chunk,
        watch=(main, set(curvature.schedule(config.epochs, sharpness_every(config)).tolist()))
        if main is not None
        else None,
    )
    if main is not None:
        at = int(d.diverged_at[main])
        loss = d.loss[:, main]
        history = History(loss=loss[: at - 1] if at else loss, diverged_at=at or None, layers=None)
        theta = d.weights[main]
        sharp = sharpness(config, a, y_t, d.watched, history.steps_run)
    scan = pd.DataFrame(
        {
            "lr": rates,
            "initial_loss": d.loss[0],
            "final_loss": d.loss[-1],  # NaN where the row diverged
            "diverged": d.diverged_at > 0,
            "diverged_at": d.diverged_at,
            "current": (rates == config.lr) if main is not None else False,
            "relative_lr": rates / limit,
        }
    )
    scan["grew"] = ~scan["diverged"] & (scan["final_loss"] > scan["initial_loss"])
    return _result(config, x, y, a64, lam, (coef_star, loss_star), history, theta, scan, limit, sharp)


SHARPNESS_MEASUREMENTS = 6  # epochs whose sharpness is measured (every k-th, the first and the last)


def sharpness_every(config: PolyConfig) -> int:
    return curvature.every_for(config.epochs, SHARPNESS_MEASUREMENTS)


def sharpness_limit(config: PolyConfig) -> float:
    """The line for the (preconditioned) sharpness: 2/lr for SGD, 2(1+β)/lr with momentum, 38/lr for
    Adam; NaN for L-BFGS."""
    beta = 0.9 if config.optimizer == "adam" else config.momentum  # Adam's β1 (torch's default), as descend uses it
    return curvature.limit(config.optimizer, config.lr, beta)


def sharpness(config: PolyConfig, a: torch.Tensor, y: torch.Tensor, watched: dict, steps_run: int) -> pd.DataFrame:
    """The measured sharpness of the loss as nn.Linear + MSELoss computes it (through autograd's double
    backward, not the closed form) at the weights `descend` watched; preconditioned by Adam's second
    moment for Adam. The loss is quadratic, so for SGD it must equal λmax of 2AᵀA (/n): the tests hold
    it to that."""
    weight = torch.empty(1, config.degree, dtype=a.dtype, device=a.device, requires_grad=True)
    bias = torch.empty(1, dtype=a.dtype, device=a.device, requires_grad=True)
    features_, target = a[:, :-1], y.unsqueeze(1)  # (n, degree), (n, 1)

    def loss() -> torch.Tensor:
        return F.mse_loss(F.linear(features_, weight, bias), target, reduction=config.reduction)

    records, start, g = [], None, torch.Generator().manual_seed(config.seed)
    for epoch in sorted(e for e in watched if e <= steps_run):
        w, sq = watched[epoch]
        with torch.no_grad():
            weight.copy_(w[:-1].unsqueeze(0))
            bias.copy_(w[-1:])
        pre = None
        if config.optimizer == "adam":
            inverse = curvature.adam_preconditioner(sq, epoch)
            pre = [inverse[:-1].unsqueeze(0), inverse[-1:]]
        s = curvature.top_eigenvalue(loss, [weight, bias], precondition=pre, start=start, generator=g)
        start = s.vector if math.isfinite(s.value) else None
        records.append((epoch, s))
    kind = curvature.variant(config.optimizer == "adam", 1)
    warm = curvature.warmup(config.optimizer)
    return curvature.frame(records, sharpness_limit(config), lr=config.lr, variant=kind, warmup=warm)


def _shifted(on_progress, offset: int, total: int):
    """The shared loop's progress, placed at `offset` of `total` steps."""
    if on_progress is None:
        return None

    def shifted(p: Progress) -> None:
        on_progress(Progress(offset + p.step, total, p.loss))

    return shifted


_SUPERSCRIPT = {k: str(k).translate(str.maketrans("0123456789", "⁰¹²³⁴⁵⁶⁷⁸⁹")) for k in range(2, 21)}


def _slowest(config: PolyConfig, lam_min: float) -> float:
    """Epochs per factor e along the flattest direction for (heavy-ball) gradient descent; NaN for
    Adam and L-BFGS, whose steps are not lr × gradient."""
    if config.optimizer not in ("sgd", "momentum"):
        return math.nan
    if lam_min <= 0:
        return math.inf
    return (1 - config.momentum if config.optimizer == "momentum" else 1) / (config.lr * lam_min)


def _result(config, x, y, a64, lam, optimum, history: History, theta, scan, limit, sharp) -> RunResult:
    coef_star, loss_star = optimum
    diverged = history.diverged_at is not None or not np.all(np.isfinite(theta))
    final = math.inf if diverged else float(history.loss[-1]) if history.steps_run else math.nan
    raw = to_raw(config, x)
    coefficients = raw @ theta if not diverged else np.full(config.degree + 1, np.nan)
    closed = raw @ coef_star

    lo, hi = x_range(config)
    span = hi - lo
    grid = np.linspace(lo - 0.05 * span, hi + 0.05 * span, 401)
    curves = pd.DataFrame(
        {
            "x": grid,
            "truth": np.nan if config.points else truth(grid),  # your own points have no known truth
            "fitted": np.polyval(coefficients, grid),
            "closed_form": np.polyval(closed, grid),
        }
    )
    terms = [f"x{_SUPERSCRIPT[k]}" if k > 1 else ("x" if k == 1 else "1") for k in range(config.degree, -1, -1)]
    coef_frame = pd.DataFrame({"term": terms, "fitted": coefficients, "closed_form": closed})
    lam_min, lam_max = float(lam[0]), float(lam[-1])
    stable, unstable = scan[~scan["diverged"]], scan[scan["diverged"]]
    # the optimum is only a meaningful reference when it is not zero to rounding (interpolation)
    ratio = final / loss_star if loss_star > 1e-12 * float(np.sum(y * y)) else math.nan

    metrics = {
        "final_loss": final,
        "closed_form_loss": loss_star,
        "loss_ratio": ratio,
        "max_stable_lr": 2 / lam_max,
        "max_stable_lr_momentum": 2 * (1 + config.momentum) / lam_max,
        "condition_number": lam_max / lam_min if lam_min > 0 else math.inf,
        "lambda_min": lam_min,
        "lambda_max": lam_max,
        "design_condition_number": float(np.linalg.cond(a64)),
        "diverged": diverged,
        "diverged_at": history.diverged_at,
        "epochs_run": history.steps_run,
        # epochs per factor e along the flattest direction: 1/(lr·λmin), (1-β)/(lr·λmin) with momentum
        "slowest_direction_epochs": _slowest(config, lam_min),
        "coefficients": [float(c) for c in coefficients],
        "closed_form_coefficients": [float(c) for c in closed],
        "scan_optimizer": "sgd" if config.optimizer == "lbfgs" else config.optimizer,
        "scan_limit": limit if config.optimizer != "adam" else math.nan,
        "scan_last_stable_lr": float(stable["lr"].max()) if len(stable) else math.nan,
        "scan_first_diverged_lr": float(unstable["lr"].min()) if len(unstable) else math.nan,
    }
    metrics |= curvature.metrics(sharp, sharpness_limit(config))
    return RunResult(
        metrics=metrics,
        history=history_frame(history, sharpness=curvature.column(sharp, history.steps_run)),
        frames={
            "points": pd.DataFrame({"x": x, "y": y}),
            "curves": curves,
            "coefficients": coef_frame,
            "eigenvalues": pd.DataFrame({"index": np.arange(1, len(lam) + 1), "eigenvalue": lam}),
            "scan": scan,
            "sharpness": sharp,
        },
    )


# ---------------------------------------------------------------------------- checks


def cost(config: PolyConfig) -> Cost:
    """Seconds on the 2-core CPU: the scan trains ~30 copies at once, so an epoch costs a fixed
    part (a few small ops: interpreter-bound) and the copies' matmuls over the points; L-BFGS
    adds up to 20 evaluations per epoch through autograd."""
    rows, n, p = 30, size(config), config.degree + 1
    epoch = 2e-5 + 4 * rows * n * p * 2.5e-10
    lbfgs = 2.5e-3 * config.epochs if config.optimizer == "lbfgs" else 0.0
    return Cost(0.05 + config.epochs * epoch + lbfgs, "epochs")


def check(config: PolyConfig) -> list[str]:
    """Rules across settings: a non-empty x range, enough distinct x values for the coefficients, a
    bounded workload, and a design matrix that the dtype can resolve (condition number below 1/eps)."""
    p = config.degree + 1
    if config.points:
        few = points.check(config.points, min_distinct=p)
        if few:
            distinct = len({x for x, _ in config.points})
            lower = f"use degree <= {distinct - 1} or " if distinct > 1 else ""
            return [f"{few[0]} for the {p} coefficients of a degree-{config.degree} polynomial ({lower}more x values)"]
    elif config.x_min >= config.x_max:
        return [f"x_max: must be greater than x_min (got x_min {config.x_min:g}, x_max {config.x_max:g})"]
    elif p > config.n_points:
        return [
            f"degree: a degree-{config.degree} polynomial has {p} coefficients, more than the "
            f"{config.n_points} distinct points can determine; use degree <= {config.n_points - 1} or more n_points"
        ]
    problems = []
    n, what = size(config), "your points" if config.points else "n_points"
    if n * config.epochs > MAX_POINT_EPOCHS:
        problems.append(
            f"epochs: {what} × epochs may be at most {MAX_POINT_EPOCHS:,} here (got {n:,} × "
            f"{config.epochs:,}); use fewer epochs or fewer points"
        )
    if config.optimizer == "lbfgs" and config.epochs > LBFGS_MAX_EPOCHS:
        problems.append(
            f"epochs: at most {LBFGS_MAX_EPOCHS:,} with lbfgs (each of its steps runs up to 20 iterations and a "
            f"line search); got {config.epochs:,}"
        )
    eps = torch.finfo(DTYPES[config.dtype]).eps
    kappa = condition(config)
    if not kappa * eps < 1:
        lo, hi = x_range(config)
        where = f"{'your points, x in ' if config.points else ''}[{lo:g}, {hi:g}]"
        problems.append(
            f"degree: in the {config.basis} basis on {where} the degree-{config.degree} "
            f"design matrix has condition number {kappa:.2g}, beyond what {config.dtype} resolves (1/eps = "
            f"{1 / eps:.2g}); use a lower degree"
            + (", the legendre basis" if config.basis != "legendre" else "")
            + (", or float64" if config.dtype == "float32" else "")
        )
    return problems


# ---------------------------------------------------------------------------- diagnosis


def _lr_for(config: PolyConfig, scale: float = 0.9, **changes) -> float:
    """`scale` × the stability limit of `config`'s optimizer after `changes`, to 2 significant digits."""
    new = dataclasses.replace(config, **changes)
    return float(f"{scale * stable_limit(new):.2g}")


def _kappa_for(config: PolyConfig, **changes) -> float:
    new = dataclasses.replace(config, **changes)
    x, _ = make_data(new)
    lam = eigenvalues(design(new, x), new.reduction)
    return float(lam[-1] / lam[0])


def diagnose(config: PolyConfig, result: RunResult) -> list[Finding]:
    """The measured evidence for each problem in `config`, with the settings that fix it."""
    m = result.metrics
    found = []
    gd = config.optimizer in ("sgd", "momentum")
    limit = m["max_stable_lr_momentum"] if config.optimizer == "momentum" else m["max_stable_lr"]
    limit_name = "2(1+β)/λmax" if config.optimizer == "momentum" else "2/λmax"
    if gd and config.lr > limit:
        growth = abs(1 - config.lr * m["lambda_max"])
        when = f"the loss overflowed at epoch {m['diverged_at']}" if m["diverged_at"] else "the loss grew every epoch"
        scan = result.frames["scan"]
        above, below = scan[scan["relative_lr"] > 1], scan[scan["relative_lr"] < 1]
        blew = int((above["diverged"] | above["grew"]).sum())
        went_down = int((~below["diverged"] & ~below["grew"]).sum())
        found.append(
            Finding(
                "lr-above-limit",
                f"lr {config.lr:g} is above {limit_name} = {limit:.3g}",
                f"Along the steepest direction of the loss (λmax = {m['lambda_max']:.3g}) each plain step multiplies "
                f"the error by |1 - lr·λmax| = {growth:.3g} > 1, so it grows instead of shrinking: {when}. In the "
                f"scan, {blew} of the {len(above)} learning rates above the limit blew up and {went_down} of the "
                f"{len(below)} below it went down. Measured on the loss as nn.Linear and MSELoss compute it "
                f"(power iteration on Hessian-vector products): λmax = {m['sharpness_max']:.6g}.",
                {"lr": float(f"{0.9 * limit:.2g}")},
            )
        )
    above = curvature.above_line(m, config.lr)
    if above is not None and not (gd and config.lr > limit):  # plain SGD above 2/λmax has its own card above
        evidence, lr = above
        found.append(Finding("above-stability-line", "lr above the stability line", evidence, {"lr": lr}))
    if gd and m["condition_number"] > 1e3:
        lo, hi = x_range(config)
        fix = {"basis": "legendre", "lr": _lr_for(config, basis="legendre")}
        after = (
            "the run diverged before that mattered"
            if m["diverged"]
            else f"after it the loss is still {m['loss_ratio']:.3g}× the least-squares optimum"
        )
        found.append(
            Finding(
                "ill-conditioned",
                f"Condition number {m['condition_number']:.2g}: re-base the polynomial",
                f"The Hessian's eigenvalues span {m['lambda_min']:.2g} to {m['lambda_max']:.2g}. The step must stay "
                f"below {limit_name} = {limit:.3g} for the steepest direction, and at lr {config.lr:g} the flattest "
                f"direction shrinks by a factor e only every {m['slowest_direction_epochs']:.2g} epochs (the budget "
                f"is {config.epochs:,}): {after}. Powers of x on [{lo:g}, {hi:g}] are nearly "
                f"parallel vectors; Legendre polynomials of x mapped to [-1, 1] are nearly orthogonal "
                f"(condition number {_kappa_for(config, basis='legendre'):.3g}).",
                fix,
            )
        )
    if config.reduction == "sum" and gd:  # Adam's steps do not depend on the loss's scale; L-BFGS searches
        n = size(config)
        # 4× the points on the same range: each of yours four times, or a 4× finer linspace
        more = _lr_for(config, scale=1.0, **({"points": config.points * 4} if config.points else {"n_points": 4 * n}))
        verdict = "this lr would diverge there" if config.lr > more else "smaller than at n"
        found.append(
            Finding(
                "sum-reduction",
                "A sum loss ties the step to the number of points",
                f"The gradient of a sum over n = {n} points is {n}× the mean's, and so is every eigenvalue of the "
                f"Hessian: the stable limit shrinks as points are added. Here {limit_name} = {limit:.3g}; "
                f"with {4 * n} points on the same range it is {more:.3g} ({verdict}). With the mean, "
                f"lr {config.lr * n:.3g} takes the same steps as lr {config.lr:g} on the sum, for any n.",
                {"reduction": "mean", "lr": float(f"{config.lr * n:.3g}")},
            )
        )
    if config.optimizer == "adam" and m["condition_number"] > 1e3 and m["loss_ratio"] > 2:
        found.append(
            Finding(
                "adam-is-not-a-rebase",
                "Adam rescales each weight, not the directions",
                f"Adam divides each coefficient's step by its own gradient scale, which fixes badly scaled axes, "
                f"but the flat directions of this loss are combinations of the powers of x (condition number "
                f"{m['condition_number']:.2g}): after {m['epochs_run']:,} epochs the loss is still "
                f"{m['loss_ratio']:.3g}× the optimum.",
                {"basis": "legendre"},
            )
        )
    if config.optimizer == "lbfgs" and config.dtype == "float32" and m["loss_ratio"] > 2:
        eps = torch.finfo(torch.float32).eps
        kappa_a = m["design_condition_number"]
        found.append(
            Finding(
                "float32",
                f"float32 cannot resolve a condition number of {m['condition_number']:.2g}",
                f"float32 keeps about 7 digits (eps = {eps:.2g}). The design matrix has condition number "
                f"{kappa_a:.2g} (the Hessian's is its square), so rounding in the 7th digit can move the "
                f"least-squares coefficients by up to {kappa_a:.2g} × eps ≈ {kappa_a * eps:.1%}, and near the "
                f"optimum the gradient is lost in rounding: L-BFGS stops {m['loss_ratio']:.3g}× above the optimum. "
                "In float64 (16 digits) it reaches it.",
                {"dtype": "float64"},
            )
        )
    return found


CASE = Case(
    name="poly",
    short="Polynomial fit",
    icon=":material/function:",
    emoji="📈",
    why=WHY,
    title="Fitting a polynomial with nn.Linear crawls, or explodes",
    symptom="The loss is still about 1 after 10,000 epochs, and any learning rate above about 1e-4 blows up at once.",
    page="pages/3_Polynomial_fit.py",
    config_cls=PolyConfig,
    presets=PRESETS,
    settings=SETTINGS,
    run=run,
    check=check,
    cost=cost,
    reference=reference,
    # a candidate rate is checked on the full budget: the run trains its whole scan at once, in milliseconds
    trial=lambda config, lr: dataclasses.replace(config, lr=lr),
    serial=lambda config: True,  # 4 weights on a few points: ops of microseconds, bound by the interpreter
)
