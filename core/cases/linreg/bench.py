"""Case 4: the post's sweep as plain PyTorch (a DataLoader over the posted Dataset, nn.Linear(1, 1),
F.mse_loss with the posted shapes, Adam, one loop per batch size) against the app's batched sweep,
for the posted 100 batch sizes with shuffling on. Lightning itself is left out: it only adds overhead."""

import dataclasses
import warnings

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from core import linreg, registry, runner

CASE = registry.get("linreg")
CONFIG = dataclasses.replace(linreg.AS_POSTED, shuffle="true")
SIZES = linreg.sweep_sizes(CONFIG)
STEPS = sum(linreg.steps_for(CONFIG, bs) for bs in SIZES)
WORK = (
    f"as-posted sweep, shuffle on: {len(SIZES)} batch sizes × {CONFIG.epochs} epochs on {CONFIG.n_points} points "
    f"({STEPS:,} Adam steps in all)"
)
UNITS = ("steps", STEPS)
POSTED_REPEAT = 1  # about six minutes a call here
EXTRA = ("posted_tensors", "app_fixed")
EXTRA_REPEAT = {"posted_tensors": 1}


def setup():
    return linreg.posted_dataset(CONFIG)


def posted(dataset) -> None:
    w0, b0 = linreg.init_line(CONFIG.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mse_loss warns at every call; Lightning shows it once
        for bs in SIZES:
            g = linreg.shuffle_generator(CONFIG.seed, bs)
            loader = DataLoader(dataset, batch_size=bs, shuffle=True, generator=g)
            model = torch.nn.Linear(1, 1)
            with torch.no_grad():
                model.weight.fill_(w0)
                model.bias.fill_(b0)
            optimizer = torch.optim.Adam(model.parameters(), lr=CONFIG.lr)
            for _ in range(CONFIG.epochs):
                for x, y in loader:
                    preds = model(x)
                    loss = F.mse_loss(preds, y)
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()


def app(state) -> None:
    runner.execute(CASE, CONFIG, torch.device("cpu"))


FIXED = CASE.presets["fixed"]


def app_fixed(state) -> None:
    """The fixed preset's sweep (shuffle on and off, 5000 steps for every batch size): 50× the posted data."""
    runner.execute(CASE, FIXED, torch.device("cpu"))


def posted_tensors(dataset) -> None:
    """The same loops with the batches sliced from tensors instead of a DataLoader (the per-sample
    __getitem__ and collate are most of the posted time): the floor of a loop per batch size."""
    w0, b0 = linreg.init_line(CONFIG.seed)
    x = dataset._x  # (n, 1)
    y = torch.stack([dataset[i][1] for i in range(len(dataset))])  # (n, 1, 1), as the Dataset yields them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for bs in SIZES:
            g = linreg.shuffle_generator(CONFIG.seed, bs)
            model = torch.nn.Linear(1, 1)
            with torch.no_grad():
                model.weight.fill_(w0)
                model.bias.fill_(b0)
            optimizer = torch.optim.Adam(model.parameters(), lr=CONFIG.lr)
            for _ in range(CONFIG.epochs):
                for idx in torch.randperm(len(x), generator=g).split(bs):
                    loss = F.mse_loss(model(x[idx]), y[idx])
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
