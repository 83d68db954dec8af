"""Case 4's second task: one run of the sweep in detail.

nn.Linear(1, 1)'s two parameters, `F.mse_loss(preds, y)` on the batches as the posted Dataset
shapes them, torch.optim.Adam, at the config's `batch_size`, shuffled as the posted code was
(unless the sweep is unshuffled only). It shows what the sweep cannot: the tensors' shapes,
PyTorch's own warning, the (B, B) differences the loss averages and the batch sharpness.

It trains as the sweep trains each of its runs (sweep.py): a batch's loss is a quadratic in (w, b)
whose coefficients are five batch means (`data.quadratic`), so a step is a few dozen float
operations and the batch sharpness a 2×2 eigenvalue (`batch_hessian`, preconditioned by Adam's own
state as `curvature.Probe` reads it), in float64 on the CPU whatever the device. Measured on the
2-core CPU, shared with other jobs (medians of 7): the default 10,000 steps in 0.03 s and 50,000 at
batch size 1 in 0.09 s; as the plain PyTorch loop (autograd, fused torch.optim.Adam, the Probe's power
iterations) they took 4.1 s and about 40 s. The shapes and the warning come from real F.mse_loss
calls, on the first batch of each length.
tests/test_linreg.py checks the whole result against that plain loop, step by step.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from core import curvature, rng
from core.case import Cost, Task
from core.cases.linreg.config import BETA1, BETA2, EPS, MAX_PAIRS, MAX_SINGLE_STEPS, LinregConfig
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
    steps_for,
)
from core.cases.linreg.sweep import BatchMeans, adam_factors, adam_step
from core.train import History, Progress, RunResult, history_frame


def shuffled(config: LinregConfig) -> bool:
    """The single run is shuffled as the posted code was, unless the sweep is unshuffled only."""
    return config.shuffle != "false"


def run_single(config: LinregConfig, device: torch.device, on_progress=None) -> RunResult:
    """One run at batch_size: nn.Linear(1, 1) from its initial line, `F.mse_loss(preds, y)` on the
    batches as the posted Dataset shapes them, Adam (or SGD). Batches as DataLoader makes them (one
    permutation per epoch, the last partial batch kept). Trained from batch means as the sweep
    trains its runs, on the CPU whatever `device` (a step is a few dozen numbers)."""
    bs = config.batch_size
    x_t, y_t = make_data(config)
    x, y = x_t[:, 0].double().numpy(), y_t.reshape(-1).double().numpy()
    stream = BatchMeans(x, y, bs, shuffled(config), shuffle_generator(config.seed, bs), keep_order=True)
    w0, b0 = init_line(config.seed)
    history, ran, fit, v = train_single(stream, (w0, b0), config, on_progress)
    shapes, caught = posted_shapes(config, (x_t, y_t), (w0, b0), ran)
    batches = (last_full_batch(stream.order, bs, ran), stream.order)  # and the last epoch's order
    sharp = sharpness_frame(config, x, v, history.steps_run)
    return _single_result(config, history, fit, (w0, b0), shapes, caught, (x_t, y_t), batches, sharp)


CHECK_EVERY = 500  # steps between the checks for a non-finite loss (core.train's check_every for this run)
FLOAT32_MAX = float(torch.finfo(torch.float32).max)


def train_single(stream: BatchMeans, start, config: LinregConfig, on_progress=None):
    """The run's steps, CHECK_EVERY at a time, stopped as core.train's `train` stops: at the first check
    after a loss that the posted float32 model does not hold (NaN, or its F.mse_loss's sum of B² or B
    squared differences, which it divides only after, beyond float32's range: inf there).
    -> (History, steps taken, the final (slope, intercept) as float32 holds them (`float32_line`), Adam's v
    after each step taken (2, steps taken))."""
    broadcast, adam = config.target_shape == "as-posted", config.optimizer == "adam"
    steps, nb = steps_for(config, stream.bs), len(stream.starts)
    summed = stream.counts[:, 0] ** 2 if broadcast else stream.counts[:, 0]  # what mse_loss sums, per batch
    losses, vs = np.empty(steps), []
    params, state = start, (0.0, 0.0, 0.0, 0.0)
    done, diverged_at = 0, None
    with np.errstate(all="ignore"):  # a diverging run becomes inf or NaN: a result, not an error
        while done < steps and diverged_at is None:
            end = min(done + CHECK_EVERY, steps)
            means = stream.take(end - done)
            factors = adam_factors(done, end, config.lr)
            seen, params, state, v = descend(params, state, gradient_terms(means, broadcast), factors, adam, config.lr)
            losses[done:end] = loss_at(seen[0], seen[1], means, broadcast)
            vs.append(v)
            held = losses[done:end] * summed[np.arange(done, end) % nb] <= FLOAT32_MAX  # False for NaN
            if not held.all():
                diverged_at = done + int(np.argmin(held)) + 1
            elif on_progress is not None:
                on_progress(Progress(end, steps, losses[:end].copy()))
            done = end
    steps_run = diverged_at - 1 if diverged_at is not None else steps
    history = History(loss=losses[:steps_run].copy(), diverged_at=diverged_at, layers=None)
    return history, done, float32_line(params, seen), np.concatenate(vs, axis=1)


def float32_line(params: tuple[float, float], seen: np.ndarray) -> tuple[float, float]:
    """The final (slope, intercept) as the posted float32 model holds them: beyond float32's range inf,
    and NaN once a step saw a weight there (its predictions inf · x + b, then inf - inf). `seen`: the
    weights the last CHECK_EVERY steps saw (a weight out of the range puts that step's loss out of it
    too, and the run stops at that check)."""
    if (np.abs(seen) > FLOAT32_MAX).any():
        return math.nan, math.nan
    w, b = (math.copysign(math.inf, p) if abs(p) > FLOAT32_MAX else p for p in params)
    return w, b


def descend(params, state, terms, factors, adam: bool, lr: float):
    """The optimizer's steps on the run's two weights, as Python floats (numpy's cost per call would
    be most of a step): terms, `gradient_terms` of each step's batch; factors, `adam_factors` of each
    step. -> (the (w, b) each step saw (2, L), the (w, b) after, Adam's (m_w, m_b, v_w, v_b) after,
    Adam's v after each step (2, L))."""
    (w, b), (mw, mb, vw, vb) = params, state
    seen_w, seen_b, v_w, v_b = [], [], [], []
    for h_ww, h_wb, r_w, r_b, lr_t, root_t in zip(*(a.tolist() for a in (*terms, *factors)), strict=True):
        seen_w.append(w)
        seen_b.append(b)
        gw, gb = h_ww * w + h_wb * b - r_w, h_wb * w + 2 * b - r_b  # the gradient, H (w, b) - r
        if adam:
            w, mw, vw = adam_step(w, mw, vw, gw, lr_t, root_t)
            b, mb, vb = adam_step(b, mb, vb, gb, lr_t, root_t)
        else:
            w, b = w - lr * gw, b - lr * gb
        v_w.append(vw)
        v_b.append(vb)
    return np.array([seen_w, seen_b]), (w, b), (mw, mb, vw, vb), np.array([v_w, v_b])


def posted_shapes(config: LinregConfig, data, start, ran: int) -> tuple[dict[int, tuple], list[str]]:
    """The shapes of the predictions and the targets, and PyTorch's warning verbatim, from one real
    F.mse_loss call on the first batch of each length in the `ran` steps (the full one, and an epoch's
    partial last one once reached): nn.Linear(1, 1) at its start on the first epoch's batches.
    -> ({batch length: (predictions shape, targets shape)}, [warning])."""
    (x, y), (w0, b0) = data, start
    n, bs = config.n_points, config.batch_size
    nb = n_batches(n, bs)
    first = epoch_orders(n, 1, shuffled(config), shuffle_generator(config.seed, bs))[0].long()  # as the run drew it
    weight, bias = torch.tensor([[w0]]), torch.tensor([b0])
    shapes: dict[int, tuple] = {}
    caught: list[str] = []
    for j in [0, nb - 1] if ran >= nb else [0]:
        idx = first[j * bs : (j + 1) * bs]
        if len(idx) not in shapes:
            preds, target = F.linear(x[idx], weight, bias), y[idx]  # (B, 1); (B, 1, 1) as posted, (B, 1) fixed
            shapes[len(idx)] = (tuple(preds.shape), tuple(target.shape))
            mse_loss_recording(preds, target, caught)
    return shapes, caught


def last_full_batch(order: np.ndarray, batch_size: int, ran: int) -> np.ndarray:
    """The sample indices of the last full batch in the `ran` steps, from the order of the epoch the last
    step is in (an epoch's partial last batch: the full one before it)."""
    j = (ran - 1) % n_batches(len(order), batch_size)
    if (j + 1) * batch_size > len(order):
        j -= 1
    return order[j * batch_size : (j + 1) * batch_size]


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


def batch_hessian(x: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """(2, 2) the Hessian of a batch's loss in (w, b), closed form (`data.gradient_terms`):
    2 [[mean x², mean x], [mean x, 1]], for the loss meant and the broadcast one alike; y plays no part."""
    xb = x[idx]
    h_ww, h_wb, _, _ = gradient_terms(moments(xb, np.zeros_like(xb)).mean(axis=0), broadcast=False)
    return np.array([[h_ww, h_wb], [h_wb, 2.0]])


def top_eigenvalue(h: np.ndarray) -> np.ndarray:
    """The larger eigenvalue of each symmetric 2×2 matrix of h (..., 2, 2), closed form."""
    a, b, c = h[..., 0, 0], h[..., 0, 1], h[..., 1, 1]
    return (a + c) / 2 + np.hypot((a - c) / 2, b)


def sharpness_frame(config: LinregConfig, x: np.ndarray, v: np.ndarray, steps_run: int) -> pd.DataFrame:
    """The batch sharpness on `curvature.Probe`'s schedule, what the Probe measures by power iteration
    but exact: on each measured step (up to steps_run), the mean over the measurement batches of the
    top eigenvalue of H, preconditioned for Adam as P⁻¹ᐟ² H P⁻¹ᐟ² with P from its v after that step
    (`curvature.adam_preconditioner`). The loss is quadratic: H is the same at every step."""
    steps = steps_for(config, config.batch_size)
    due = curvature.schedule(steps, curvature.every_for(steps, SHARPNESS_MEASUREMENTS))
    due = due[due <= steps_run]
    hessians = np.stack([batch_hessian(x, idx.numpy()) for idx in measurement_batches(config)])  # (M, 2, 2)
    adam = config.optimizer == "adam"
    if adam:
        at = torch.from_numpy(due[:, None].astype(float))
        inverse = curvature.adam_preconditioner(torch.from_numpy(v[:, due - 1].T), at, (BETA1, BETA2), EPS)
        root = np.sqrt(inverse.numpy())  # (K, 2): P^-1/2 at each measured step
        scaled = hessians * root[:, None, :, None] * root[:, None, None, :]  # (K, M, 2, 2)
    else:
        scaled = np.broadcast_to(hessians, (len(due), *hessians.shape))
    values = top_eigenvalue(scaled).mean(axis=1)
    exact = [(int(s), curvature.Sharpness(float(value), 0, 0.0, True)) for s, value in zip(due, values, strict=True)]
    variant, warmup = curvature.variant(adam, len(hessians)), curvature.warmup(config.optimizer, BETA1)
    return curvature.frame(exact, _limit(config), steps_run, lr=config.lr, variant=variant, warmup=warmup)


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
    i = np.asarray(last_idx)
    xb, yb = xs[i], ys[i]
    with np.errstate(invalid="ignore"):  # a diverged run's line may be infinite: its predictions NaN
        pb = slope * xb + intercept

    # the last epoch's mean batch loss, as mse_loss averaged it (over B² pairs when it broadcast) and
    # as meant, at the fitted line and at the data's line: which line each loss prefers
    lines = [(slope, intercept), (config.slope, config.intercept)]
    (at_fit, at_truth) = epoch_losses(xs, ys, np.asarray(order), config.batch_size, lines, averaged != preds_shape)
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
    """Seconds on the 2-core CPU (measured: 0.03 s at the default 10,000 steps, 0.09 s for 50,000 at
    batch size 1): a fixed part, a step's few dozen float operations, the shuffled epochs' samples
    (randperm and the batch means), the data, and the one real F.mse_loss per batch length (B² numbers
    as posted)."""
    n, b = config.n_points, min(config.batch_size, config.n_points)
    steps = steps_for(config, b)
    samples = math.ceil(steps / n_batches(n, b)) * n if shuffled(config) else 0
    pairs = b * b if config.target_shape == "as-posted" else b
    return Cost.measured(0.01 + 1.6e-6 * steps + 1.5e-8 * samples + 4e-7 * n + 5e-9 * pairs, config.budget)


SINGLE = Task(run_single, check_single, cost_single)  # the case's task "single" (core/case.py's Task)
