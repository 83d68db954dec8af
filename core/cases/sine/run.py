"""Case 1: a shallow tanh network fits sin(x) badly (Cross Validated question 320289).

As posted: 4000 points x ~ U[-1, 9), y = sin(x)/2.5 + N(0, 1)/20; layers 1-128-1 with
tanh after both, no biases, every weight from randn; sum of squared errors; plain
gradient descent at lr 4e-7 for 3000 full-batch steps. Without biases every hidden unit
computes tanh(w*x), which switches at x = 0, so all the model's detail sits near 0 and
the rest of the range is a sum of saturated constants; with randn weights the output
pre-activation has std ~ sqrt(128) ~ 11 and the output tanh is saturated too.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from core import curvature, lrfind, nets, points, rng
from core.case import Case, Cost, Finding
from core.settings import Setting
from core.train import History, Progress, RunResult, history_frame, train

X_MIN, X_MAX = -1.0, 9.0  # the posted range: rand * 10 - 1
NOISE_STD = 0.05  # N(0,1)/20: a perfect fit has this RMSE against the noisy targets
SHARPNESS_MEASUREMENTS = 60  # steps whose sharpness is measured: every 50th of the posted 3000 (bench/sharpness.py)
SHARPNESS_EVERY_AT_LEAST = 50  # and never more often: a measurement costs ~8 steps, so short runs measure less


@dataclass(frozen=True)
class SineConfig:
    n_points: int = 4000  # training points, x ~ U[-1, 9)
    points: tuple[tuple[float, float], ...] = ()  # your own (x, y) points instead (a CSV upload)
    hidden: tuple[int, ...] = (128,)  # hidden layer widths: 1-128-1 as posted
    activation: str = "tanh"  # after every hidden layer
    output_activation: str = "tanh"  # the post puts tanh on the output too
    bias: bool = False  # the post's layers are weight matrices only
    init: str = "randn"  # every weight ~ N(0, 1), as posted
    loss: str = "sse"  # sum of squared errors over all points (not the mean)
    optimizer: str = "gd"  # hand-written gradient descent
    lr: float = 4e-7
    steps: int = 3000  # full-batch steps
    standardize_x: bool = False  # feed (x - mean) / std instead of raw x
    seed: int = 0


AS_POSTED = SineConfig()
PRESETS = {
    "as-posted": AS_POSTED,
    "as-posted-deep": dataclasses.replace(AS_POSTED, hidden=(32, 128, 32)),
    # the poster's own fix: a library optimizer; same network and data
    "answer": dataclasses.replace(AS_POSTED, optimizer="adam", lr=1e-3, loss="l1", steps=1000),
    # ours: biases (the cure), a sane init and output, a mean loss, a scaled input, Adam
    "fixed": dataclasses.replace(
        AS_POSTED,
        bias=True,
        init="default",
        standardize_x=True,
        output_activation="identity",
        loss="mse",
        optimizer="adam",
        lr=5e-3,  # 1e-2 also fits, but over seeds 0-7 two runs ended at RMSE 0.015-0.023; 5e-3 all below 0.007
    ),
}

WHY = {
    "as-posted": "The code as posted: no biases, std-1 weights, tanh output, a sum loss, plain gradient descent.",
    "as-posted-deep": "The poster's deeper variant (32-128-32): the same problems, more layers to saturate.",
    "answer": "The poster's own fix: Adam and an L1 loss on the same network. It helps a little; the biases "
    "are still missing.",
    "fixed": "Ours: biases (the cure: units can switch anywhere), PyTorch's init, no output tanh, a mean loss, "
    "a standardised x and Adam.",
}

SETTINGS = (
    Setting("n_points", "training points, x uniform on [-1, 9)", lo=10, hi=100_000),
    Setting("points", "your own (x, y) points instead of the posted sin(x) data", **points.RULES),
    Setting("hidden", "hidden layer widths, comma-separated (128 or 32,128,32)", lo=1, hi=1024, max_len=6),
    Setting("activation", "activation after each hidden layer", choices=("tanh", "relu", "sigmoid")),
    Setting("output_activation", "activation on the output", choices=("tanh", "identity")),
    Setting("bias", "give every layer a bias"),
    Setting("init", "weight init: randn (std 1, as posted), default (PyTorch's), xavier", choices=nets.INITS),
    Setting("loss", "sse (sum of squares, as posted), mse (mean), l1 (mean absolute)", choices=("sse", "mse", "l1")),
    Setting("optimizer", "gd (plain), momentum (0.9), adam, rmsprop", choices=("gd", "momentum", "adam", "rmsprop")),
    Setting("lr", "learning rate", lo=0, hi=10, lo_open=True),
    Setting("steps", "full-batch optimizer steps", lo=1, hi=20_000),
    Setting("standardize_x", "feed (x - mean) / std to the network instead of raw x"),
    Setting("seed", "random seed for data and weights", lo=0, hi=2**31 - 1),
)


# ---------------------------------------------------------------------------- data


def make_data(n: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """x (n, 1) ~ U[-1, 9), y = sin(x)/2.5 + N(0,1)/20: made in float64 like numpy, then float32."""
    g = rng.generator(seed, 0)
    x = torch.rand(n, 1, generator=g, dtype=torch.float64) * 10 - 1
    y = torch.sin(x) / 2.5 + torch.randn(n, 1, generator=g, dtype=torch.float64) / 20
    return x.float(), y.float()


def data_of(config: SineConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """The training data: the user's points if any, else the posted sin(x) data."""
    if config.points:
        xy = torch.tensor(config.points, dtype=torch.float64)
        return xy[:, :1].float(), xy[:, 1:].float()
    return make_data(config.n_points, config.seed)


def size(config: SineConfig) -> int:
    return len(config.points) or config.n_points


def x_range(config: SineConfig) -> tuple[float, float]:
    if config.points:
        xs = [x for x, _ in config.points]
        return min(xs), max(xs)
    return X_MIN, X_MAX


def truth(x: np.ndarray) -> np.ndarray:
    return np.sin(x) / 2.5


# ---------------------------------------------------------------------------- model


def init_params(config: SineConfig) -> dict[str, torch.Tensor]:
    """Layer weights (in, out) and biases by name, drawn on the CPU from the run's own generator."""
    g = rng.generator(config.seed, 1)
    sizes = (1, *config.hidden, 1)
    params = {}
    for i, (fan_in, fan_out) in enumerate(itertools.pairwise(sizes), start=1):
        w, b = nets.init_layer(fan_in, fan_out, bias=config.bias, init=config.init, generator=g)
        params[f"layer{i}.weight"] = w
        if b is not None:
            params[f"layer{i}.bias"] = b
    return params


def forward(params, x, config: SineConfig, plain: bool = False):
    """-> (prediction (n, 1), hidden activations [(n, width)...], output pre-activation (n, 1)).

    Equivalent to: for each layer, a = act(a @ W + b); the last two layers run as one fused
    `nets.head` (see core/nets.py for why). plain: every layer in plain autograd ops instead
    (`nets.plain`), twice differentiable, for the sharpness measurement."""
    last = len(config.hidden)  # the last hidden layer; layer last + 1 is the output
    a, hidden = x, []
    layer = nets.plain if plain else nets.dense
    for i in range(1, last):
        a = layer(a, params[f"layer{i}.weight"], params.get(f"layer{i}.bias"), config.activation)
        hidden.append(a)
    w1, b1 = params[f"layer{last}.weight"], params.get(f"layer{last}.bias")
    w2, b2 = params[f"layer{last + 1}.weight"], params.get(f"layer{last + 1}.bias")
    if plain:
        a = nets.plain(a, w1, b1, config.activation)
        z = nets.plain(a, w2, b2, "identity")
    else:
        z, a = nets.head(a, w1, b1, w2, b2, config.activation)
    hidden.append(a)
    y_pred = torch.tanh(z) if config.output_activation == "tanh" else z
    return y_pred, hidden, z


def loss_of(y_pred, y, kind: str):
    if kind == "sse":
        return (y_pred - y).pow(2).sum()
    if kind == "mse":
        return (y_pred - y).pow(2).mean()
    return (y_pred - y).abs().mean()  # l1, as nn.L1Loss()


def make_optimizer(params, config: SineConfig) -> torch.optim.Optimizer:
    p = list(params.values())
    if config.optimizer == "gd":
        return torch.optim.SGD(p, lr=config.lr)
    if config.optimizer == "momentum":
        return torch.optim.SGD(p, lr=config.lr, momentum=0.9)
    if config.optimizer == "adam":  # fused: one kernel for all tensors (43 us a step, not 113)
        return torch.optim.Adam(p, lr=config.lr, fused=True)
    return torch.optim.RMSprop(p, lr=config.lr)


def saturated(a: torch.Tensor, activation: str) -> torch.Tensor:
    """Count of activations in the flat part of their function (gradient ~ 0)."""
    if activation == "tanh":
        return torch.count_nonzero(a.abs() > 0.99)
    if activation == "sigmoid":
        return torch.count_nonzero((a - 0.5).abs() > 0.495)
    return torch.count_nonzero(a <= 0)  # relu: dead


# ---------------------------------------------------------------------------- run


def _setup(config: SineConfig, device: torch.device):
    """Data, scaling, trainable parameters and optimizer of one run."""
    x_raw, y_raw = data_of(config)
    mean, std = (x_raw.mean().item(), x_raw.std().item()) if config.standardize_x else (0.0, 1.0)
    x = ((x_raw - mean) / std).to(device)
    y = y_raw.to(device)
    params = {k: v.to(device).requires_grad_() for k, v in init_params(config).items()}
    return (x_raw, y_raw), (mean, std), x, y, params, make_optimizer(params, config)


def run(config: SineConfig, device: torch.device, on_progress=None) -> RunResult:
    (x_raw, y_raw), (mean, std), x, y, params, optimizer = _setup(config, device)

    record_every = max(1, config.steps // 150)
    n_records = (config.steps - 1) // record_every + 1
    records = torch.zeros(n_records, 3, device=device)  # hidden saturated share, RMS of z, share of |z| > 3
    n = size(config)
    hidden_total = n * sum(config.hidden)

    mse = torch.zeros(config.steps, device=device)  # every run's loss in one unit, for comparing runs

    def loss_fn(step: int) -> torch.Tensor:
        y_pred, hidden, z = forward(params, x, config)  # (n, 1)
        if step % record_every == 0:  # no sync: written to a device tensor, read at the end
            with torch.no_grad():
                sat = sum(saturated(h, config.activation) for h in hidden)
                records[step // record_every, 0] = sat / hidden_total
                records[step // record_every, 1] = z.pow(2).mean().sqrt()
                records[step // record_every, 2] = (z.abs() > 3).float().mean()
        loss = loss_of(y_pred, y, config.loss)
        with torch.no_grad():
            mse[step] = loss / n if config.loss == "sse" else (y_pred - y).pow(2).mean()
        return loss

    # full-batch sharpness (preconditioned for Adam and RMSprop) on about SHARPNESS_MEASUREMENTS steps
    probe = curvature.Probe(
        [lambda: loss_of(forward(params, x, config, plain=True)[0], y, config.loss)],
        list(params.values()),
        optimizer,
        every=curvature.every_for(config.steps, sharpness_measurements(config.steps)),
        steps=config.steps,
        seed=config.seed,
    )

    def progress(p: Progress) -> None:  # the live curve in the charts' unit: MSE, whatever loss is minimised
        on_progress(Progress(p.step, p.total, mse[: p.step].cpu().double().numpy(), name="MSE"))

    history = train(
        params,
        optimizer,
        loss_fn,
        config.steps,
        check_every=50,
        on_progress=progress if on_progress else None,
        sharpness=probe,
    )
    mse = mse.cpu().numpy()
    data, scaling = (x_raw, y_raw), (mean, std)
    return _result(config, params, history, records.cpu().numpy(), record_every, data, scaling, mse, probe)


def _result(config, params, history: History, records, record_every, data, scaling, mse, probe) -> RunResult:
    (x_raw, y_raw), (mean, std) = data, scaling
    device = next(iter(params.values())).device
    grid = np.linspace(*x_range(config), 2001)
    with torch.no_grad():
        xg = torch.tensor((grid - mean) / std, dtype=torch.float32, device=device).unsqueeze(1)
        pred, _, _ = forward(params, xg, config)
        x_in = ((x_raw - mean) / std).to(device)
        pred_end, hidden_end, _ = forward(params, x_in, config)
        rmse_points = (pred_end.cpu().double() - y_raw.double()).pow(2).mean().sqrt().item()
        sat_end = sum(saturated(h, config.activation) for h in hidden_end).item() / (x_in.shape[0] * sum(config.hidden))
        w1 = params["layer1.weight"].detach().cpu().double().numpy()[0]  # (width,)
        b1 = params["layer1.bias"].detach().cpu().double().numpy() if config.bias else np.zeros_like(w1)
    pred = pred.squeeze(1).cpu().double().numpy()
    # against sin(x)/2.5 on the posted data; the user's own points have no known truth
    rmse = math.nan if config.points else float(np.sqrt(np.mean((pred - truth(grid)) ** 2)))

    # where each first-layer unit switches, in raw x units: w*(x - mean)/std + b = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        switch_x = np.where(w1 != 0, mean - b1 * std / w1, np.nan)
    steepness = np.abs(w1) / std
    near_zero = float(np.mean(np.abs(switch_x) <= 0.5)) if len(w1) else 0.0

    steps_recorded = np.arange(len(records)) * record_every + 1
    keep = steps_recorded <= history.steps_run
    saturation = pd.DataFrame(
        {
            "step": steps_recorded[keep],
            "saturated_fraction": records[keep, 0],
            "output_preact_rms": records[keep, 1],
            "output_flat_share": records[keep, 2],
        }
    )
    every = max(1, size(config) // 600)
    data = pd.DataFrame({"x": x_raw[::every, 0].numpy(), "y": y_raw[::every, 0].numpy()})
    fit = pd.DataFrame({"x": grid, "truth": np.nan if config.points else truth(grid), "prediction": pred})
    units = pd.DataFrame({"unit": np.arange(1, len(w1) + 1), "switch_x": switch_x, "steepness": steepness})

    final = float(history.loss[-1]) if history.steps_run else math.nan
    metrics = {
        "final_loss": final,
        "rmse_vs_truth": rmse,
        "rmse_vs_points": rmse_points,  # against the training points (noisy: 0.05 is the posted data's floor)
        "final_mse": float(mse[history.steps_run - 1]) if history.steps_run else math.nan,
        "saturated_fraction": sat_end,
        "transitions_near_zero": near_zero,
        "diverged": history.diverged_at is not None,
        "diverged_at": history.diverged_at,
        "steps_run": history.steps_run,
        "initial_output_preact_rms": float(records[0, 1]) if len(records) else math.nan,
        "initial_output_flat_share": float(records[0, 2]) if len(records) else math.nan,
        "effective_lr_on_mean": config.lr * (size(config) if config.loss == "sse" else 1),
    }
    sharp = probe.frame(history.steps_run)
    metrics |= curvature.metrics(sharp, probe.limit)
    return RunResult(
        metrics=metrics,
        history=history_frame(history, mse=mse, sharpness=curvature.column(sharp, history.steps_run)),
        frames={"data": data, "fit": fit, "units": units, "saturation": saturation, "sharpness": sharp},
        device=str(device),
    )


TRIAL_SHARE = 4  # a range-test candidate is checked on a quarter of the steps: as posted, a tenth ranks
# 8.9e-7 below 4e-7, a quarter above it, as the full run does (46.2 against 49.9)
LR_RANGE = (1e-8, 10.0)  # the range test's rates: from far below the posted 4e-7 to far above any sane step


def lr_find(config: SineConfig, device: torch.device, on_progress=None) -> RunResult:
    """The learning-rate range test on these settings (300 steps, rate growing exponentially)."""
    _, _, x, y, params, optimizer = _setup(config, device)

    def loss_fn(step: int) -> torch.Tensor:
        return loss_of(forward(params, x, config)[0], y, config.loss)

    lo, hi = LR_RANGE
    return lrfind.range_test(
        params, optimizer, loss_fn, base_lr=config.lr, lr_min=lo, lr_max=hi, steps=300, on_progress=on_progress
    )


def posted_loop(x, y, weights, lr: float, steps: int) -> np.ndarray:
    """The poster's own loop (Variable and loss.data[0] replaced by today's equivalents):
    torch.tanh after every layer, the sum of squares, `w.data -= lr * w.grad.data`. The tests'
    oracle for `run`, and the benchmark's posted side. Returns the loss of every step."""
    layer_weights = [w.clone().requires_grad_() for w in weights]
    losses = []
    for _ in range(steps):
        y_pred = torch.tanh(x.mm(layer_weights[0]))
        for w in layer_weights[1:]:
            y_pred = torch.tanh(y_pred.mm(w))
        loss = (y_pred - y).pow(2).sum()
        losses.append(loss.item())
        loss.backward()
        for w in layer_weights:
            w.data -= lr * w.grad.data
            w.grad.data.zero_()
    return np.array(losses)


# ---------------------------------------------------------------------------- diagnosis


def diagnose(config: SineConfig, result: RunResult) -> list[Finding]:
    """The measured evidence for each problem present in `config`, with the setting change that fixes it."""
    m = result.metrics
    found = []
    width = config.hidden[0]
    lo, hi = x_range(config)
    if not config.bias:
        found.append(
            Finding(
                "no-bias",
                "Every hidden unit switches at x = 0",
                f"{m['transitions_near_zero']:.0%} of the {width} first-layer units cross zero within 0.5 of "
                f"x = 0, yet the data runs from {lo:g} to {hi:g}. Without a bias, unit j computes "
                f"{config.activation}(w_j·x), which can only switch where x = 0: all the detail is crammed "
                "there and the rest of the range is a sum of saturated constants.",
                {"bias": True},
            )
        )
    pre_rms, flat = m["initial_output_preact_rms"], m["initial_output_flat_share"]
    if config.output_activation == "tanh" and flat > 0.1:
        fan_in = config.hidden[-1]
        found.append(
            Finding(
                "saturated-output",
                "The output tanh starts saturated",
                f"At step 1, {flat:.0%} of the points have an output pre-activation |z| > 3, where "
                f"tanh'(z) = 1 - tanh(z)^2 < 0.01: they pass almost no gradient back. z is a sum of {fan_in} "
                f"hidden values (mostly ±1) times std-1 weights, typically of size sqrt({fan_in}) = "
                f"{math.sqrt(fan_in):.1f}; here its RMS over the data is {pre_rms:.1f}.",
                {"output_activation": "identity", "init": "default"},
            )
        )
    if config.loss == "sse":
        n = size(config)
        found.append(
            Finding(
                "sum-loss",
                "A sum loss multiplies the step by n",
                f"The gradient of a sum over n = {n} points is {n}× the mean's, so lr {config.lr:g} on the sum "
                f"takes the step of lr {config.lr * n:g} on the mean. Any change of n silently changes the step.",
                {"loss": "mse", "lr": float(f"{config.lr * n:.3g}")},
            )
        )
    if not config.standardize_x and abs(lo + hi) / 2 > 0.5 * (hi - lo) / math.sqrt(12):
        found.append(
            Finding(
                "uncentred-input",
                "The input is not centred",
                f"x spans [{lo:g}, {hi:g}]: its centre {(lo + hi) / 2:g} is far from 0 for its spread "
                f"(std about {(hi - lo) / math.sqrt(12):.2f}). "
                "Pre-activations w·x then grow with x, and units saturate further from the origin.",
                {"standardize_x": True},
            )
        )
    loss = result.history["loss"].to_numpy()
    if config.optimizer in ("gd", "momentum") and m["rmse_vs_truth"] > 0.02 and len(loss) >= 10:
        half = loss[len(loss) // 2]
        found.append(
            Finding(
                "slow-descent",
                "Plain gradient descent crawls",
                f"Over the second half of the run the loss went from {half:.4g} to {loss[-1]:.4g} "
                f"({1 - loss[-1] / half:.1%} lower), and the fit is still {m['rmse_vs_truth'] / NOISE_STD:.1f}× "
                "the noise std away from sin(x)/2.5. One step size for every weight cannot suit both the "
                "steep and the flat directions of this loss; Adam scales each weight's step.",
                {"optimizer": "adam", "lr": 5e-3},
            )
        )
    above = curvature.above_line(m, config.lr)
    if above is not None:
        evidence, lr = above
        found.append(Finding("above-stability-line", "lr above the stability line", evidence, {"lr": lr}))
    return found


def sharpness_measurements(steps: int) -> int:
    """How many steps the sharpness is measured on: SHARPNESS_MEASUREMENTS, at most one every
    SHARPNESS_EVERY_AT_LEAST steps (at least 2: the start and the end)."""
    return max(2, min(SHARPNESS_MEASUREMENTS, steps // SHARPNESS_EVERY_AT_LEAST))


def cost(config: SineConfig) -> Cost:
    """Seconds on the 2-core CPU, from step times measured there: per step a fixed part, the
    activations (n x every hidden width: tanh dominates), the hidden-to-hidden matmuls, and the
    weights' update; plus the set-up and the final evaluation."""
    n, widths = size(config), config.hidden
    weights = sum(a * b for a, b in itertools.pairwise((1, *widths, 1)))
    step = 1.5e-4 + 2.5e-9 * n * sum(widths) + 1e-10 * n * (weights - widths[0] - widths[-1]) + 3e-9 * weights
    sharpness = 8 * sharpness_measurements(config.steps) + 16  # Hessian-vector products, in steps (the first: cold)
    return Cost(0.3 + (config.steps + sharpness) * step, "steps")


def reference(config: SineConfig) -> SineConfig:
    """The run to compare with: the posted settings, on the user's points when there are any."""
    return dataclasses.replace(AS_POSTED, points=config.points)


def check(config: SineConfig) -> list[str]:
    total = sum(a * b for a, b in itertools.pairwise((1, *config.hidden, 1)))
    if total * size(config) > 60_000_000:
        return [f"hidden: the network ({total} weights) times the points ({size(config)}) is too big to train here"]
    return points.check(config.points, min_distinct=10)


CASE = Case(
    name="sine",
    short="Sine fit",
    icon=":material/airwave:",
    emoji="〰️",
    why=WHY,
    title="A shallow tanh network fits sin(x) badly",
    symptom="The fit wiggles in the first two units of x, then goes flat; the loss curve jumps around.",
    page="pages/1_Sine_fit.py",
    config_cls=SineConfig,
    presets=PRESETS,
    settings=SETTINGS,
    run=run,
    check=check,
    cost=cost,
    reference=reference,
    trial=lambda config, lr: dataclasses.replace(config, lr=lr, steps=max(1, config.steps // TRIAL_SHARE)),
)
