"""Convergence Clinic, case 1: a shallow tanh network fits sin(x) badly.

A standalone reproduction of one run with plain PyTorch (and numpy): nothing from the
Convergence Clinic project. Run it with `python this_file.py`; it prints the run's final
metrics as one JSON line, the same metrics the app shows. `main(CONFIG)` returns the run's
history (the loss of every step) and those metrics.
"""

import itertools
import json
import math

import numpy as np
import torch

# --- settings: written by Convergence Clinic's export
CONFIG = {
    "n_points": 4000,
    "points": (),
    "hidden": (128,),
    "activation": "tanh",
    "output_activation": "tanh",
    "bias": False,
    "init": "randn",
    "loss": "sse",
    "optimizer": "gd",
    "lr": 4e-07,
    "steps": 3000,
    "standardize_x": False,
    "seed": 0,
}
# --- end of settings


def generator(seed, stream):
    """One CPU generator per purpose: stream 0 draws the data, stream 1 the weights."""
    return torch.Generator().manual_seed(seed * 1000 + stream)


def make_data(n, seed):
    g = generator(seed, 0)
    x = torch.rand(n, 1, generator=g, dtype=torch.float64) * 10 - 1  # x ~ U[-1, 9)
    y = torch.sin(x) / 2.5 + torch.randn(n, 1, generator=g, dtype=torch.float64) / 20
    return x.float(), y.float()


def init_layer(fan_in, fan_out, bias, init, g):
    """Weights stored (in, out) as in the post; 'default' is nn.Linear's own init."""
    if init == "randn":
        w = torch.randn(fan_in, fan_out, generator=g)
        b = torch.randn(fan_out, generator=g) if bias else None
    elif init == "default":
        bound = 1 / math.sqrt(fan_in)
        w = torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=g).t().contiguous()
        b = torch.empty(fan_out).uniform_(-bound, bound, generator=g) if bias else None
    else:  # xavier
        bound = math.sqrt(6 / (fan_in + fan_out))
        w = torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=g).t().contiguous()
        b = torch.zeros(fan_out) if bias else None
    return w, b


ACT = {"tanh": torch.tanh, "relu": torch.relu, "sigmoid": torch.sigmoid}


def forward(layers, x, c):
    """-> prediction (n, 1) and the hidden activations."""
    a, hidden = x, []
    for w, b in layers[:-1]:
        a = ACT[c["activation"]](a @ w + (b if b is not None else 0))
        hidden.append(a)
    w, b = layers[-1]
    z = a @ w + (b if b is not None else 0)  # (n, 1)
    return (torch.tanh(z) if c["output_activation"] == "tanh" else z), hidden


def saturated(a, activation):
    """Activations in the flat part of their function."""
    if activation == "tanh":
        return torch.count_nonzero(a.abs() > 0.99)
    if activation == "sigmoid":
        return torch.count_nonzero((a - 0.5).abs() > 0.495)
    return torch.count_nonzero(a <= 0)


def main(c):
    """One run of settings `c` -> (history {"step": [...], "loss": [...]}, metrics)."""
    if c["points"]:  # your own (x, y) points
        xy = torch.tensor(c["points"], dtype=torch.float64)
        x_raw, y = xy[:, :1].float(), xy[:, 1:].float()
    else:
        x_raw, y = make_data(c["n_points"], c["seed"])
    mean, std = (x_raw.mean().item(), x_raw.std().item()) if c["standardize_x"] else (0.0, 1.0)
    x = (x_raw - mean) / std
    g = generator(c["seed"], 1)
    sizes = (1, *c["hidden"], 1)
    layers = [init_layer(i, o, c["bias"], c["init"], g) for i, o in itertools.pairwise(sizes)]
    params = [t.requires_grad_() for layer in layers for t in layer if t is not None]
    lr = c["lr"]
    opt = {
        "gd": lambda: torch.optim.SGD(params, lr=lr),
        "momentum": lambda: torch.optim.SGD(params, lr=lr, momentum=0.9),
        "adam": lambda: torch.optim.Adam(params, lr=lr),
        "rmsprop": lambda: torch.optim.RMSprop(params, lr=lr),
    }[c["optimizer"]]()

    losses, diverged_at = [], None
    for step in range(1, c["steps"] + 1):
        opt.zero_grad()
        y_pred, _ = forward(layers, x, c)
        if c["loss"] == "sse":
            loss = (y_pred - y).pow(2).sum()  # the sum over all points, as posted
        elif c["loss"] == "mse":
            loss = (y_pred - y).pow(2).mean()
        else:
            loss = (y_pred - y).abs().mean()
        if not math.isfinite(loss.item()):
            diverged_at = step
            break
        losses.append(loss.item())
        loss.backward()
        opt.step()

    xs = x_raw.squeeze(1).double()
    grid = np.linspace(xs.min().item(), xs.max().item(), 2001) if c["points"] else np.linspace(-1.0, 9.0, 2001)
    with torch.no_grad():
        xg = torch.tensor((grid - mean) / std, dtype=torch.float32).unsqueeze(1)
        pred = forward(layers, xg, c)[0].squeeze(1).double().numpy()
        _, hidden = forward(layers, x, c)
        sat = sum(saturated(h, c["activation"]).item() for h in hidden) / (len(x) * sum(c["hidden"]))
        w1 = layers[0][0][0].double().numpy()
        b1 = layers[0][1].double().numpy() if c["bias"] else np.zeros_like(w1)
    with np.errstate(divide="ignore", invalid="ignore"):
        switch_x = np.where(w1 != 0, mean - b1 * std / w1, np.nan)  # where each unit's w*x + b = 0
    rmse = math.nan if c["points"] else float(np.sqrt(np.mean((pred - np.sin(grid) / 2.5) ** 2)))
    metrics = {
        "final_loss": losses[-1] if losses else None,
        "rmse_vs_truth": rmse if math.isfinite(rmse) else None,
        "saturated_fraction": sat,
        "transitions_near_zero": float(np.mean(np.abs(switch_x) <= 0.5)),
        "diverged": diverged_at is not None,
        "steps_run": len(losses),
    }
    history = {"step": list(range(1, len(losses) + 1)), "loss": losses}
    return history, metrics


if __name__ == "__main__":
    print(json.dumps(main(CONFIG)[1]))
