"""Case 4: linear regression that only converges for small, unshuffled batches.

As posted (PyTorch Lightning, one `nn.Linear(1, 1)`): 1000 points on y = -4x + 0.05·noise,
x = linspace(0, 1, 1000); `F.mse_loss(preds, y)`, Adam lr 1e-2, 100 epochs, swept over the
batch sizes `int(x) for x in linspace(10, 1000, 100)` with shuffle on and off.

Two causes, both measured here:
- the dataset keeps the noise as (n, 1, 1), so a batch of targets is (B, 1, 1) against
  predictions (B, 1), and `mse_loss` broadcasts them to (B, B, 1): every prediction is
  compared with every target of its batch. That loss is smallest when every prediction is the
  batch's mean target (slope 0). Unshuffled small batches hold neighbouring x, whose targets
  are nearly equal, so there it barely matters; shuffled batches span the whole line.
- the budget is 100 *epochs*: batch size 10 takes 10,000 Adam steps and batch size 1000 takes
  100, and Adam moves a weight by about lr per step: 100 steps of 0.01 cannot carry the slope
  from its random start to -4, bug or no bug.

Speed: the sweep trains every batch size at once. Both losses are quadratics in (w, b) whose
coefficients are batch means (see `quadratic`), so a step needs five numbers per batch, and
Adam runs on vectors that hold every batch size. Measured on the 2-core CPU, shared with other
jobs (bench/linreg.py, min of 7): the posted 100-batch-size sweep with shuffling in 0.42 s, both
shuffle settings in 0.49 s; as plain loops, one per batch size, the same work took 39 s with the
batches sliced from tensors and 354 s through a DataLoader over the posted Dataset. Tests check it
against separate plain runs (a DataLoader over the posted Dataset, the real `F.mse_loss`,
`torch.optim.Adam`) on the same permutations.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from core import curvature, nets, rng
from core.case import Case, Cost, Finding
from core.settings import Setting
from core.train import History, Progress, RunResult, history_frame, train


@dataclass(frozen=True)
class LinregConfig:
    mode: str = "sweep"  # sweep: every batch size of the sweep; single: one run at batch_size
    target_shape: str = "as-posted"  # as-posted: targets (B, 1, 1) against predictions (B, 1); fixed: (B, 1)
    shuffle: str = "both"  # reshuffle every epoch (DataLoader shuffle=True); both: the sweep trains each
    budget: str = "epochs"  # epochs: `epochs` passes over the data, as posted; steps: `steps` optimizer steps
    epochs: int = 100
    steps: int = 5000  # for budget steps; enough for every batch size to reach the fit (measured, seeds 0-9)
    batch_size: int = 10  # the single run's batch size
    batch_sizes_from: int = 10  # the sweep: int(x) for x in linspace(from, to, count), as posted
    batch_sizes_to: int = 1000
    batch_sizes_count: int = 100
    optimizer: str = "adam"
    lr: float = 1e-2
    n_points: int = 1000  # x = linspace(0, 1, n_points)
    noise: float = 0.05  # std of the Gaussian noise on y
    slope: float = -4.0  # y = slope·x + intercept + noise
    intercept: float = 0.0
    seed: int = 0


AS_POSTED = LinregConfig()
PRESETS = {
    "as-posted": AS_POSTED,
    # the first cause only: targets (B, 1); large batches still take too few steps
    "fixed-shape": dataclasses.replace(AS_POSTED, target_shape="fixed"),
    # both causes: targets (B, 1), and the same number of optimizer steps for every batch size
    "fixed": dataclasses.replace(AS_POSTED, target_shape="fixed", budget="steps"),
}

WHY = {
    "as-posted": "The post: targets (B, 1, 1) broadcast against (B, 1) predictions, and a budget of 100 epochs.",
    "fixed-shape": "The first cause fixed (targets (B, 1)); large batches still take too few steps.",
    "fixed": "Both causes fixed: targets (B, 1) and the same number of optimizer steps for every batch size.",
}

MAX_N = 100_000
SETTINGS = (
    Setting("mode", "sweep: every batch size of the sweep; single: one run at batch_size", choices=("sweep", "single")),
    Setting(
        "target_shape",
        "as-posted: targets (B, 1, 1) against predictions (B, 1), broadcast to (B, B, 1); fixed: targets (B, 1)",
        choices=("as-posted", "fixed"),
    ),
    Setting(
        "shuffle",
        "reshuffle the data every epoch: true, false, or both (the sweep trains each)",
        choices=("true", "false", "both"),
    ),
    Setting(
        "budget",
        "epochs: the same passes over the data for every batch size (as posted); steps: the same "
        "number of optimizer steps",
        choices=("epochs", "steps"),
    ),
    Setting("epochs", "passes over the data (budget epochs)", lo=1, hi=10_000),
    Setting("steps", "optimizer steps for every batch size (budget steps)", lo=1, hi=100_000),
    Setting("batch_size", "the single run's batch size (at most n_points)", lo=1, hi=MAX_N),
    Setting(
        "batch_sizes_from", "the sweep's smallest batch size: int(x) for x in linspace(from, to, count)", lo=1, hi=MAX_N
    ),
    Setting("batch_sizes_to", "the sweep's largest batch size (at most n_points)", lo=1, hi=MAX_N),
    Setting("batch_sizes_count", "how many batch sizes the sweep trains", lo=1, hi=1000),
    Setting("optimizer", "adam (as posted) or sgd (plain gradient descent)", choices=("adam", "sgd")),
    Setting("lr", "learning rate", lo=0, hi=10, lo_open=True),
    Setting("n_points", "data points, x = linspace(0, 1, n_points)", lo=10, hi=MAX_N),
    Setting("noise", "std of the Gaussian noise added to y", lo=0, hi=10),
    Setting("slope", "the true slope of y = slope·x + intercept", lo=-100, hi=100),
    Setting("intercept", "the true intercept", lo=-100, hi=100),
    Setting("seed", "random seed for the noise, the initial line and the shuffling", lo=0, hi=2**31 - 1),
)

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults, as the post uses them

# What a run may cost here (see `check`). Measured on the 2-core CPU: a plain step ~0.1-0.25 ms;
# a shuffled epoch in the sweep ~15 µs per 1000 samples; the sweep's loop ~15 µs per step.
MAX_PAIRS = 2000  # largest batch whose (B, B) broadcast loss a single run may form (4M floats)
MAX_SINGLE_STEPS = 50_000
MAX_RUN_STEPS = 100_000  # the sweep's longest run
MAX_SWEEP_STEPS = 3_000_000  # summed over the sweep's runs (one loss per step is kept)
MAX_SWEEP_SAMPLES = 300_000_000  # samples in the shuffled runs' epochs, summed


# ---------------------------------------------------------------------------- data and batches


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


# ---------------------------------------------------------------------------- one run, as posted


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
    shuffle = config.shuffle == "true"

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
    if config.shuffle == "true":
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
        "shuffle": config.shuffle == "true",
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


# ---------------------------------------------------------------------------- the sweep, batched


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


def loss_at(w, b, means: np.ndarray, broadcast: bool) -> np.ndarray:
    """The batches' losses at the line (w, b) (arrays broadcast against means[..., 0])."""
    a, x, c, y, d = quadratic(means, broadcast)
    return w * w * a + 2 * w * b * x + b * b - 2 * w * c - 2 * b * y + d


class BatchMeans:
    """One run's batches as the five means its loss needs, step after step (`take(k)`: the next k).

    Drawn epoch by epoch from the run's own generator with `epoch_orders`, so they are the
    batches that the plain run sees.
    """

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int, shuffle: bool, generator: torch.Generator):
        n = len(x)
        self.table = moments(x, y)  # (n, 5)
        self.n, self.bs, self.generator = n, batch_size, generator
        self.starts = np.arange(0, n, batch_size)
        self.counts = (np.minimum(self.starts + batch_size, n) - self.starts)[:, None]  # (nb, 1)
        self.shuffle = shuffle and len(self.starts) > 1  # one batch of everything: the same sums each epoch
        self.epoch = consecutive_means(self.table, batch_size)  # (nb, 5): the batches in order
        self.buffer = np.empty((0, 5))
        self.pos = 0  # steps handed out so far

    def take(self, k: int) -> np.ndarray:
        nb = len(self.starts)
        if not self.shuffle:  # every epoch the same batches
            out = self.epoch[(self.pos + np.arange(k)) % nb]
        else:
            parts = [self.buffer]
            have = len(self.buffer)
            while have < k:
                epochs = min(-(-(k - have) // nb), max(1, 200_000 // self.n))  # bounded memory
                parts.append(self._shuffled(epochs))
                have += epochs * nb
            buffer = np.concatenate(parts)
            out, self.buffer = buffer[:k], buffer[k:]
        self.pos += k
        return out

    def _shuffled(self, epochs: int) -> np.ndarray:
        """(epochs · nb, 5): the batch means of the next `epochs` shuffled epochs."""
        orders = epoch_orders(self.n, epochs, True, self.generator).numpy()  # (E, n)
        bs = self.bs
        # gather every batch but the first (np.take: 3x faster than fancy indexing here); the first
        # batch is the total minus the others, which halves the work when a batch is most of the data
        rest = np.take(self.table, orders[:, bs:], axis=0)  # (E, n - bs, 5)
        sums = np.empty((epochs, len(self.starts), 5))
        sums[:, 1:] = np.add.reduceat(rest, self.starts[1:] - bs, axis=1)
        sums[:, 0] = self.table.sum(0) - sums[:, 1:].sum(1)
        return (sums / self.counts).reshape(-1, 5)


CHUNK = 2048  # steps whose batch means are held at once (memory: CHUNK × runs × 5 numbers)


def fit_batched(streams: list[BatchMeans], lengths: np.ndarray, start, config: LinregConfig, on_progress=None):
    """Adam (or SGD) on every run at once from its batch means -> (params (2, runs), [loss of each step]).

    Run k takes lengths[k] steps from streams[k]. The runs are sorted longest first, so the runs
    still training at step t are a prefix of the vectors. Adam as torch.optim.Adam computes it:
    m.lerp_(g, 1 - β1); v = β2 v + (1 - β2) g²; p -= lr / (1 - β1^t) · m / (sqrt(v) / sqrt(1 - β2^t) + eps).
    """
    broadcast = config.target_shape == "as-posted"
    runs = len(lengths)
    order = np.argsort(-lengths, kind="stable")
    p = np.empty((2, runs))  # row 0: slope w, row 1: intercept b; column k is run order[k]
    p[0], p[1] = start
    m, v = np.zeros((2, runs)), np.zeros((2, runs))
    total = int(lengths.max())
    losses = [np.empty(n) for n in lengths[order]]
    beta1, beta2, eps, lr = BETA1, BETA2, EPS, config.lr

    t0 = 0
    with np.errstate(all="ignore"):  # a diverging run becomes inf or NaN: a result, not an error
        for end in np.unique(np.r_[lengths, np.arange(CHUNK, total, CHUNK)]):
            live = int(np.count_nonzero(lengths >= end))  # the runs that train for steps t0 .. end-1
            means = np.stack([streams[order[k]].take(end - t0) for k in range(live)], axis=1)  # (L, live, 5)
            a, x, c, y, _ = quadratic(means, broadcast)  # each (L, live)
            # the gradient at step t is g = ax[t] · w + x1[t] · b - cy[t]  (rows: d/dw, d/db)
            ax = 2 * np.stack([a, x], axis=1)  # (L, 2, live)
            x1 = 2 * np.stack([x, np.ones_like(x)], axis=1)
            cy = 2 * np.stack([c, y], axis=1)
            seen = np.empty((end - t0, 2, live))  # the parameters each step saw, for its loss
            pv, mv, vv = p[:, :live], m[:, :live], v[:, :live]  # views: the updates land in p, m, v
            for i, t in enumerate(range(t0, end)):
                seen[i] = pv
                g = ax[i] * pv[0] + x1[i] * pv[1] - cy[i]
                if config.optimizer == "adam":
                    mv += (1 - beta1) * (g - mv)
                    vv *= beta2
                    vv += (1 - beta2) * g * g
                    denom = np.sqrt(vv) / math.sqrt(1 - beta2 ** (t + 1)) + eps
                    pv -= (lr / (1 - beta1 ** (t + 1))) * (mv / denom)
                else:
                    pv -= lr * g
            loss = loss_at(seen[:, 0], seen[:, 1], means, broadcast)  # (L, live)
            for k in range(live):
                losses[k][t0:end] = loss[:, k]
            t0 = end
            if on_progress is not None:  # the longest run's loss so far
                on_progress(Progress(t0, total, losses[0][:t0].copy()))

    params = np.empty_like(p)
    params[:, order] = p
    by_run: list[np.ndarray] = [np.empty(0)] * runs
    for k, j in enumerate(order):
        by_run[j] = losses[k]
    return params, by_run


def posted_warning(config: LinregConfig) -> str | None:
    """The warning F.mse_loss raises for one batch shaped as the config shapes it (None if none)."""
    _, y = make_data(config)
    bs = config.batch_sizes_from
    caught: list[str] = []
    mse_loss_recording(torch.zeros(bs, 1), y[:bs], caught)  # predictions (B, 1), as nn.Linear gives them
    return caught[0] if caught else None


def run_sweep(config: LinregConfig, device: torch.device, on_progress=None) -> RunResult:
    """Every (shuffle, batch size) run of the sweep, trained at once from its batch means.

    NumPy on the CPU whatever the device: a step is a few hundred numbers, which a GPU would
    only slow down with launch latency.
    """
    x_t, y_t = make_data(config)
    x, y = x_t[:, 0].double().numpy(), y_t.reshape(-1).double().numpy()
    runs = [(bs, sh) for sh in shuffles(config) for bs in sweep_sizes(config)]
    lengths = np.array([steps_for(config, bs) for bs, _ in runs])
    streams = [BatchMeans(x, y, bs, sh, shuffle_generator(config.seed, bs)) for bs, sh in runs]
    w0, b0 = init_line(config.seed)
    params, losses = fit_batched(streams, lengths, (w0, b0), config, on_progress)

    rows = [
        {
            "batch_size": bs,
            "shuffle": sh,
            "slope": float(params[0, k]),
            "intercept": float(params[1, k]),
            "final_loss": float(losses[k][-1]),  # the last batch's loss, as Lightning logs train_loss
            "steps": int(lengths[k]),
        }
        for k, (bs, sh) in enumerate(runs)
    ]
    warning = posted_warning(config)
    metrics = {
        "sweep": rows,
        "broadcast_warning": warning is not None,
        "warning": warning,
        "initial_slope": w0,
        "initial_intercept": b0,
    }
    history = pd.concat([_thin(losses[k], bs, sh) for k, (bs, sh) in enumerate(runs)], ignore_index=True)
    frames = {"sweep": pd.DataFrame(rows), "reference": reference(config, w0)}
    return RunResult(metrics=metrics, history=history, frames=frames)


def reference(config: LinregConfig, start_slope: float) -> pd.DataFrame:
    """What the sweep's charts mark (one row): the data's slope and intercept, the loss meant at the
    data's line (the noise variance; NaN without noise) and, for Adam, the fewest steps that reach the slope."""
    needed = steps_needed(config, start_slope) if config.optimizer == "adam" else math.nan
    floor = config.noise**2 if config.noise > 0 else math.nan
    row = {"slope": config.slope, "intercept": config.intercept, "loss_floor": floor, "steps_needed": needed}
    return pd.DataFrame([row])


def _thin(loss: np.ndarray, bs: int, shuffle: bool, points: int = 300) -> pd.DataFrame:
    """About `points` steps of one run's loss, log-spaced so that the early steps show, and the last."""
    idx = np.unique(np.r_[np.geomspace(1, len(loss), points).astype(int) - 1, len(loss) - 1])
    return pd.DataFrame({"batch_size": bs, "shuffle": shuffle, "step": idx + 1, "loss": loss[idx]})


# ---------------------------------------------------------------------------- run, checks, diagnosis


def detail_config(config: LinregConfig) -> LinregConfig:
    """The one run shown in detail beside a sweep: batch_size, shuffled as the posted code was
    (unless the sweep is unshuffled only)."""
    return dataclasses.replace(config, mode="single", shuffle="false" if config.shuffle == "false" else "true")


def settle(config: LinregConfig) -> tuple[LinregConfig, list[str]]:
    """A link's mode=single with shuffle=both (the sweep's default): one run is shuffled or not, so it
    is shuffled, as the posted code was; every other setting of the link stays."""
    if config.mode == "single" and config.shuffle == "both":
        note = "mode=single is one run, shuffled or not: shuffle=both became true, as the posted code shuffles"
        return dataclasses.replace(config, shuffle="true"), [note]
    return config, []


def run(config: LinregConfig, device: torch.device, on_progress=None) -> RunResult:
    if config.mode == "single":
        return run_single(config, device, on_progress)
    return run_sweep(config, device, on_progress)


def cost(config: LinregConfig) -> Cost:
    """Seconds on the 2-core CPU. A single run goes through autograd and torch.optim: a fixed
    part per step, plus the batch (B², the (B, B) broadcast, as posted). The sweep trains every
    run at once from batch means: per step of all its runs a few microseconds, plus the samples
    the shuffled epochs draw."""
    n = config.n_points
    if config.mode == "single":
        b = min(config.batch_size, n)
        pairs = b * b if config.target_shape == "as-posted" else b
        return Cost(0.05 + steps_for(config, b) * (4e-4 + 2.5e-9 * pairs), config.budget)
    sizes = [min(bs, n) for bs in sweep_sizes(config)]
    steps = len(shuffles(config)) * sum(steps_for(config, bs) for bs in sizes)
    samples = sum(math.ceil(steps_for(config, bs) / n_batches(n, bs)) * n for bs in sizes if bs < n)
    samples *= int(config.shuffle != "false")
    return Cost(0.1 + 2e-6 * steps + 1e-8 * samples, config.budget)


def check(config: LinregConfig) -> list[str]:
    n = config.n_points
    problems = []
    if config.batch_size > n:
        problems.append(f"batch_size: must be at most n_points ({n}) (got {config.batch_size})")
    if config.batch_sizes_to > n:
        problems.append(f"batch_sizes_to: must be at most n_points ({n}) (got {config.batch_sizes_to})")
    if config.batch_sizes_from > config.batch_sizes_to:
        problems.append(
            f"batch_sizes_from: must be at most batch_sizes_to ({config.batch_sizes_to}) "
            f"(got {config.batch_sizes_from})"
        )
    elif config.batch_sizes_count > config.batch_sizes_to - config.batch_sizes_from + 1:
        distinct = config.batch_sizes_to - config.batch_sizes_from + 1
        problems.append(
            f"batch_sizes_count: at most {distinct}, one per batch size from {config.batch_sizes_from} "
            f"to {config.batch_sizes_to} (got {config.batch_sizes_count})"
        )
    if problems:
        return problems
    budget = config.budget  # the setting that sets the number of steps
    what = "fewer epochs or larger batches" if budget == "epochs" else "fewer steps"
    if config.mode == "single":
        if config.shuffle == "both":
            problems.append("shuffle: a single run (mode single) is shuffled or not: true or false (got both)")
        if config.target_shape == "as-posted" and config.batch_size > MAX_PAIRS:
            problems.append(
                f"batch_size: with target_shape as-posted the loss forms a (B, B) matrix of differences; "
                f"at most {MAX_PAIRS} here (got {config.batch_size})"
            )
        single = steps_for(config, config.batch_size)
        if single > MAX_SINGLE_STEPS:
            problems.append(
                f"{budget}: a single run at batch_size {config.batch_size} would take {single:,} optimizer steps; "
                f"at most {MAX_SINGLE_STEPS:,} here ({what})"
            )
    if config.mode == "sweep":
        sizes, k = sweep_sizes(config), len(shuffles(config))
        longest = steps_for(config, sizes[0])
        steps = k * sum(steps_for(config, bs) for bs in sizes)
        samples = sum(math.ceil(steps_for(config, bs) / n_batches(n, bs)) * n for bs in sizes if bs < n)
        samples *= int(config.shuffle != "false")
        if longest > MAX_RUN_STEPS:
            problems.append(
                f"{budget}: batch size {sizes[0]} would take {longest:,} optimizer steps; "
                f"at most {MAX_RUN_STEPS:,} per run here ({what})"
            )
        elif steps > MAX_SWEEP_STEPS:
            problems.append(
                f"{budget}: the sweep would take {steps:,} optimizer steps over its {k * len(sizes)} runs; "
                f"at most {MAX_SWEEP_STEPS:,} here ({what}, or a smaller batch_sizes_count)"
            )
        elif samples > MAX_SWEEP_SAMPLES:
            problems.append(
                f"{budget}: the shuffled runs would draw {samples:,} samples; at most {MAX_SWEEP_SAMPLES:,} "
                f"here ({what}, or a smaller batch_sizes_count)"
            )
    return problems


REACHED = 0.1  # a run "reaches" the slope when it ends within this of it


def steps_needed(config: LinregConfig, start_slope: float) -> int:
    """Adam moves a weight by at most about lr per step: the fewest steps that can carry the
    slope from its start to the true slope."""
    return math.ceil(abs(config.slope - start_slope) / config.lr)


def diagnose(config: LinregConfig, result: RunResult, detail: RunResult | None = None) -> list[Finding]:
    """The measured evidence for each cause present in `config`, with the setting change that fixes it.
    detail: the single run shown beside a sweep (its sharpness is measured; the sweep's is not)."""
    m = result.metrics
    found = []
    sweep = result.frames.get("sweep")
    if config.target_shape == "as-posted":
        if sweep is not None:
            evidence = _broadcast_evidence(config, sweep)
        else:
            evidence = (
                f"This run ended at slope {m['slope']:.2f} and intercept {m['intercept']:.2f} "
                f"(the data: {config.slope:g} and {config.intercept:g}). "
            )
        evidence += (
            "Predictions are (B, 1) but targets (B, 1, 1), so `F.mse_loss` broadcasts them to (B, B, 1) and "
            "averages all B² pairs (p_i − y_j)², of which only B pair a prediction with its own target. That "
            "loss is smallest when every prediction is the batch's mean target: slope 0. Shuffled batches span "
            "the whole line, so every step pulls the slope towards 0; unshuffled small batches hold neighbouring "
            "x, whose targets are nearly equal, so there the wrong loss is close to the right one."
        )
        if m.get("warning"):
            evidence += f' PyTorch said so: "{m["warning"]}"'
        found.append(
            Finding(
                "broadcast", "The loss compares every prediction with every target", evidence, {"target_shape": "fixed"}
            )
        )
    short = _too_few_steps(config, result)
    if short is not None:
        found.append(short)
    single = detail if detail is not None else result if "sweep" not in result.frames else None
    above = curvature.above_line(single.metrics, config.lr) if single is not None else None
    if above is not None:
        evidence, lr = above
        found.append(Finding("above-stability-line", "lr above the stability line", evidence, {"lr": lr}))
    return found


def reach(config: LinregConfig, sweep: pd.DataFrame) -> dict[bool, dict]:
    """By shuffle setting of a sweep: how many batch sizes end within REACHED of the true slope,
    the largest of them, and the run that came closest."""
    out = {}
    for shuffled, part in sweep.groupby("shuffle", sort=False):
        error = (part["slope"] - config.slope).abs()
        ok = part[error <= REACHED]
        best = part.loc[error.idxmin()] if error.notna().any() else part.iloc[0]
        out[bool(shuffled)] = {
            "runs": len(part),
            "reached": len(ok),
            "largest_reached": int(ok["batch_size"].max()) if len(ok) else None,
            "best_slope": float(best["slope"]),
            "best_batch_size": int(best["batch_size"]),
        }
    return out


def _broadcast_evidence(config: LinregConfig, sweep: pd.DataFrame) -> str:
    parts = []
    for shuffled, r in reach(config, sweep).items():
        label = "with shuffling" if shuffled else "without shuffling"
        if r["reached"] == 0:
            parts.append(
                f"{label}, no batch size reaches slope {config.slope:g} (the closest: {r['best_slope']:.2f} at "
                f"batch size {r['best_batch_size']})"
            )
        else:
            parts.append(
                f"{label}, {r['reached']} of {r['runs']} batch sizes end within {REACHED} of it (the largest: "
                f"{r['largest_reached']})"
            )
    return "Measured: " + "; ".join(parts) + ". " if parts else ""


def _too_few_steps(config: LinregConfig, result: RunResult) -> Finding | None:
    m = result.metrics
    needed = steps_needed(config, m["initial_slope"])
    sweep = result.frames.get("sweep")
    steps = sweep.drop_duplicates("batch_size") if sweep is not None else None
    fewest = int(steps["steps"].min()) if steps is not None else m["steps_run"]
    if config.budget != "epochs" or config.optimizer != "adam" or fewest >= needed:
        return None
    evidence = (
        f"The budget is {config.epochs} epochs, so a run takes {config.epochs} × ceil({config.n_points} / B) steps: "
    )
    if steps is not None:
        big = steps.iloc[-1]
        short = steps[steps["steps"] < needed]
        evidence += (
            f"batch size {steps.iloc[0]['batch_size']} takes {int(steps.iloc[0]['steps']):,} and batch size "
            f"{big['batch_size']} only {int(big['steps']):,}. "
        )
    else:
        evidence += f"batch size {config.batch_size} takes {fewest:,}. "
    evidence += (
        f"Adam moves a weight by about lr = {config.lr:g} per step, and the slope starts at "
        f"{m['initial_slope']:.2f}: reaching {config.slope:g} takes at least {needed:,} steps"
    )
    if steps is not None:
        evidence += f", which {len(short)} of the {len(steps)} batch sizes do not get, bug or no bug."
    else:
        evidence += ", more than this run gets."
    if sweep is not None and config.target_shape == "fixed":  # the bug fixed: what is left is this cause
        row = sweep[sweep["batch_size"] == sweep["batch_size"].max()].iloc[0]
        evidence += f" Measured: batch size {row['batch_size']} ends at slope {row['slope']:.2f}."
    return Finding(
        "too-few-steps",
        "Large batches take too few optimizer steps",
        evidence,
        {"budget": "steps", "steps": AS_POSTED.steps},
    )


CASE = Case(
    name="linreg",
    short="Linear regression",
    icon=":material/trending_down:",
    emoji="📉",
    why=WHY,
    title="Linear regression converges only for small, unshuffled batches",
    symptom="Only small batches without shuffling reach the slope -4; with shuffling no batch size does.",
    page="pages/4_Linear_regression.py",
    config_cls=LinregConfig,
    presets=PRESETS,
    settings=SETTINGS,
    run=run,
    check=check,
    cost=cost,
    settle=settle,
    serial=lambda config: True,  # two weights per run: ops of microseconds, bound by the interpreter
)


# ---------------------------------------------------------------------------- the posted pipeline


class LineFunction(Dataset):
    """The post's Dataset, with its noise drawn from the run's generator instead of the global
    one (the post: Normal(0, 1).sample((n,)) * noise, then .unsqueeze(1)). `fixed` leaves out
    that unsqueeze: the targets become (1,) per item, (B, 1) per batch."""

    def __init__(self, a, b, n, x0=0, x1=1, noise=0, generator=None, fixed=False):
        self._a = a
        self._b = b
        self._x = torch.linspace(x0, x1, n, requires_grad=False)
        self._x = self._x.unsqueeze(1)
        self._noise = torch.randn(n, 1, generator=generator) * noise
        if not fixed:
            self._noise = self._noise.unsqueeze(1)

    def __len__(self):
        return len(self._x)

    def __getitem__(self, idx):
        x = self._x[idx]
        y = self._a * x + self._b + self._noise[idx]
        return x, y


def posted_dataset(config: LinregConfig) -> LineFunction:
    """The post's Dataset for these settings (the oracle of the tests, the benchmark's posted side)."""
    gen = rng.generator(config.seed, 0)
    fixed = config.target_shape == "fixed"
    return LineFunction(config.slope, config.intercept, config.n_points, noise=config.noise, generator=gen, fixed=fixed)
