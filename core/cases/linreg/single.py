"""Case 4's second task: one run of the sweep in detail, as plain PyTorch.

nn.Linear(1, 1)'s two parameters, `F.mse_loss(preds, y)` on the batches as the posted Dataset
shapes them, torch.optim.Adam, at the config's `batch_size`, shuffled as the posted code was
(unless the sweep is unshuffled only). It shows what the sweep cannot: the tensors' shapes,
PyTorch's own warning, the (B, B) differences the loss averages and the batch sharpness.
"""

from __future__ import annotations

import math
import threading
import warnings

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from core import curvature, rng
from core.case import Cost, Task
from core.cases.linreg.config import BETA1, MAX_PAIRS, MAX_SINGLE_STEPS, LinregConfig
from core.cases.linreg.data import (
    consecutive_means,
    epoch_orders,
    init_line,
    loss_at,
    make_data,
    moments,
    n_batches,
    shuffle_generator,
    steps_for,
)
from core.train import History, RunResult, history_frame, train


def shuffled(config: LinregConfig) -> bool:
    """The single run is shuffled as the posted code was, unless the sweep is unshuffled only."""
    return config.shuffle != "false"


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


def make_optimizer(params: list[torch.Tensor], config: LinregConfig) -> torch.optim.Optimizer:
    if config.optimizer == "adam":  # the post's Adam; fused: the same update in one kernel (2x faster here)
        return torch.optim.Adam(params, lr=config.lr, fused=True)
    return torch.optim.SGD(params, lr=config.lr)


def run_single(config: LinregConfig, device: torch.device, on_progress=None) -> RunResult:
    """One plain PyTorch run: nn.Linear(1, 1)'s two parameters, `F.mse_loss(preds, y)` on the
    batches as the posted Dataset shapes them, Adam. Batches as DataLoader makes them (one
    permutation per epoch, the last partial batch kept), with the data kept on the device."""
    n, bs = config.n_points, config.batch_size
    x_cpu, y_cpu = make_data(config)
    x, y = x_cpu.to(device), y_cpu.to(device)
    w0, b0 = init_line(config.seed)
    w = torch.tensor([[w0]], device=device, requires_grad=True)  # (1, 1): nn.Linear(1, 1).weight
    b = torch.tensor([b0], device=device, requires_grad=True)  # (1,): its bias
    optimizer = make_optimizer([w, b], config)
    steps, nb = steps_for(config, bs), n_batches(n, bs)
    g = shuffle_generator(config.seed, bs)
    shuffle = shuffled(config)

    order = torch.empty(0)
    shapes: dict[int, tuple] = {}  # batch length -> (preds shape, targets shape)
    caught: list[str] = []
    last = []  # the sample indices of the latest full batch

    def loss_fn(step: int) -> torch.Tensor:
        nonlocal order
        j = step % nb
        if j == 0:  # a new epoch: its order
            order = epoch_orders(n, 1, shuffle, g)[0].to(device=device, dtype=torch.long)
        idx = order[j * bs : (j + 1) * bs]
        if len(idx) == bs:
            last[:] = [idx]
        preds = F.linear(x[idx], w, b)  # (B, 1)
        target = y[idx]  # (B, 1, 1) as posted, (B, 1) fixed
        if len(idx) not in shapes:  # the first batch of each size: its shapes and PyTorch's warning
            shapes[len(idx)] = (tuple(preds.shape), tuple(target.shape))
            return mse_loss_recording(preds, target, caught)
        # mse_loss broadcasts its two inputs (torch.broadcast_tensors) before it averages: doing
        # that here is the identical computation, without raising the warning again every step
        return F.mse_loss(*torch.broadcast_tensors(preds, target))

    probe = curvature.Probe(
        measure_losses(config, x, y, w, b),
        [w, b],
        optimizer,  # Adam: the preconditioned sharpness, against 38/lr
        every=curvature.every_for(steps, SHARPNESS_MEASUREMENTS),
        steps=steps,
        seed=config.seed,
    )
    params = {"weight": w, "bias": b}
    history = train(params, optimizer, loss_fn, steps, check_every=500, on_progress=on_progress, sharpness=probe)
    fit = (float(w.detach()), float(b.detach()))
    batches = (last[0].cpu(), order.cpu())  # the last full batch, and the last epoch's order
    sharp = probe.frame(history.steps_run)
    return _single_result(config, history, fit, (w0, b0), shapes, caught, (x_cpu, y_cpu), batches, sharp)


SHARPNESS_MEASUREMENTS = 40  # steps whose batch sharpness is measured (every k-th, the first and the last)
SHARPNESS_BATCHES = 4  # fixed batches it averages over


def measurement_batches(config: LinregConfig) -> list[torch.Tensor]:
    """The batch sharpness's batches, fixed for the run: shuffled, SHARPNESS_BATCHES batches of one
    permutation (the run's stream 3); not shuffled, SHARPNESS_BATCHES of the epoch's own consecutive
    batches, spread over it (unshuffled small batches each hold a narrow range of x, and so a
    different curvature)."""
    n, bs = config.n_points, config.batch_size
    if shuffled(config):
        order = torch.randperm(n, generator=rng.generator(config.seed, 3))
        return [order[i * bs : (i + 1) * bs] for i in range(min(SHARPNESS_BATCHES, n // bs))]
    full = n // bs  # the full batches of an epoch
    picks = np.unique(np.linspace(0, full - 1, SHARPNESS_BATCHES).round().astype(int)) if full else []
    return [torch.arange(j * bs, (j + 1) * bs) for j in picks]


def measure_losses(config: LinregConfig, x: torch.Tensor, y: torch.Tensor, w, b) -> list:
    """The run's own loss (`F.mse_loss` on the batch as the posted Dataset shapes it) on each
    measurement batch."""

    def loss_on(idx: torch.Tensor):
        idx = idx.to(x.device)
        return lambda: F.mse_loss(*torch.broadcast_tensors(F.linear(x[idx], w, b), y[idx]))

    return [loss_on(idx) for idx in measurement_batches(config)]


def batch_hessian(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(2, 2) the Hessian of a batch's loss in (w, b), closed form: 2 [[mean x², mean x], [mean x, 1]],
    for the loss meant and the broadcast one alike (see `quadratic`: they differ only in C)."""
    xb = x[idx]
    return 2 * np.array([[np.mean(xb * xb), np.mean(xb)], [np.mean(xb), 1.0]])


PAIRS_SHOWN = 40  # the heatmap shows at most this many rows and columns of the (B, B) matrix


def epoch_losses(x: np.ndarray, y: np.ndarray, order: np.ndarray, batch_size: int, lines, broadcast: bool):
    """The mean over one epoch's batches of each batch's loss, at each line (w, b): what training
    minimises, on average. -> [(loss as mse_loss averages it, loss meant)] per line."""
    means = consecutive_means(moments(x[order], y[order]), batch_size)  # (nb, 5): the epoch's batches
    return [tuple(float(np.mean(loss_at(w, b, means, bc))) for bc in (broadcast, False)) for w, b in lines]


def _single_result(config, history: History, fit, start, shapes, caught, data, batches, sharp) -> RunResult:
    (slope, intercept), (w0, b0), (x, y), (last_idx, order) = fit, start, data, batches
    xs, ys = x[:, 0].double().numpy(), y.reshape(-1).double().numpy()
    full = max(shapes)  # the full batch's shapes (the partial last batch may be smaller)
    preds_shape, target_shape = shapes[full]
    averaged = tuple(torch.broadcast_shapes(preds_shape, target_shape))

    # the last full batch the run trained on, under the final weights: what its loss compares
    i = last_idx.numpy()
    xb, yb = xs[i], ys[i]
    pb = slope * xb + intercept

    # the last epoch's mean batch loss, as mse_loss averaged it (over B² pairs when it broadcast) and
    # as meant, at the fitted line and at the data's line: which line each loss prefers
    lines = [(slope, intercept), (config.slope, config.intercept)]
    (at_fit, at_truth) = epoch_losses(xs, ys, order.numpy(), config.batch_size, lines, averaged != preds_shape)
    k = min(len(xb), PAIRS_SHOWN)
    pairs = pd.DataFrame(
        {
            "target": np.repeat(np.arange(k), k),  # j: the row of the (B, B) matrix
            "prediction": np.tile(np.arange(k), k),  # i: the column
            "difference": (pb[None, :k] - yb[:k, None]).ravel(),  # p_i - y_j
        }
    )
    every = max(1, len(xs) // 1000)
    frames = {
        "data": pd.DataFrame({"x": xs[::every], "y": ys[::every]}),
        "line": pd.DataFrame(
            {
                "x": [0.0, 1.0],
                "truth": [config.intercept, config.slope + config.intercept],
                "fit": [intercept, slope + intercept],
                "start": [b0, w0 + b0],
            }
        ),
        "batch": pd.DataFrame({"i": np.arange(len(xb)), "x": xb, "y": yb, "prediction": pb, "difference": pb - yb}),
        "pairs": pairs,
        "epoch_losses": pd.DataFrame(
            {
                "line": ["the fitted line", "the data's line"],
                "as mse_loss averaged it": [at_fit[0], at_truth[0]],
                "as meant": [at_fit[1], at_truth[1]],
            }
        ),
        "shapes": pd.DataFrame(
            {
                "tensor": ["predictions", "targets", "what mse_loss averages over"],
                "shape": [str(preds_shape), str(target_shape), str(averaged)],
                "numbers": [math.prod(preds_shape), math.prod(target_shape), math.prod(averaged)],
            }
        ),
    }
    metrics = {
        "slope": slope,
        "intercept": intercept,
        "final_loss": float(history.loss[-1]) if history.steps_run else math.nan,
        "steps_run": history.steps_run,
        "broadcast_warning": bool(caught),
        "warning": caught[0] if caught else None,
        "diverged": history.diverged_at is not None,
        "batch_size": config.batch_size,
        "shuffle": shuffled(config),
        "initial_slope": w0,
        "initial_intercept": b0,
        "epoch_loss_as_averaged": at_fit[0],  # the last epoch's batches, at the final weights
        "epoch_loss_meant": at_fit[1],
    }
    metrics |= curvature.metrics(sharp, float(sharp["limit"].iloc[0]) if len(sharp) else _limit(config))
    frames["sharpness"] = sharp
    history_table = history_frame(history, sharpness=curvature.column(sharp, history.steps_run))
    return RunResult(metrics=metrics, history=history_table, frames=frames)


def _limit(config: LinregConfig) -> float:
    return curvature.limit(config.optimizer, config.lr, BETA1)


def check_single(config: LinregConfig) -> list[str]:
    """What the single run refuses beyond the sweep's own rules (`sweep.check`)."""
    problems = []
    if config.target_shape == "as-posted" and config.batch_size > MAX_PAIRS:
        problems.append(
            f"batch_size: with target_shape as-posted the loss forms a (B, B) matrix of differences; "
            f"at most {MAX_PAIRS} here (got {config.batch_size})"
        )
    steps = steps_for(config, config.batch_size)
    if steps > MAX_SINGLE_STEPS:
        what = "fewer epochs or larger batches" if config.budget == "epochs" else "fewer steps"
        problems.append(
            f"{config.budget}: a single run at batch_size {config.batch_size} would take {steps:,} optimizer "
            f"steps; at most {MAX_SINGLE_STEPS:,} here ({what})"
        )
    return problems


def cost_single(config: LinregConfig) -> Cost:
    """Seconds on the 2-core CPU. The single run goes through autograd and torch.optim: a fixed part
    per step, plus the batch (B², the (B, B) broadcast, as posted)."""
    b = min(config.batch_size, config.n_points)
    pairs = b * b if config.target_shape == "as-posted" else b
    return Cost(0.05 + steps_for(config, b) * (4e-4 + 2.5e-9 * pairs), config.budget)


SINGLE = Task(run_single, check_single, cost_single)  # the case's task "single" (core/case.py's Task)
