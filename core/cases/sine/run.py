"""Case 1's run: a shallow tanh network fits sin(x) badly (Cross Validated question 320289).

The data, the network, one training run and its measurements, and the range test. Without biases every hidden unit
computes tanh(w*x), which switches at x = 0, so all the model's detail sits near 0 and
the rest of the range is a sum of saturated constants; with randn weights the output
pre-activation has std ~ sqrt(128) ~ 11 and the output tanh is saturated too.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pandas as pd
import torch

from core import curvature, kernels, lrfind, nets, rng
from core.cases.sine.config import LR_RANGE, SineConfig, sharpness_measurements, size, x_range
from core.threads import POLICY
from core.train import History, Progress, RunResult, history_frame, train

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
    return output(z, config), hidden, z


def output(z: torch.Tensor, config: SineConfig) -> torch.Tensor:
    """The prediction from the output layer's pre-activation."""
    return torch.tanh(z) if config.output_activation == "tanh" else z


def _head_weights(params, x, config: SineConfig):
    """(w1, b1, w2, b2) where the network is one hidden layer that core/kernels.py computes; else None."""
    if len(config.hidden) != 1:
        return None
    w1, b1, w2, b2 = (params.get(k) for k in ("layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias"))
    return (w1, b1, w2, b2) if kernels.applies(x, w1, config.activation, b1, w2, b2) else None


def direct_step(params, x, y, config: SineConfig):
    """Where `_head_weights` applies: () -> (loss, MSE, [hidden activations], z) of one training step
    with the weights' gradients written to their .grad by core/kernels.py's `HeadStep` (forward, the
    loss's derivative written out as autograd takes it, backward), so no autograd graph is built and no
    torch op runs on the data; on two cores when this is the only run in flight. Else None (the torch
    layers and backward())."""
    weights = _head_weights(params, x, config)
    if weights is None:
        return None
    head = kernels.HeadStep(x, y, *weights, config.activation, config.loss, config.output_activation == "tanh")

    def step():
        loss, mse = head(parallel=POLICY.threads_for(heavy=True) > 1)
        return loss, mse, [head.a], head.z

    return step


def compiled_hessian(params, x, y, config: SineConfig):
    """For the sharpness: the compiled Hessian-vector product of the training loss (core/kernels.py's
    `head_hessian`) where the network is one hidden layer the compiled kernels take; else None (the
    measurement then runs double backward through `forward(..., plain=True)`)."""
    weights = _head_weights(params, x, config)
    if weights is None:
        return None
    w1, b1, w2, b2 = weights
    order = list(params)  # the probe's parameter order
    names = ("layer1.weight", "layer1.bias", "layer2.weight", "layer2.bias")
    ways = kernels.Faster()  # the run's: times its products in series and at once across measurements

    def make():
        with torch.no_grad():
            product = kernels.head_hessian(
                x, w1, b1, w2, b2, config.activation, lambda z: loss_of(output(z, config), y, config.loss),
                ways=ways if POLICY.threads_for(heavy=True) > 1 else None,
            )  # fmt: skip

        def hv(vs):
            by_name = dict(zip(order, vs, strict=True))
            got = dict(zip(names, product([by_name.get(k) for k in names]), strict=True))
            return [got[k] for k in order]

        return hv

    return make


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
    counted = kernels.count_flat(a, activation)  # one compiled pass where it applies: the same count
    if counted is not None:
        return torch.tensor(counted)
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

    direct = direct_step(params, x, y, config)
    # the compiled step is the CPU's only: its run writes these through numpy (0.1 us, not torch's 1.7)
    mse_cells = mse.numpy() if direct is not None else None
    record_cells = records.numpy() if direct is not None else None

    def loss_fn(step: int) -> torch.Tensor:
        if direct is not None:  # the compiled layer with its backward written out: the gradients are set
            loss, mse_cells[step], hidden, z = direct()
        else:
            y_pred, hidden, z = forward(params, x, config)  # (n, 1)
        if step % record_every == 0:
            row = step // record_every
            if record_cells is not None:  # numpy on the compiled step's buffers: 60 us, not torch's 130
                zs = z.numpy().reshape(-1)
                with np.errstate(over="ignore", invalid="ignore"):  # a diverging run's inf, as torch's float32
                    squares = float(np.dot(zs, zs))
                record_cells[row] = (
                    int(sum(saturated(h, config.activation) for h in hidden)) / hidden_total,
                    math.sqrt(squares / zs.size),
                    np.count_nonzero(np.abs(zs) > 3) / zs.size,
                )
            else:  # no sync: written to a device tensor, read at the end
                with torch.no_grad():
                    sat = sum(saturated(h, config.activation) for h in hidden)
                    records[row, 0] = sat / hidden_total
                    records[row, 1] = z.pow(2).mean().sqrt()
                    records[row, 2] = (z.abs() > 3).float().mean()
        if direct is not None:
            return loss
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
        hessians=[compiled_hessian(params, x, y, config)],
    )

    def progress(p: Progress) -> None:  # the live curve in the charts' unit: MSE, whatever loss is minimised
        on_progress(Progress(p.step, p.total, mse[: p.step].cpu().double().numpy(), name="MSE"))

    history = train(
        params,
        optimizer,
        loss_fn,
        config.steps,
        grads_set=direct is not None,
        update=kernels.updater(optimizer) if direct is not None else None,
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


def lr_find(config: SineConfig, device: torch.device, on_progress=None) -> RunResult:
    """The learning-rate range test on these settings (300 steps, rate growing exponentially)."""
    _, _, x, y, params, optimizer = _setup(config, device)

    def loss_fn(step: int) -> torch.Tensor:
        return loss_of(forward(params, x, config)[0], y, config.loss)

    lo, hi = LR_RANGE
    return lrfind.range_test(
        params, optimizer, loss_fn, base_lr=config.lr, lr_min=lo, lr_max=hi, steps=300, on_progress=on_progress
    )
