"""Case 1: the poster's hand-written gradient-descent loop against the app's run."""

import torch

from core import registry, runner, sine

CASE = registry.get("sine")
CONFIG = sine.AS_POSTED
WORK = f"as-posted: {CONFIG.steps} full-batch steps on {CONFIG.n_points} points, 1-128-1 tanh"
UNITS = ("steps", CONFIG.steps)


def setup():
    x, y = sine.make_data(CONFIG.n_points, CONFIG.seed)
    weights = [w for k, w in sine.init_params(CONFIG).items() if k.endswith("weight")]
    return x, y, weights


def posted(state) -> None:
    """The post's loop: torch.tanh, the sum of squares, w.data -= lr * w.grad.data."""
    x, y, weights = state
    sine.posted_loop(x, y, weights, CONFIG.lr, CONFIG.steps)


def app(state) -> None:
    runner.execute(CASE, CONFIG, torch.device("cpu"))


FIXED = CASE.presets["fixed"]


def app_fixed(state) -> None:
    runner.execute(CASE, FIXED, torch.device("cpu"))


EXTRA = ("app_fixed",)  # the recommended settings have their own speed target
