"""Case 2's diagnosis: what the measurements of a run show, each finding with the settings that
fix it; and when the post's second, latent bug (`x.reshape(250, -1)`) would bite."""

from __future__ import annotations

import math

from core import curvature
from core.case import Finding
from core.cases.cifar.config import CifarConfig, _g
from core.train import RunResult


def diagnose(config: CifarConfig, result: RunResult) -> list[Finding]:
    """The measured evidence for each problem in `config`, with the setting change that fixes it."""
    m = result.metrics
    found = []
    s = config.input_scale
    chance = m["chance_loss"]
    collapsed = math.isfinite(m["final_loss"]) and abs(m["final_loss"] - chance) < 0.02
    rule_holds = (
        math.isclose(config.layer1_init_scale * s, 1, rel_tol=1e-4)
        and math.isclose(config.layer1_lr_scale * s * s, 1, rel_tol=1e-4)
        and math.isclose(config.layer1_wd_scale, s * s, rel_tol=1e-4)
        and (config.layer2_init_scale, config.layer2_lr_scale, config.layer2_wd_scale) == (1, 1, 1)
    )
    if s != 1 and config.normalize == "none" and not rule_holds:
        found.append(
            Finding(
                "scaled-input",
                f"Inputs × {s:g}: the first step moves layer 1 {m['first_step_move_ratio']:,.3g}× as far",
                f"Multiplying the inputs by s = {s:g} multiplies layer 1's pre-activations and its weight "
                f"gradient by s, so an SGD step moves the pre-activations about lr·s² times as far (s² = "
                f"{s * s:,.0f}). Measured on the first batch with these settings: {m['first_step_move_ratio']:,.3g}× "
                f"the as-posted move, and the initial logits are {m['initial_logit_ratio']:,.3g}× as large. "
                f"Layer 1's initial weights / s, its lr / s² and its weight decay × s² (the same decay per "
                "step), layer 2 untouched, make it the s = 1 run again.",
                {
                    "layer1_init_scale": _g(1 / s),
                    "layer1_lr_scale": _g(1 / s**2),
                    "layer1_wd_scale": _g(s**2),
                    "layer2_init_scale": 1.0,
                    "layer2_lr_scale": 1.0,
                    "layer2_wd_scale": 1.0,
                },
            )
        )
    if collapsed:
        found.append(
            Finding(
                "collapsed",
                "The network has collapsed to a constant guess",
                f"The training loss ends at {m['final_loss']:.4f}, the loss of a uniform guess over "
                f"{m['classes']} classes (ln {m['classes']} = {chance:.4f}); test accuracy {m['test_accuracy']:.1%}. "
                f"{m['dead_relu_fraction']:.0%} of the hidden units never fire on any test image and the logits "
                f"spread by {m['logit_spread']:.3g}: every image gets the same answer. Standardised inputs keep "
                "the first steps in range whatever the input scale.",
                {"normalize": "standardize"},
            )
        )
    elif m["dead_relu_fraction"] > 0.5:
        found.append(
            Finding(
                "dead-relus",
                "Most hidden units are dead",
                f"{m['dead_relu_fraction']:.0%} of the {config.hidden} hidden units never fire on any test image: "
                "their weights get no gradient and they cannot come back. Steps that were too big early on "
                "pushed them there.",
                {"normalize": "standardize"},
            )
        )
    if config.normalize == "none" and not collapsed:
        found.append(
            Finding(
                "uncentred",
                "The inputs are not centred",
                f"Every pixel the network sees is ≥ 0 (ToTensor() gives [0, 1], times {s:g}), so all of a hidden "
                "unit's weight gradients share one sign per step and the weights zig-zag toward their goal. "
                "Per-channel standardisation centres them (and makes any input scale harmless); biases let "
                "units move their thresholds.",
                {"normalize": "standardize", "bias": True},
            )
        )
    above = curvature.above_line(m, config.lr)
    if above is not None:
        evidence, lr = above
        found.append(Finding("above-stability-line", "lr above the stability line", evidence, {"lr": lr}))
    return found


def diverged_note(m: dict) -> str:
    """What a diverged run's metrics `m` mean, and what keeps the steps in range."""
    return (
        f"The loss became NaN or infinite at step {m['diverged_at']}: the run diverged. The charts show it up "
        "to the last finite step; a smaller lr (or the s² rule for a scaled input) keeps the steps in range."
    )


def reshape_note(config: CifarConfig, n: int) -> str | None:
    """The post's second, latent bug: `x.reshape(250, -1)` in forward. When would it bite?"""
    last = n % config.batch_size
    if config.batch_size != 250:
        return (
            f"The posted forward pass hard-codes `x.reshape(250, -1)`: with batch_size {config.batch_size} it "
            f"raises RuntimeError on the first batch (a {config.batch_size}×3×32×32 batch is not 250 rows). "
            "Here each batch is flattened as `x.reshape(len(x), -1)`."
        )
    if last:
        return (
            f"The posted forward pass hard-codes `x.reshape(250, -1)`: with {n:,} training images the last "
            f"batch of each epoch holds {last}, and the posted code raises RuntimeError there. Here each "
            "batch is flattened as `x.reshape(len(x), -1)`."
        )
    return None
