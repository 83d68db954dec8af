"""Case 1's diagnosis: each problem of the posted code that a run's measurements show, with the
setting change that fixes it."""

from __future__ import annotations

import math

from core import curvature
from core.case import Finding
from core.cases.sine.config import NOISE_STD, SineConfig, size, x_range
from core.train import RunResult


def diagnose(config: SineConfig, result: RunResult) -> list[Finding]:
    """The measured evidence for each problem present in `config`, with the setting change that fixes it."""
    m = result.metrics
    found = []
    width = config.hidden[0]
    lo, hi = x_range(config)
    if not config.bias:
        found.append(
            Finding(
                "no-bias",
                "Every hidden unit switches at x = 0",
                f"{m['transitions_near_zero']:.0%} of the {width} first-layer units cross zero within 0.5 of "
                f"x = 0, yet the data runs from {lo:g} to {hi:g}. Without a bias, unit j computes "
                f"{config.activation}(w_j·x), which can only switch where x = 0: all the detail is crammed "
                "there and the rest of the range is a sum of saturated constants.",
                {"bias": True},
            )
        )
    pre_rms, flat = m["initial_output_preact_rms"], m["initial_output_flat_share"]
    if config.output_activation == "tanh" and flat > 0.1:
        fan_in = config.hidden[-1]
        found.append(
            Finding(
                "saturated-output",
                "The output tanh starts saturated",
                f"At step 1, {flat:.0%} of the points have an output pre-activation |z| > 3, where "
                f"tanh'(z) = 1 - tanh(z)^2 < 0.01: they pass almost no gradient back. z is a sum of {fan_in} "
                f"hidden values (mostly ±1) times std-1 weights, typically of size sqrt({fan_in}) = "
                f"{math.sqrt(fan_in):.1f}; here its RMS over the data is {pre_rms:.1f}.",
                {"output_activation": "identity", "init": "default"},
            )
        )
    if config.loss == "sse":
        n = size(config)
        found.append(
            Finding(
                "sum-loss",
                "A sum loss multiplies the step by n",
                f"The gradient of a sum over n = {n} points is {n}× the mean's, so lr {config.lr:g} on the sum "
                f"takes the step of lr {config.lr * n:g} on the mean. Any change of n silently changes the step.",
                {"loss": "mse", "lr": float(f"{config.lr * n:.3g}")},
            )
        )
    if not config.standardize_x and abs(lo + hi) / 2 > 0.5 * (hi - lo) / math.sqrt(12):
        found.append(
            Finding(
                "uncentred-input",
                "The input is not centred",
                f"x spans [{lo:g}, {hi:g}]: its centre {(lo + hi) / 2:g} is far from 0 for its spread "
                f"(std about {(hi - lo) / math.sqrt(12):.2f}). "
                "Pre-activations w·x then grow with x, and units saturate further from the origin.",
                {"standardize_x": True},
            )
        )
    loss = result.history["loss"].to_numpy()
    if config.optimizer in ("gd", "momentum") and m["rmse_vs_truth"] > 0.02 and len(loss) >= 10:
        half = loss[len(loss) // 2]
        found.append(
            Finding(
                "slow-descent",
                "Plain gradient descent crawls",
                f"Over the second half of the run the loss went from {half:.4g} to {loss[-1]:.4g} "
                f"({1 - loss[-1] / half:.1%} lower), and the fit is still {m['rmse_vs_truth'] / NOISE_STD:.1f}× "
                "the noise std away from sin(x)/2.5. One step size for every weight cannot suit both the "
                "steep and the flat directions of this loss; Adam scales each weight's step.",
                {"optimizer": "adam", "lr": 3e-3},
            )
        )
    above = curvature.above_line(m, config.lr)
    if above is not None:
        evidence, lr = above
        found.append(Finding("above-stability-line", "lr above the stability line", evidence, {"lr": lr}))
    return found
