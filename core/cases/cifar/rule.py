"""The s² rule, measured: how far one SGD step moves layer 1's pre-activations, for a run
against its as-posted reference and over input scales s for three recipes; and the post's
table of six settings, re-run.

Why: scaling the inputs by s scales layer 1's pre-activations by s and its weight gradient by
s, so one SGD step moves the pre-activations lr·s² times as far as at s = 1. Layer 1's initial
weights / s, its lr / s² and its weight decay × s² (the same decay per step), with layer 2
untouched, make the run the s = 1 run again; every fix in the post is a partial version of it.
"""

from __future__ import annotations

import dataclasses

import pandas as pd
import torch
import torch.nn.functional as F

from core import rng
from core.cases.cifar.cache import Data, DataCache, prepare
from core.cases.cifar.config import CHANGES, POST_TABLE, CifarConfig, reference
from core.cases.cifar.model import forward, init_params, input_stats, make_optimizer, to_input
from core.train import RunResult

SCALES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 255.0)


def one_step(config: CifarConfig, data: Data, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(3,): RMS of layer 1's pre-activation change in one SGD step from the initial weights,
    RMS of the pre-activations themselves, and RMS of the initial logits, on one batch."""
    params = {k: v.to(device).requires_grad_() for k, v in init_params(config, data.images.n_classes).items()}
    x = to_input(data.train_x.index_select(0, idx), config, input_stats(data, config))
    y = data.train_y.index_select(0, idx)
    w1, b1 = params["layer1.weight"], params.get("layer1.bias")
    z1 = F.linear(x, w1, b1).detach()
    logits, _ = forward(params, x)
    F.cross_entropy(logits, y).backward()
    make_optimizer(params, config).step()
    with torch.no_grad():
        moved = F.linear(x, w1, b1) - z1
        return torch.stack([moved.square().mean().sqrt(), z1.square().mean().sqrt(), logits.square().mean().sqrt()])


def first_batch(config: CifarConfig, n: int, device: torch.device) -> torch.Tensor:
    """The indices of the run's first batch (the same draw as its first epoch's permutation)."""
    return torch.randperm(n, generator=rng.generator(config.seed, 2))[: config.batch_size].to(device)


def first_step(config: CifarConfig, data: Data, device: torch.device) -> dict[str, float]:
    """This config's first SGD step against the as-posted run's, on the run's first batch:
    how far it moves layer 1's pre-activations (ratio, and relative to their size), and
    how large the initial logits are (ratio)."""
    idx = first_batch(config, len(data.train_y), device)
    base_cfg = reference(config)
    base = one_step(base_cfg, data, idx, device)
    this = one_step(config, data, idx, device) if config != base_cfg else base
    b, t = base.cpu().double().numpy(), this.cpu().double().numpy()
    return {"move_ratio": float(t[0] / b[0]), "relative_move": float(t[0] / t[1]), "logit_ratio": float(t[2] / b[2])}


RECIPES = ("inputs × s", "inputs × s, lr / s", "inputs × s, the s² rule")


def rule_sweep(config: CifarConfig, device: torch.device) -> pd.DataFrame:
    """The s² rule, measured: over input scales s, how far the first SGD step moves layer 1's
    pre-activations compared with s = 1, for three recipes on the as-posted model with this
    config's data and seed: inputs × s alone, with lr / s on both layers, and with the rule
    (layer 1's initial weights / s, its lr / s², its weight decay × s²). ~25 single steps, made once
    per data, seed and device (every preset shares its as-posted reference's); each caller gets its own copy."""
    base_cfg = reference(config)
    return SWEEPS.get((base_cfg, str(device)), lambda: _rule_sweep(base_cfg, device)).copy()


# the sweeps made in this process: bounded, thread-safe, one computation per key at a time
SWEEPS = DataCache(max_bytes=1 << 20, size=lambda frame: int(frame.memory_usage(deep=True).sum()))


def _rule_sweep(base_cfg: CifarConfig, device: torch.device) -> pd.DataFrame:
    data = prepare(base_cfg, device)
    idx = first_batch(base_cfg, len(data.train_y), device)
    base = one_step(base_cfg, data, idx, device)
    rows = []
    for s in SCALES:
        recipes = (
            dataclasses.replace(base_cfg, input_scale=s),
            dataclasses.replace(base_cfg, input_scale=s, layer1_lr_scale=1 / s, layer2_lr_scale=1 / s),
            dataclasses.replace(
                base_cfg, input_scale=s, layer1_init_scale=1 / s, layer1_lr_scale=1 / s**2, layer1_wd_scale=s**2
            ),
        )
        for name, c in zip(RECIPES, recipes, strict=True):
            rows.append((s, name, base if s == 1 else one_step(c, data, idx, device)))
    values = torch.stack([r for _, _, r in rows]).cpu().double().numpy()  # (rows, 3)
    b = base.cpu().double().numpy()
    return pd.DataFrame(
        {
            "scale": [s for s, _, _ in rows],
            "recipe": [name for _, name, _ in rows],
            "move_ratio": values[:, 0] / b[0],
            "relative_move": values[:, 0] / values[:, 1],
            "predicted": [s**2 if name == RECIPES[0] else s if name == RECIPES[1] else 1.0 for s, name, _ in rows],
        }
    )


def table_frame(results: dict[str, RunResult]) -> pd.DataFrame:
    """One row per preset of the post's table: what changes, what the post reported, and what
    the re-run measured (test accuracy, final loss, dead ReLUs, the first step's move)."""
    rows = []
    for name, r in results.items():
        m = r.metrics
        rows.append(
            {
                "preset": name,
                "changes": CHANGES[name],
                "post says": POST_TABLE[name],
                "test_accuracy": m["test_accuracy"],
                "final_loss": m["final_loss"],
                "dead_relus": m["dead_relu_fraction"],
                "first_step_move": m["first_step_move_ratio"],
                "initial_logits": m["initial_logit_ratio"],
                "classes": m["classes"],
            }
        )
    return pd.DataFrame(rows)


# the table's columns as a page shows them: short labels, so that it fits 1024 px without scrolling
SHORT = {
    "changes": "changes",
    "post says": "the post says",
    "test_accuracy": "test acc.",
    "final_loss": "loss",
    "dead_relus": "dead",
    "first_step_move": "1st step ×",
    "initial_logits": "logits ×",
}


def table_text(table: pd.DataFrame) -> pd.DataFrame:
    """`table_frame`'s rows as text, indexed by preset, for a compact static table."""

    def g(v: float) -> str:
        return f"{v:,.3g}" if abs(v) < 1e6 else f"{v:.2e}"

    text = pd.DataFrame(
        {
            "changes": table["changes"],
            "post says": table["post says"],
            "test_accuracy": table["test_accuracy"].map("{:.1%}".format),
            "final_loss": table["final_loss"].map("{:.3f}".format),
            "dead_relus": table["dead_relus"].map("{:.0%}".format),
            "first_step_move": table["first_step_move"].map(g),
            "initial_logits": table["initial_logits"].map(g),
        }
    )
    return text.set_index(table["preset"].rename("preset")).rename(columns=SHORT)


def explain(sweep: pd.DataFrame) -> str:
    """The s² rule in words, with the sweep's measured moves at s = 255 (markdown)."""
    at_255 = sweep[sweep["scale"] == 255.0].set_index("recipe")["move_ratio"]
    return (
        "Multiply the inputs by *s* and layer 1's pre-activations *z = W x* grow *s*-fold, and so does the "
        "gradient of *W* (it is the error times *x*). One SGD step changes *z* by *lr · gradient · x*: "
        f"**s² times as much**. Measured on the first batch of these data, at s = 255 the first step moves *z* "
        f"**{at_255[RECIPES[0]]:,.0f}×** as far as at s = 1 (s² = {255.0**2:,.0f}; more, because the "
        "255-fold logits also saturate the softmax). With lr / 255 it is still "
        f"**{at_255[RECIPES[1]]:,.0f}×**, which is why that run trains, but badly.\n\n"
        "The rule that undoes the scale exactly: layer 1's initial weights / s (so *z* starts where it did) "
        "and layer 1's lr / s² (so it moves as it did), with its weight decay × s² (so lr × weight decay, the "
        "decay per step, stays as posted), **layer 2 untouched** (its input did not change). "
        f"Measured: **{at_255[RECIPES[2]]:.4f}×**. The poster's fixes are partial versions of it: "
        "weights / 255 on both layers shrinks the logits 255-fold too, and lr / 255² on both layers slows "
        "layer 2 as well while starting from 255-fold logits."
    )


TABLE_NOTE = (
    "×255: inputs × 255; L1: layer 1; init: initial weights; wd: weight decay. `1st step ×`: how far the first "
    "SGD step moves layer 1's pre-activations, and `logits ×`: how large the logits start, both relative to "
    "as-posted on the same batch. Only the rule puts both back at 1: weights / 255 on both layers shrinks the "
    "logits 255-fold, lr / 255² leaves them 255-fold, and lr / 255 still moves z 255-fold too far (more with "
    "the saturated softmax)."
)
