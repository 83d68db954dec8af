"""Case 1's settings: the config (each field declared once, with its range and help), the
presets and why each exists, and the rules a run's settings must keep.

As posted (Cross Validated question 320289): 4000 points x ~ U[-1, 9), y = sin(x)/2.5 +
N(0, 1)/20; layers 1-128-1 with tanh after both, no biases, every weight from randn; sum of
squared errors; plain gradient descent at lr 4e-7 for 3000 full-batch steps.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from dataclasses import dataclass

from core import kernels, nets, points
from core.case import Cost
from core.seeds import Spread
from core.settings import knob

X_MIN, X_MAX = -1.0, 9.0  # the posted range: rand * 10 - 1
NOISE_STD = 0.05  # N(0,1)/20: a perfect fit has this RMSE against the noisy targets
SHARPNESS_MEASUREMENTS = 60  # steps whose sharpness is measured: every 50th of the posted 3000 (bench/sharpness.py)
SHARPNESS_EVERY_AT_LEAST = 50  # and never more often: a measurement costs ~8 steps, so short runs measure less


@dataclass(frozen=True)
class SineConfig:
    n_points: int = knob(4000, "training points, x uniform on [-1, 9)", lo=10, hi=100_000)
    points: tuple[tuple[float, float], ...] = knob(
        (), "your own (x, y) points instead of the posted sin(x) data", **points.RULES
    )  # a CSV upload
    hidden: tuple[int, ...] = knob(
        (128,), "hidden layer widths, comma-separated (128 or 32,128,32)", lo=1, hi=1024, max_len=6
    )  # 1-128-1 as posted
    activation: str = knob("tanh", "activation after each hidden layer", choices=("tanh", "relu", "sigmoid"))
    output_activation: str = knob(
        "tanh", "activation on the output", choices=("tanh", "identity")
    )  # the post puts tanh on the output too
    bias: bool = knob(False, "give every layer a bias")  # the post's layers are weight matrices only
    init: str = knob("randn", "weight init: randn (std 1, as posted), default (PyTorch's), xavier", choices=nets.INITS)
    loss: str = knob(
        "sse", "sse (sum of squares, as posted), mse (mean), l1 (mean absolute)", choices=("sse", "mse", "l1")
    )
    optimizer: str = knob(
        "gd", "gd (plain), momentum (0.9), adam, rmsprop", choices=("gd", "momentum", "adam", "rmsprop")
    )  # the post's is hand-written gradient descent
    lr: float = knob(4e-7, "learning rate", lo=0, hi=10, lo_open=True)
    steps: int = knob(3000, "full-batch optimizer steps", lo=1, hi=20_000)
    standardize_x: bool = knob(False, "feed (x - mean) / std to the network instead of raw x")
    seed: int = knob(0, "random seed for data and weights", lo=0, hi=2**31 - 1)


AS_POSTED = SineConfig()
PRESETS = {
    "as-posted": AS_POSTED,
    "as-posted-deep": dataclasses.replace(AS_POSTED, hidden=(32, 128, 32)),
    # the poster's own fix: a library optimizer; same network and data
    "answer": dataclasses.replace(AS_POSTED, optimizer="adam", lr=1e-3, loss="l1", steps=1000),
    # ours: biases (the cure), a sane init and output, a mean loss, a scaled input, Adam
    "fixed": dataclasses.replace(
        AS_POSTED,
        bias=True,
        init="default",
        standardize_x=True,
        output_activation="identity",
        loss="mse",
        optimizer="adam",
        # 3e-3: over seeds 0-7 every run ends at RMSE 0.004-0.01 with no loss spike after step 1000. At 5e-3 Adam
        # sits at its edge of stability (a spike every ~300 steps), so where a run ends depended on rounding: one
        # seed ended in a spike at RMSE 0.039 once the layer was compiled (core/kernels.py); 1e-2 is worse
        lr=3e-3,
    ),
}

WHY = {
    "as-posted": "The code as posted: no biases, std-1 weights, tanh output, a sum loss, plain gradient descent.",
    "as-posted-deep": "The poster's deeper variant (32-128-32): the same problems, more layers to saturate.",
    "answer": "The poster's own fix: Adam and an L1 loss on the same network. It helps a little; the biases "
    "are still missing.",
    "fixed": "Ours: biases (the cure: units can switch anywhere), PyTorch's init, no output tanh, a mean loss, "
    "a standardised x and Adam.",
}

# A seed "stays stuck" when its fit is worse than the flat line y = 0: RMSE above the RMS of sin(x)/2.5 on
# [-1, 9) (0.282). As posted, seeds 0-4 end at RMSE 0.099, 1.12, 0.118, 0.102, 1.12: seeds 1 and 4 start with
# the output saturated (pre-activation RMS 14 and 17) and never move, the post's flat output; the others
# wiggle near the noise-free curve. `fixed` ends below 0.01 on every seed (measured on the 2-core CPU).
FLAT_RMSE = math.sqrt(0.5 - (math.sin(2 * X_MAX) - math.sin(2 * X_MIN)) / (4 * (X_MAX - X_MIN))) / 2.5  # 0.282
SPREAD = Spread("rmse_vs_truth", "RMSE", round(FLAT_RMSE, 2), "stay stuck, worse than the flat line y = 0",
                applies=lambda config: not config.points)  # fmt: skip

CLAIM_SEEDS = range(5)  # the page's claims about the presets hold for these seeds (tests/test_sine.py checks them)

TRIAL_SHARE = 4  # a range-test candidate is checked on a quarter of the steps: as posted, a tenth ranks
# 8.9e-7 below 4e-7, a quarter above it, as the full run does (46.2 against 49.9)
LR_RANGE = (1e-8, 10.0)  # the range test's rates: from far below the posted 4e-7 to far above any sane step


def size(config: SineConfig) -> int:
    return len(config.points) or config.n_points


def x_range(config: SineConfig) -> tuple[float, float]:
    return points.x_range(config.points, (X_MIN, X_MAX))


def sharpness_measurements(steps: int) -> int:
    """How many steps the sharpness is measured on: SHARPNESS_MEASUREMENTS, at most one every
    SHARPNESS_EVERY_AT_LEAST steps (at least 2: the start and the end)."""
    return max(2, min(SHARPNESS_MEASUREMENTS, steps // SHARPNESS_EVERY_AT_LEAST))


def compiled(config: SineConfig) -> bool:
    """Whether a run's hidden layer takes core/kernels.py's compiled path on the CPU (one hidden layer)."""
    return len(config.hidden) == 1 and config.activation in kernels.ACTS and kernels.numba is not None


def cost(config: SineConfig) -> Cost:
    """Seconds on the 2-core CPU, from step times measured there (one thread). A torch step: a fixed
    part, the activations (n x every hidden width: tanh dominates), the hidden-to-hidden matmuls and the
    weights' update. A compiled step (`compiled`): a smaller fixed part (no autograd graph, no torch op) and
    two passes over the activations, on two cores where it can (one: ~1.7x the time), a little slower per
    number once they no longer fit in the caches. Plus the
    sharpness measurements (their Hessian-vector products: compiled too, or the torch layers twice
    differentiated), the saturation
    records (one pass over the activations, at most 150 of them), the set-up and the final evaluation."""
    n, widths = size(config), config.hidden
    weights = sum(a * b for a, b in itertools.pairwise((1, *widths, 1)))
    activations = n * sum(widths)
    torch_step = 4e-4 + 2.5e-9 * activations + 1e-10 * n * (weights - widths[0] - widths[-1]) + 3e-9 * weights
    step = torch_step
    if compiled(config):
        step = 1e-4 + (0.8e-9 if activations <= 2_000_000 else 1.0e-9) * activations + 3e-9 * weights
    # power iterations: ~2 for a warm start, 3 to 30 for the first (random) start; each one a
    # Hessian-vector product: a double backward of ~2.7 torch steps, or one compiled pass that only reads
    # the activations (~1 ns a number; each measurement first computes them: a compiled step)
    m = sharpness_measurements(config.steps)
    hvps = 2 * m + 10
    hvp = 1e-4 + 1e-9 * activations if compiled(config) else 2.7 * torch_step
    sharpness = hvps * hvp + (m * step if compiled(config) else 0.0)
    records = min(config.steps, 150) * 1.3e-9 * activations
    return Cost.measured(0.15 + config.steps * step + sharpness + records, "steps")


def reference(config: SineConfig) -> SineConfig:
    """The run to compare with: the posted settings, on the user's points when there are any."""
    return dataclasses.replace(AS_POSTED, points=config.points)


def check(config: SineConfig) -> list[str]:
    total = sum(a * b for a, b in itertools.pairwise((1, *config.hidden, 1)))
    if total * size(config) > 60_000_000:
        return [f"hidden: the network ({total} weights) times the points ({size(config)}) is too big to train here"]
    return points.check(config.points, min_distinct=10)


def trial(config: SineConfig, lr: float) -> SineConfig:
    """A range-test candidate's check: the same settings with that lr on a quarter of the steps."""
    return dataclasses.replace(config, lr=lr, steps=max(1, config.steps // TRIAL_SHARE))
