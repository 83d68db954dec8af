"""Case 4's data and batches: the posted Dataset's tensors, each run's own shuffling stream, the
budget in steps, a batch's loss as a quadratic in (w, b) from five batch means, and PyTorch's own
F.mse_loss on a batch, with its warning."""

from __future__ import annotations

import math
import threading
import warnings

import numpy as np
import torch
import torch.nn.functional as F

from core import nets, rng
from core.cases.linreg.config import LinregConfig


def make_data(config: LinregConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """x (n, 1) and the targets as the posted Dataset yields them: (n, 1, 1) as posted, (n, 1) fixed.

    The post's LineFunction: x = linspace(0, 1, n).unsqueeze(1); noise drawn as (n, 1) times
    `noise`, then .unsqueeze(1) -> (n, 1, 1); item i is (x[i], a * x[i] + b + noise[i]), the
    target of shape (1, 1). Built here for all i at once, with the same float32 arithmetic.
    """
    n = config.n_points
    x = torch.linspace(0, 1, n).unsqueeze(1)  # (n, 1)
    noise = torch.randn(n, 1, generator=rng.generator(config.seed, 0)) * config.noise  # (n, 1)
    y = config.slope * x + config.intercept + noise  # (n, 1)
    if config.target_shape == "as-posted":
        y = y.unsqueeze(1)  # (n, 1, 1), as the posted noise.unsqueeze(1) makes it
    return x, y


def init_line(seed: int) -> tuple[float, float]:
    """nn.Linear(1, 1)'s default init (weight and bias from U(-1, 1)), from the run's own generator.
    Every batch size starts from this line, so the batch size is the only thing that differs."""
    w, b = nets.init_layer(1, 1, bias=True, init="default", generator=rng.generator(seed, 1))
    return float(w), float(b)


def shuffle_generator(seed: int, batch_size: int) -> torch.Generator:
    """Each batch size's own shuffling stream (stream 2 of the seed, the batch size in the low
    20 bits: batch sizes stay below 2^20, seeds below 2^31, so the seed fits in 64 bits), so a run
    draws the same batches alone or inside any sweep."""
    return torch.Generator(device="cpu").manual_seed(((seed * 1_000 + 2) << 20) + batch_size)


def epoch_orders(n: int, epochs: int, shuffle: bool, generator: torch.Generator) -> torch.Tensor:
    """(epochs, n) int32: the order in which each epoch visits the samples. Shuffled, each epoch is
    randperm(n) from the run's generator, as RandomSampler draws it; successive calls continue the
    stream, as successive epochs do. (DataLoader's RandomSampler also draws a spare permutation at
    the end of each epoch and DataLoader a worker seed, from the same generator: that changes which
    permutations come out, not how they are distributed, so they are not drawn here.)"""
    if not shuffle:
        return torch.arange(n, dtype=torch.int32).expand(epochs, n)
    orders = torch.empty(epochs, n, dtype=torch.int32)  # randperm's numbers, half the memory of int64
    for e in range(epochs):
        torch.randperm(n, generator=generator, out=orders[e])
    return orders


def n_batches(n: int, batch_size: int) -> int:
    return -(-n // batch_size)  # the last, partial batch is kept (DataLoader's drop_last=False)


def steps_for(config: LinregConfig, batch_size: int) -> int:
    """Optimizer steps of one run: epochs × batches per epoch, or the step budget."""
    if config.budget == "steps":
        return config.steps
    return config.epochs * n_batches(config.n_points, batch_size)


def sweep_sizes(config: LinregConfig) -> list[int]:
    """The post's `[int(x) for x in np.linspace(10, 1000, 100)]`, for the configured triple."""
    xs = np.linspace(config.batch_sizes_from, config.batch_sizes_to, config.batch_sizes_count)
    return list(dict.fromkeys(int(x) for x in xs))


def shuffles(config: LinregConfig) -> list[bool]:
    return {"true": [True], "false": [False], "both": [True, False]}[config.shuffle]


def moments(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """(n, 5): x, x², y, xy, y² of each sample, float64: the five numbers a batch's loss needs."""
    return np.stack([x, x * x, y, x * y, y * y], axis=1)


def consecutive_means(table: np.ndarray, batch_size: int) -> np.ndarray:
    """(nb, 5): the mean moments of consecutive batches of `table`'s rows (the last may be partial)."""
    starts = np.arange(0, len(table), batch_size)
    counts = np.minimum(starts + batch_size, len(table)) - starts
    return np.add.reduceat(table, starts, axis=0) / counts[:, None]


def quadratic(means: np.ndarray, broadcast: bool) -> tuple[np.ndarray, ...]:
    """The loss of a batch as a quadratic in (w, b), from the batch's mean moments (..., 5).

        loss(w, b) = w² A + 2wb X + b² - 2w C - 2b Y + D
        d/dw = 2 (w A + b X - C),   d/db = 2 (w X + b - Y)

    with A = mean x², X = mean x, Y = mean y, D = mean y², and C = mean xy for the loss the user
    meant, mean_i (w x_i + b - y_i)². The broadcast loss mean_ij (w x_i + b - y_j)² pairs every
    x with every y of the batch, so there C = X·Y: the same quadratic, except that x and y look
    uncorrelated, and it is smallest at w = 0, b = Y. Returns (A, X, C, Y, D).
    """
    x, xx, y, xy, yy = (means[..., i] for i in range(5))
    return xx, x, (x * y if broadcast else xy), y, yy


def gradient_terms(means: np.ndarray, broadcast: bool) -> tuple[np.ndarray, ...]:
    """The gradient of a batch's loss is affine in (w, b): (d/dw, d/db) = H (w, b) - r, with the
    Hessian H = 2 [[A, X], [X, 1]] (the same for both losses) and r = 2 (C, Y) (`quadratic`'s
    coefficients). -> (H_ww, H_wb, r_w, r_b), each of means.shape[:-1]; H_bb is 2."""
    a, x, c, y, _ = quadratic(means, broadcast)
    return 2 * a, 2 * x, 2 * c, 2 * y


def loss_at(w, b, means: np.ndarray, broadcast: bool) -> np.ndarray:
    """The batches' losses at the line (w, b) (arrays broadcast against means[..., 0])."""
    a, x, c, y, d = quadratic(means, broadcast)
    return w * w * a + 2 * w * b * x + b * b - 2 * w * c - 2 * b * y + d


def steps_needed(config: LinregConfig, start_slope: float) -> int:
    """Adam moves a weight by at most about lr per step: the fewest steps that can carry the
    slope from its start to the true slope."""
    return math.ceil(abs(config.slope - start_slope) / config.lr)


_WARNINGS = threading.Lock()  # catch_warnings swaps process-wide state: one capture at a time, kept short


def mse_loss_recording(preds: torch.Tensor, y: torch.Tensor, caught: list[str]) -> torch.Tensor:
    """The real F.mse_loss, with the size warning PyTorch raises appended verbatim to `caught`."""
    with _WARNINGS, warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        loss = F.mse_loss(preds, y)
    for r in records:
        text = str(r.message)
        if issubclass(r.category, UserWarning) and "target size" in text and text not in caught:
            caught.append(text)
    return loss
