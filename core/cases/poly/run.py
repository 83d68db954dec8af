"""One run of case 3: the as-posted fit (or L-BFGS), its curvature and closed form, and the
learning-rate scan around the stability limit, as one plain `RunResult`; and the rules across
settings and the cost estimate that come before it."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import torch

from core import curvature, points
from core.case import Cost
from core.cases.poly.basis import (
    closed_form,
    condition,
    design,
    eigenvalues,
    init_weights,
    loss_np,
    make_data,
    size,
    stable_lr,
    to_raw,
    truth,
    x_range,
)
from core.cases.poly.config import AS_POSTED, DTYPES, LBFGS_MAX_EPOCHS, MAX_POINT_EPOCHS, PolyConfig
from core.cases.poly.descend import descend, lbfgs, scan_rates
from core.cases.poly.sharpness import sharpness, sharpness_every, sharpness_limit
from core.train import History, Progress, RunResult, history_frame


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
    epoch = 2e-5 + 4 * rows * n * p * 1e-10  # 2,000 points, cubic: 9e-5 s an epoch measured on a quiet CPU
    lbfgs = 2.5e-3 * config.epochs if config.optimizer == "lbfgs" else 0.0
    return Cost.measured(0.05 + config.epochs * epoch + lbfgs, "epochs")


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
