"""Case 4's run: the whole sweep, every (shuffle, batch size) run trained at once from batch means.

Both losses are quadratics in (w, b) whose coefficients are batch means (`data.quadratic`), so a
step needs five numbers per batch, and Adam runs on vectors that hold every batch size. Measured
on the 2-core CPU, shared with other jobs (bench.py, min of 7): the posted 100-batch-size sweep
with shuffling in 0.42 s, both shuffle settings in 0.49 s; as plain loops, one per batch size, the
same work took 39 s with the batches sliced from tensors and 354 s through a DataLoader over the
posted Dataset. Tests check it against the standalone script's plain runs on the same permutations.

A sweep on a step budget (the "fixed" preset: 5000 steps for every batch size) shuffles ~2.5e8 sample
positions; `shuffle.shuffled_sums` draws each epoch's permutation from the run's own generator as
torch's randperm does and sums its batches in one compiled pass (0.71 s for that sweep on the 2-core
Xeon's two cores, 1.2 s on one, against 1.63 s with randperm, numpy's gather and reduceat), the streams
on both cores when the run has them (each stream has its own generator, so the batches do not depend
on which thread drew them).
"""

from __future__ import annotations

import contextlib
import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pandas as pd
import torch

from core.case import Cost
from core.cases.linreg import shuffle
from core.cases.linreg.config import BETA1, BETA2, EPS, MAX_RUN_STEPS, MAX_SWEEP_SAMPLES, MAX_SWEEP_STEPS, LinregConfig
from core.cases.linreg.data import (
    consecutive_means,
    epoch_orders,
    gradient_terms,
    init_line,
    loss_at,
    make_data,
    moments,
    mse_loss_recording,
    n_batches,
    shuffle_generator,
    shuffles,
    steps_for,
    steps_needed,
    sweep_sizes,
)
from core.threads import POLICY
from core.train import Progress, RunResult


class BatchMeans:
    """One run's batches as the five means its loss needs, step after step (`take(k)`: the next k).

    Drawn epoch by epoch from the run's own generator with `epoch_orders`, so they are the
    batches that the plain run sees. `order`: the order of the epoch the last step taken is in (drawn
    ahead, what is left of the draw is the rest of that epoch). One batch of everything has the same
    means whatever the order: it is not shuffled, unless `keep_order` asks for its orders all the same.
    """

    def __init__(
        self,
        x: np.ndarray,
        y: np.ndarray,
        batch_size: int,
        shuffle: bool,
        generator: torch.Generator,
        keep_order: bool = False,
    ):
        n = len(x)
        self.table = moments(x, y)  # (n, 5)
        self.n, self.bs, self.generator = n, batch_size, generator
        self.starts = np.arange(0, n, batch_size)
        self.counts = (np.minimum(self.starts + batch_size, n) - self.starts)[:, None]  # (nb, 1)
        self.shuffle = shuffle and (len(self.starts) > 1 or keep_order)
        self.order = np.arange(n)  # the epoch's order: the data in order until a shuffled epoch is drawn
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
        if shuffle.available():  # the same permutations, drawn and summed in one compiled pass
            sums, self.order = shuffle.shuffled_sums(self.table, self.bs, epochs, self.generator)
            return (sums / self.counts).reshape(-1, 5)
        orders = epoch_orders(self.n, epochs, True, self.generator).numpy()  # (E, n)
        self.order = orders[-1].copy()
        bs = self.bs
        # gather every batch but the first (np.take: 3x faster than fancy indexing here); the first
        # batch is the total minus the others, which halves the work when a batch is most of the data
        rest = np.take(self.table, orders[:, bs:], axis=0)  # (E, n - bs, 5)
        sums = np.empty((epochs, len(self.starts), 5))
        sums[:, 1:] = np.add.reduceat(rest, self.starts[1:] - bs, axis=1)
        sums[:, 0] = self.table.sum(0) - sums[:, 1:].sum(1)
        return (sums / self.counts).reshape(-1, 5)


CHUNK = 2048  # steps whose batch means are held at once (memory: CHUNK × runs × 5 numbers)


def adam_factors(t0: int, t1: int, lr: float) -> tuple[np.ndarray, np.ndarray]:
    """Adam's bias corrections of the steps t0 .. t1-1 (from 0): lr / (1 - β1^t) and sqrt(1 - β2^t), t from 1."""
    t = np.arange(t0 + 1, t1 + 1)
    return lr / (1 - BETA1**t), np.sqrt(1 - BETA2**t)


def adam_step(p, m, v, g, lr_t, root_t):
    """One step of Adam as torch.optim.Adam computes it, on p (a float, or an array of them) from its
    gradient g, with Adam's averages m and v and the step's `adam_factors` lr_t and root_t:
    m.lerp_(g, 1 - β1); v = β2 v + (1 - β2) g²; p -= lr_t · m / (sqrt(v) / root_t + eps). -> (p, m, v)."""
    m = m + (1 - BETA1) * (g - m)
    v = BETA2 * v + (1 - BETA2) * g * g
    return p - lr_t * (m / (v**0.5 / root_t + EPS)), m, v


def fit_batched(
    streams: list[BatchMeans], lengths: np.ndarray, start, config: LinregConfig, on_progress=None, draw=map
):
    """Adam (or SGD) on every run at once from its batch means -> (params (2, runs), [loss of each step]).

    Run k takes lengths[k] steps from streams[k]. The runs are sorted longest first, so the runs
    still training at step t are a prefix of the vectors. The gradient is `gradient_terms`'
    H (w, b) - r, the step `adam_step`'s (or SGD's p - lr g), on vectors of all the runs. `draw`: how the
    streams' next batches are taken, `map` or a thread pool's (the compiled shuffle releases the GIL).
    """
    broadcast = config.target_shape == "as-posted"
    runs = len(lengths)
    order = np.argsort(-lengths, kind="stable")
    p = np.empty((2, runs))  # row 0: slope w, row 1: intercept b; column k is run order[k]
    p[0], p[1] = start
    m, v = np.zeros((2, runs)), np.zeros((2, runs))
    total = int(lengths.max())
    losses = [np.empty(n) for n in lengths[order]]
    adam, lr = config.optimizer == "adam", config.lr

    t0 = 0
    with np.errstate(all="ignore"):  # a diverging run becomes inf or NaN: a result, not an error
        for end in np.unique(np.r_[lengths, np.arange(CHUNK, total, CHUNK)]):
            live = int(np.count_nonzero(lengths >= end))  # the runs that train for steps t0 .. end-1
            means = np.stack(list(draw(lambda s, k=end - t0: s.take(k), [streams[j] for j in order[:live]])), axis=1)
            h_ww, h_wb, r_w, r_b = gradient_terms(means, broadcast)  # each (L, live)
            # the gradient at step t is hw[t] · w + hb[t] · b - r[t]  (rows: d/dw, d/db)
            hw = np.stack([h_ww, h_wb], axis=1)  # (L, 2, live)
            hb = np.stack([h_wb, np.full_like(h_wb, 2.0)], axis=1)
            r = np.stack([r_w, r_b], axis=1)
            lrs, roots = (f.tolist() for f in adam_factors(t0, end, lr))
            seen = np.empty((end - t0, 2, live))  # the parameters each step saw, for its loss
            pv, mv, vv = p[:, :live], m[:, :live], v[:, :live]
            for i in range(end - t0):
                seen[i] = pv
                g = hw[i] * pv[0] + hb[i] * pv[1] - r[i]
                if adam:
                    pv, mv, vv = adam_step(pv, mv, vv, g, lrs[i], roots[i])
                else:
                    pv = pv - lr * g
            p[:, :live], m[:, :live], v[:, :live] = pv, mv, vv
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
    # the shuffled epochs on every core the run may have: each stream's own generator, so the same batches
    cores = POLICY.threads_for(heavy=True) if shuffle.available() and any(sh for _, sh in runs) else 1
    with ThreadPoolExecutor(cores) if cores > 1 else contextlib.nullcontext() as pool:
        draw = pool.map if pool is not None else map
        params, losses = fit_batched(streams, lengths, (w0, b0), config, on_progress, draw)

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


def cost(config: LinregConfig) -> Cost:
    """Seconds on the 2-core CPU. The sweep trains every run at once from batch means: per step of
    all its runs a few microseconds, plus the samples the shuffled epochs draw."""
    n = config.n_points
    sizes = [min(bs, n) for bs in sweep_sizes(config)]
    steps = len(shuffles(config)) * sum(steps_for(config, bs) for bs in sizes)
    samples = sum(math.ceil(steps_for(config, bs) / n_batches(n, bs)) * n for bs in sizes if bs < n)
    samples *= int(config.shuffle != "false")
    return Cost.measured(0.1 + 2e-6 * steps + 1e-8 * samples, config.budget)


def check(config: LinregConfig) -> list[str]:
    """The sweep's cross-setting rules and limits (the single run adds its own: `single.check_single`)."""
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
