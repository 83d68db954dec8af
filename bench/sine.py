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
    """The post's loop (Variable and loss.data[0] replaced by today's equivalents)."""
    x, y, weights = state
    layer_weights = [w.clone().requires_grad_() for w in weights]
    losses = []
    for _ in range(CONFIG.steps):
        y_pred = torch.tanh(x.mm(layer_weights[0]))
        for w in layer_weights[1:]:
            y_pred = torch.tanh(y_pred.mm(w))
        loss = (y_pred - y).pow(2).sum()
        losses.append(loss.item())
        loss.backward()
        for w in layer_weights:
            w.data -= CONFIG.lr * w.grad.data
            w.grad.data.zero_()


def app(state) -> None:
    runner.execute(CASE, CONFIG, torch.device("cpu"))


FIXED = CASE.presets["fixed"]


def app_fixed(state) -> None:
    runner.execute(CASE, FIXED, torch.device("cpu"))


EXTRA = ("app_fixed",)  # the recommended settings have their own speed target
