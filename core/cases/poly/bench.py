"""Case 3: the learning-rate scan, as the post would run it (its nn.Linear loop once per rate)
against the app's batched scan (every rate at once, inside one run of the case)."""

import torch

from core import poly, registry, runner

CASE = registry.get("poly")
CONFIG = CASE.presets["as-posted-10k"]  # 10,000 epochs, the post's settings
RATES = poly.scan_rates(CONFIG, poly.stable_limit(CONFIG)).tolist()  # the app's scan: the same rates
WORK = f"learning-rate scan: {len(RATES)} rates × {CONFIG.epochs:,} epochs of nn.Linear(4, 1) on 6 points"
UNITS = ("epochs", len(RATES) * CONFIG.epochs)
POSTED_REPEAT = 1  # about two minutes a call here


def setup():
    return None


def posted(state) -> None:
    """nn.Linear(4, 1) + MSELoss(reduction='sum') + torch.optim.SGD, float32, one rate at a time."""
    for lr in RATES:
        poly.posted_loop(CONFIG, lr)


def app(state) -> None:
    """The page's run: the as-posted fit, its curvature and closed form, and the batched scan."""
    runner.execute(CASE, CONFIG, torch.device("cpu"))
