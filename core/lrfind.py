"""The learning-rate range test (fastai's lr_find): grow the learning rate exponentially
over a short run, record the loss, stop when it explodes, and read candidate rates off the
curve with fastai's four rules (valley, its default since 2021; slide; minimum; steep).

A rule reads a curve, not the run you will make: each candidate is only a guess until a
short run with it has ended lower than one with the current rate (`best`).

It reuses the shared loop: `loss_fn` sets this step's rate on the optimizer before the
forward pass. The rates of several parameter groups keep their ratios to the base rate.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import torch

from core.train import ProgressFn, RunResult, train

EXPLODE = 4.0  # the test ends when the smoothed loss exceeds this many times its best
SMOOTHING = 0.9  # exponential moving average of the loss, debiased, as fastai does


def rate(step: int, steps: int, lr_min: float, lr_max: float) -> float:
    return lr_min * (lr_max / lr_min) ** (step / max(1, steps - 1))


def range_test(
    params: dict[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[int], torch.Tensor],
    *,
    base_lr: float,
    lr_min: float,
    lr_max: float,
    steps: int = 300,
    on_progress: ProgressFn | None = None,
) -> RunResult:
    ratios = [g["lr"] / base_lr for g in optimizer.param_groups]

    def stepped_loss(step: int) -> torch.Tensor:
        lr = rate(step, steps, lr_min, lr_max)
        for g, r in zip(optimizer.param_groups, ratios, strict=True):
            g["lr"] = lr * r
        return loss_fn(step)

    history = train(params, optimizer, stepped_loss, steps, check_every=25, on_progress=on_progress)
    lrs = np.array([rate(i, steps, lr_min, lr_max) for i in range(history.steps_run)])
    frame = analyse(lrs, history.loss)
    metrics = {
        **{f"{name}_lr": lr for name, lr in rules(frame, steps).items()},
        "lr_min": lr_min,
        "lr_max": lr_max,
        "steps_run": history.steps_run,
        "exploded_at_lr": float(frame["lr"].iloc[-1]) if len(frame) < len(lrs) or history.diverged_at else None,
    }
    return RunResult(metrics=metrics, history=frame, frames={"lr_find": frame})


def analyse(lrs: np.ndarray, loss: np.ndarray) -> pd.DataFrame:
    """Smooth the curve (debiased moving average, as fastai) and cut it where it explodes."""
    smooth = np.empty_like(loss)
    avg = 0.0
    for i, value in enumerate(loss):
        avg = SMOOTHING * avg + (1 - SMOOTHING) * value
        smooth[i] = avg / (1 - SMOOTHING ** (i + 1))
    keep = len(loss)
    best = np.inf
    for i, value in enumerate(smooth):
        best = min(best, value)
        if value > EXPLODE * best:
            keep = i + 1
            break
    return pd.DataFrame(
        {"step": np.arange(1, keep + 1), "lr": lrs[:keep], "loss": loss[:keep], "smoothed": smooth[:keep]}
    )


# ---------------------------------------------------------------------------- fastai's four rules
# As in fastai/callback/schedule.py (valley, slide, minimum, steep), on the smoothed losses with
# the first tenth of the planned steps and the last 5 recorded ones left out, as its lr_find does.

RULES = ("valley", "slide", "minimum", "steep")


def rules(frame: pd.DataFrame, planned_steps: int) -> dict[str, float | None]:
    """Each rule's rate; None for all when too little of the curve is left to read."""
    lrs = frame["lr"].to_numpy()[planned_steps // 10 : -5]
    losses = frame["smoothed"].to_numpy()[planned_steps // 10 : -5]
    if len(lrs) < 20:
        return dict.fromkeys(RULES)
    return {"valley": valley(lrs, losses), "slide": slide(lrs, losses), "minimum": minimum(lrs, losses),
            "steep": steep(lrs, losses)}  # fmt: skip


def valley(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The longest run of decreasing losses (a longest decreasing subsequence); the rate half-way
    through its middle third."""
    lds = np.ones(len(losses), dtype=int)  # length of the longest decreasing subsequence ending at i
    for i in range(1, len(losses)):
        higher = losses[:i] > losses[i]
        if higher.any():
            lds[i] = lds[:i][higher].max() + 1
    end = int(np.argmax(lds))  # the first index with the longest
    start = end - int(lds[end])
    third = (end - start) / 3
    return float(lrs[max(0, start + int(third) + int(third / 2))])


def slide(lrs: np.ndarray, losses: np.ndarray, lr_diff: int = 15, thresh: float = 0.005) -> float:
    """From the end of the curve, slide a window of `lr_diff` steps left while the loss's slope (per
    step) differs across it by more than `thresh`; the rate at the window's left end. (The threshold
    is in loss units: fastai's default, whatever the loss's scale.)"""
    grad = np.gradient(losses)
    right, left = -1, -1 - lr_diff
    found = lrs[left]
    while left >= -len(losses) and abs(grad[right] - grad[left]) > thresh:
        found = lrs[left]
        right, left = right - 1, left - 1
    return float(found)


def minimum(lrs: np.ndarray, losses: np.ndarray) -> float:
    """A tenth of the rate where the loss was lowest."""
    return float(lrs[int(np.argmin(losses))]) / 10


def steep(lrs: np.ndarray, losses: np.ndarray) -> float:
    """The rate where the loss fell fastest against log(lr)."""
    slope = np.diff(losses) / np.diff(np.log(lrs))
    return float(lrs[int(np.argmin(slope))])


# ---------------------------------------------------------------------------- checking the candidates


def candidates(metrics: dict, current: float) -> dict[float, list[str]]:
    """The rules' rates rounded to 3 significant figures (what a button would set), each with the
    rules that gave it; the current rate left out."""
    found: dict[float, list[str]] = {}
    for name in RULES:
        lr = metrics.get(f"{name}_lr")
        if lr:
            lr = float(f"{lr:.3g}")
            if lr != current:
                found.setdefault(lr, []).append(name)
    return found


def end_loss(result: RunResult) -> tuple[str, float]:
    """(what, value): how low a short run ended. The mean of its last tenth of steps (a minibatch
    loss is noisy; a large step may oscillate), in the page's unit (MSE where the run records it);
    inf when the run diverged."""
    column = "mse" if "mse" in result.history else "loss"
    if result.metrics.get("diverged"):
        return column, float("inf")
    values = result.history[column].to_numpy()
    if not len(values):
        return column, float("inf")
    return column, float(np.mean(values[-max(1, len(values) // 10) :]))


BEATS = 0.99  # a candidate is offered only when it ends at least 1% lower than the current rate


def best(measured: dict[float, float], current: float) -> float | None:
    """The candidate rate whose short run ended lowest, if it beat the current rate's; else None."""
    if not measured:
        return None
    lr = min(measured, key=measured.get)
    return lr if measured[lr] < BEATS * current else None
