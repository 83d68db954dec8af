"""Convergence Clinic, case 4: linear regression only converges for small, unshuffled batches.

A standalone reproduction with plain PyTorch (and numpy): nothing from the Convergence Clinic
project. Run it with `python this_file.py`; it prints the final metrics as one JSON line, the
same metrics the app shows:
- `python this_file.py`: the sweep, one run per batch size of `int(x) for x in np.linspace(from,
  to, count)`, shuffled and/or not: the "sweep" list, one row per run (batch_size, shuffle, slope,
  intercept, final_loss: the last batch's loss, steps), broadcast_warning (and PyTorch's warning
  verbatim) and the starting line;
- `python this_file.py single`: one run at `batch_size`, shuffled unless shuffle is "false":
  slope, intercept, final_loss, steps_run, diverged, the warning and the starting line.
`main(CONFIG)` and `single(CONFIG)` return (history, metrics): every step's loss, and the metrics.

The posted pipeline without Lightning: the posted Dataset's tensors (x (n, 1); targets (n, 1, 1)
as posted, (n, 1) when fixed), each epoch's batches cut from a fresh permutation as DataLoader
cuts them (the last one partial), nn.Linear(1, 1), `F.mse_loss(preds, y)`, torch.optim.Adam.
PyTorch's warning about the target size goes to stderr, as it did under the post's code.

A sweep is one plain loop per run, as posted, and takes minutes. Measured on a 2-core CPU shared
with other jobs: the posted sweep (100 batch sizes, shuffled and not: 114,600 optimizer steps, and
with the posted shapes a batch of B forms B² differences) took 11 minutes (5.6 minutes of CPU
time); the fixed preset's sweep is 1,000,000 steps at about 0.5 ms each. Reduce batch_sizes_count
for a quick look. The app trains all the runs at once from five numbers per batch, in seconds.
"""

import json
import math
import sys
import warnings

import numpy as np
import torch
import torch.nn.functional as F

# --- settings: written by Convergence Clinic's export
CONFIG = {
    "target_shape": "as-posted",
    "shuffle": "both",
    "budget": "epochs",
    "epochs": 100,
    "steps": 5000,
    "batch_size": 10,
    "batch_sizes_from": 10,
    "batch_sizes_to": 1000,
    "batch_sizes_count": 100,
    "optimizer": "adam",
    "lr": 0.01,
    "n_points": 1000,
    "noise": 0.05,
    "slope": -4.0,
    "intercept": 0.0,
    "seed": 0,
}
# --- end of settings


class LineFunction(torch.utils.data.Dataset):
    """The post's Dataset, with its noise drawn from a generator instead of the global one (the post:
    Normal(0, 1).sample((n,)) * noise, then .unsqueeze(1)). `fixed` leaves out that unsqueeze: the
    targets become (1,) per item, (B, 1) per batch. `make_data` builds its items all at once (a
    DataLoader over it is 9x slower than slicing tensors)."""

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


def posted_dataset(c):
    """The post's Dataset for these settings."""
    gen = generator(c["seed"], 0)
    fixed = c["target_shape"] == "fixed"
    return LineFunction(c["slope"], c["intercept"], c["n_points"], noise=c["noise"], generator=gen, fixed=fixed)


def generator(seed, stream):
    """One CPU generator per purpose: stream 0 draws the noise, stream 1 the starting line."""
    return torch.Generator().manual_seed(seed * 1000 + stream)


def shuffle_generator(seed, batch_size):
    """Each batch size shuffles from its own stream, so a run draws the same batches alone or in a sweep."""
    return torch.Generator().manual_seed(((seed * 1000 + 2) << 20) + batch_size)


def make_data(c):
    """The post's LineFunction as whole tensors: x = linspace(0, 1, n) (n, 1); the noise (n, 1), which the
    post unsqueezes to (n, 1, 1), so that every target is (1, 1) and a batch of targets (B, 1, 1)."""
    n = c["n_points"]
    x = torch.linspace(0, 1, n).unsqueeze(1)  # (n, 1)
    noise = torch.randn(n, 1, generator=generator(c["seed"], 0)) * c["noise"]  # (n, 1)
    y = c["slope"] * x + c["intercept"] + noise  # each item's a * x + b + noise
    if c["target_shape"] == "as-posted":
        y = y.unsqueeze(1)  # (n, 1, 1): the post's noise.unsqueeze(1)
    return x, y


def start_line(seed):
    """nn.Linear(1, 1)'s default init (weight, then bias, from U(-1, 1)), from the run's own generator."""
    g = generator(seed, 1)
    return torch.empty(1, 1).uniform_(-1, 1, generator=g).item(), torch.empty(1).uniform_(-1, 1, generator=g).item()


def fit(x, y, c, batch_size, shuffle, stop_at_nan):
    """One training run -> (slope, intercept, losses). DataLoader(batch_size, shuffle) over the data,
    F.mse_loss(preds, y), one optimizer step per batch, for `epochs` epochs or `steps` steps; the
    model in the data's dtype (float32 as posted)."""
    n = len(x)
    n_batches = -(-n // batch_size)  # the last, partial batch is kept (drop_last=False)
    steps = c["steps"] if c["budget"] == "steps" else c["epochs"] * n_batches
    g = shuffle_generator(c["seed"], batch_size)
    model = torch.nn.Linear(1, 1, dtype=x.dtype)
    w0, b0 = start_line(c["seed"])
    with torch.no_grad():
        model.weight.fill_(w0)
        model.bias.fill_(b0)
    if c["optimizer"] == "adam":
        opt = torch.optim.Adam(model.parameters(), lr=c["lr"])
    else:
        opt = torch.optim.SGD(model.parameters(), lr=c["lr"])

    losses = []
    for step in range(steps):
        j = step % n_batches
        if j == 0:  # a new epoch: RandomSampler's permutation, or the data in order
            order = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
        idx = order[j * batch_size : (j + 1) * batch_size]
        preds = model(x[idx])  # (B, 1)
        loss = F.mse_loss(preds, y[idx])  # as posted; targets (B, 1, 1) broadcast to (B, B, 1)
        value = loss.item()
        if stop_at_nan and not math.isfinite(value):
            break
        losses.append(value)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model.weight.item(), model.bias.item(), losses


def finite(v):
    return v if v is not None and math.isfinite(v) else None  # NaN and inf are not JSON


def steps_of(c, n, batch_size):
    return c["steps"] if c["budget"] == "steps" else c["epochs"] * -(-n // batch_size)


def single(c):
    """One run at batch_size, shuffled as the posted code was unless shuffle is "false" -> (history, metrics)."""
    x, y = make_data(c)
    w0, b0 = start_line(c["seed"])
    slope, intercept, losses = fit(x, y, c, c["batch_size"], c["shuffle"] != "false", stop_at_nan=True)
    metrics = {
        "slope": finite(slope),
        "intercept": finite(intercept),
        "final_loss": losses[-1] if losses else None,
        "steps_run": len(losses),
        "diverged": len(losses) < steps_of(c, len(x), c["batch_size"]),
        "initial_slope": w0,
        "initial_intercept": b0,
    }
    return {"step": list(range(1, len(losses) + 1)), "loss": losses}, metrics


def main(c):
    """The sweep: one run per batch size and shuffle setting -> (history, metrics)."""
    x, y = make_data(c)
    w0, b0 = start_line(c["seed"])
    grid = np.linspace(c["batch_sizes_from"], c["batch_sizes_to"], c["batch_sizes_count"])
    sizes = list(dict.fromkeys(int(v) for v in grid))  # the post's [int(x) for x in np.linspace(10, 1000, 100)]
    shuffles = {"true": [True], "false": [False], "both": [True, False]}[c["shuffle"]]
    rows, history = [], {"batch_size": [], "shuffle": [], "step": [], "loss": []}
    for shuffle in shuffles:
        for bs in sizes:
            slope, intercept, losses = fit(x, y, c, bs, shuffle, stop_at_nan=False)
            rows.append(
                {
                    "batch_size": bs,
                    "shuffle": shuffle,
                    "slope": finite(slope),
                    "intercept": finite(intercept),
                    "final_loss": finite(losses[-1]),  # the last batch's loss, as Lightning logs train_loss
                    "steps": len(losses),
                }
            )
            history["batch_size"] += [bs] * len(losses)
            history["shuffle"] += [shuffle] * len(losses)
            history["step"] += list(range(1, len(losses) + 1))
            history["loss"] += losses
    return history, {"sweep": rows, "initial_slope": w0, "initial_intercept": b0}


if __name__ == "__main__":
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # each distinct warning once, as Python shows them
        _, metrics = (single if sys.argv[1:] == ["single"] else main)(CONFIG)
    shapes = [str(w.message) for w in caught if "target size" in str(w.message)]
    metrics["broadcast_warning"] = bool(shapes)
    metrics["warning"] = shapes[0] if shapes else None
    for w in caught[:1]:  # stderr, as the post's console had it; stdout carries only the JSON line
        print(f"{w.category.__name__}: {w.message}", file=sys.stderr)
    if len(caught) > 1:
        print(f"(and {len(caught) - 1} more warnings like it, for other batch sizes)", file=sys.stderr)
    print(json.dumps(metrics))
