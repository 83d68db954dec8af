"""Case 4: the post's sweep as plain PyTorch (a DataLoader over the posted Dataset, nn.Linear(1, 1),
F.mse_loss with the posted shapes, Adam, one loop per batch size) against the app's batched sweep,
for the posted 100 batch sizes with shuffling on. Lightning itself is left out: it only adds overhead.
The protocol is bench/__init__.py's; the posted side uses the standalone script's Dataset and loops."""

import dataclasses
import warnings

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from core import runner
from core.cases.linreg import script
from core.cases.linreg.config import AS_POSTED, PRESETS
from core.cases.linreg.data import steps_for, sweep_sizes

CONFIG = dataclasses.replace(AS_POSTED, shuffle="true")
SIZES = sweep_sizes(CONFIG)
STEPS = sum(steps_for(CONFIG, bs) for bs in SIZES)
WORK = (
    f"as-posted sweep, shuffle on: {len(SIZES)} batch sizes × {CONFIG.epochs} epochs on {CONFIG.n_points} points "
    f"({STEPS:,} Adam steps in all)"
)
UNITS = ("steps", STEPS)
POSTED_REPEAT = 1  # about six minutes a call here
EXTRA = ("posted_tensors", "app_fixed")
EXTRA_REPEAT = {"posted_tensors": 1}
FIXED = PRESETS["fixed"]


def _case():
    from core.cases.linreg import CASE  # the package imports this module: its CASE is there once it has loaded

    return CASE


def setup():
    return script.posted_dataset(dataclasses.asdict(CONFIG))


def posted(dataset) -> None:
    w0, b0 = script.start_line(CONFIG.seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # mse_loss warns at every call; Lightning shows it once
        for bs in SIZES:
            g = script.shuffle_generator(CONFIG.seed, bs)
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
    runner.execute(_case(), CONFIG, torch.device("cpu"))


def app_fixed(state) -> None:
    """The fixed preset's sweep (shuffle on and off, 5000 steps for every batch size): 50× the posted data."""
    runner.execute(_case(), FIXED, torch.device("cpu"))


def posted_tensors(dataset) -> None:
    """The same loops with the batches sliced from tensors instead of a DataLoader (the per-sample
    __getitem__ and collate are most of the posted time): the standalone script's sweep, the floor of
    a loop per batch size."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        script.main(dataclasses.asdict(CONFIG))
