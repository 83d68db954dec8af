"""Case 3: the learning-rate scan, as the post would run it (the standalone script's nn.Linear loop
once per rate) against the app's batched scan (every rate at once, inside one run of the case)."""

import dataclasses

import torch

from core import runner
from core.cases.poly import script
from core.cases.poly.basis import stable_limit
from core.cases.poly.config import PRESETS
from core.cases.poly.descend import scan_rates

CONFIG = PRESETS["as-posted-10k"]  # 10,000 epochs, the post's settings
RATES = scan_rates(CONFIG, stable_limit(CONFIG)).tolist()  # the app's scan: the same rates
WORK = f"learning-rate scan: {len(RATES)} rates × {CONFIG.epochs:,} epochs of nn.Linear(4, 1) on 6 points"
UNITS = ("epochs", len(RATES) * CONFIG.epochs)
POSTED_REPEAT = 1  # about two minutes a call here


def setup():
    return None


def posted(state) -> None:
    """nn.Linear(4, 1) + MSELoss(reduction='sum') + torch.optim.SGD, float32, one rate at a time: the
    standalone script's `main` (which stops a rate at its first non-finite loss)."""
    for lr in RATES:
        script.main(dataclasses.asdict(CONFIG) | {"lr": lr})


def app(state) -> None:
    """The page's run: the as-posted fit, its curvature and closed form, and the batched scan."""
    from core.cases.poly import CASE  # here, not above: the case's record names this module

    runner.execute(CASE, CONFIG, torch.device("cpu"))
