"""Case 1's benchmark (the protocol in bench/__init__.py): the poster's hand-written
gradient-descent loop against the app's run of the as-posted settings.

`posted_script` (an extra line) is the same maths as a plain autograd loop (the case's
standalone script: torch.tanh, the sum of squares, SGD, and the final metrics) with torch's
default threads, one per core, as the app's compiled step has them when it runs alone
(core/kernels.py's HeadStep): the speed-up is the app's code, not more cores (issue 17: 4x).
"""

import dataclasses
import itertools

import torch

from core import runner
from core.cases.sine import script
from core.cases.sine.config import AS_POSTED, PRESETS
from core.threads import available_cores

CONFIG = AS_POSTED
WORK = f"as-posted: {CONFIG.steps} full-batch steps on {CONFIG.n_points} points, 1-128-1 tanh"
UNITS = ("steps", CONFIG.steps)
FIXED = PRESETS["fixed"]


def setup():
    from core import registry  # here, not above: the case's package imports this module

    x, y = script.make_data(CONFIG.n_points, CONFIG.seed)
    g = script.generator(CONFIG.seed, 1)
    sizes = (1, *CONFIG.hidden, 1)
    weights = [script.init_layer(i, o, CONFIG.bias, CONFIG.init, g)[0] for i, o in itertools.pairwise(sizes)]
    return registry.get("sine"), x, y, weights


def posted(state) -> None:
    """The post's loop (Variable and loss.data[0] replaced by today's equivalents): torch.tanh after
    every layer, the sum of squares, `w.data -= lr * w.grad.data`."""
    _, x, y, weights = state
    layer_weights = [w.clone().requires_grad_() for w in weights]
    for _ in range(CONFIG.steps):
        y_pred = torch.tanh(x.mm(layer_weights[0]))
        for w in layer_weights[1:]:
            y_pred = torch.tanh(y_pred.mm(w))
        loss = (y_pred - y).pow(2).sum()
        loss.item()  # the post prints loss.data[0]
        loss.backward()
        for w in layer_weights:
            w.data -= CONFIG.lr * w.grad.data
            w.grad.data.zero_()


def app(state) -> None:
    runner.execute(state[0], CONFIG, torch.device("cpu"))


def app_fixed(state) -> None:
    runner.execute(state[0], FIXED, torch.device("cpu"))


def posted_script(state) -> None:
    """The plain autograd loop of the same maths, on every core (torch's default)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(available_cores())
    try:
        script.main(dataclasses.asdict(CONFIG))
    finally:
        torch.set_num_threads(threads)


EXTRA = ("app_fixed", "posted_script")  # the recommended settings have their own speed target
