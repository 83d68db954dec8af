"""The learning-rate range test (fastai's lr_find): grow the learning rate exponentially
over a short run, record the loss, stop when it explodes, and suggest the rate where the
loss fell fastest.

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
    frame, suggested = analyse(lrs, history.loss)
    metrics = {
        "suggested_lr": suggested,
        "lr_min": lr_min,
        "lr_max": lr_max,
        "steps_run": history.steps_run,
        "exploded_at_lr": float(frame["lr"].iloc[-1]) if len(frame) < len(lrs) or history.diverged_at else None,
    }
    return RunResult(metrics=metrics, history=frame, frames={"lr_find": frame})


def analyse(lrs: np.ndarray, loss: np.ndarray) -> tuple[pd.DataFrame, float | None]:
    """Smooth the curve, cut it where it explodes, and pick the steepest descent before the
    minimum (the gradient is taken against log10(lr))."""
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
    frame = pd.DataFrame(
        {"step": np.arange(1, keep + 1), "lr": lrs[:keep], "loss": loss[:keep], "smoothed": smooth[:keep]}
    )
    lowest = int(np.argmin(smooth[:keep])) if keep else 0
    if lowest < 3:
        return frame, None  # the loss never fell: no rate to suggest
    slope = np.gradient(np.log(np.maximum(smooth[: lowest + 1], 1e-300)), np.log10(lrs[: lowest + 1]))
    return frame, float(lrs[int(np.argmin(slope))])
