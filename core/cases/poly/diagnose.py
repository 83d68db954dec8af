"""What the measurements of a run show, in words, each with the settings that fix it."""

from __future__ import annotations

import dataclasses

import torch

from core import curvature
from core.case import Finding
from core.cases.poly.basis import design, eigenvalues, make_data, size, stable_limit, x_range
from core.cases.poly.config import PolyConfig
from core.train import RunResult

# ---------------------------------------------------------------------------- diagnosis


def limit_label(optimizer: str) -> str:
    """The name of the stability limit of plain (heavy-ball) gradient descent."""
    return "2(1+β)/λmax" if optimizer == "momentum" else "2/λmax"


def stability_limit(config: PolyConfig, metrics: dict) -> tuple[float, str]:
    """The run's stability limit for plain gradient descent (2/λmax), or heavy-ball momentum's
    (2(1+β)/λmax), read from its metrics, and its name."""
    key = "max_stable_lr_momentum" if config.optimizer == "momentum" else "max_stable_lr"
    return metrics[key], limit_label(config.optimizer)


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
    limit, limit_name = stability_limit(config, m)
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
