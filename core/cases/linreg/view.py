"""What page 4 says and draws, as plain values: which runs its charts overlay, and its prose built
from the results (pure: the page only lays them out)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from core.cases.linreg.config import AS_POSTED, FIXED_REACHES, PRESETS, LinregConfig
from core.cases.linreg.data import steps_needed, sweep_sizes
from core.cases.linreg.single import SINGLE
from core.train import RunResult


def pin_details(pinned: Mapping[str, RunResult], pins: Mapping[str, Any]) -> dict[str, Any]:
    """The pinned sweeps drawn on the page whose single run may train (its own limits allow it), by label."""
    return {label: c for label, c in pins.items() if label in pinned and not SINGLE.check(c)}


def budget_note(config: LinregConfig, result: RunResult) -> str:
    """Beside the steps chart (markdown): what the budget gives each batch size, against the steps needed."""
    m, steps = result.metrics, result.frames["sweep"].drop_duplicates("batch_size")["steps"]
    needed = steps_needed(config, m["initial_slope"]) if config.optimizer == "adam" else None
    if config.budget == "epochs":
        return "**The second cause: an epoch budget gives large batches few steps**\n\n" + (
            f"With a budget of epochs, a run takes epochs × ceil(n / B) steps: here {steps.iloc[0]:,} at the "
            f"smallest batch and {steps.iloc[-1]:,} at the largest. Adam moves a weight by about lr per step, "
            f"whatever the gradient's size, and every fit starts from the same line, slope {m['initial_slope']:.2f}. "
            + (
                f"Reaching {config.slope:g} takes at least {needed:,} steps at lr {config.lr:g}: batch sizes "
                "whose line lies below the dotted rule stop short, with or without the shape bug. "
                if needed is not None
                else ""
            )
            + "The fix is a budget of steps (or a larger learning rate for larger batches), not of epochs."
        )
    return "**A budget of steps: every batch size gets the same number**\n\n" + (
        f"Every batch size takes {config.steps:,} optimizer steps, however many epochs that is. Adam moves a "
        f"weight by about lr per step and every fit starts from slope {m['initial_slope']:.2f}"
        + (f", so reaching {config.slope:g} takes at least {needed:,} steps at lr {config.lr:g}." if needed else ".")
        + " A larger batch only makes each step's gradient less noisy."
    )


def detail_note(config: LinregConfig, detail: RunResult) -> str:
    """The single run in one sentence: its batch, its shuffling, its steps and where it ended."""
    d = detail.metrics
    how = "shuffled" if d["shuffle"] else "not shuffled"
    optimizer = "Adam" if config.optimizer == "adam" else "SGD"
    return (
        f"Batch size **{d['batch_size']}**, {how}"
        + (" (the sweep trains both; this run is shuffled, as the posted code was)" if config.shuffle == "both" else "")
        + f": {d['steps_run']:,} steps of `F.mse_loss(preds, y)` and `torch.optim.{optimizer}`, computed from "
        f"batch means as the sweep computes its runs, ended at slope **{d['slope']:.3f}** and intercept "
        f"**{d['intercept']:.3f}**."
    )


def pairs_note(detail: RunResult) -> str:
    """What the heatmap of the single run's (B, B) differences shows."""
    return (
        "Each cell is a prediction minus a target of the run's last full batch, at the final weights: p_i − y_j. "
        + (
            "`F.mse_loss` with targets (B, 1, 1) squares and averages *every* cell; the loss meant averages "
            "only the outlined diagonal, p_i − y_i, shown again as bars. The matrix is smallest when every "
            "prediction equals the batch's mean target, and that is a flat line. With unshuffled small batches "
            "the targets of a batch are nearly equal, so the rows hardly differ and the two losses agree."
            if detail.metrics["broadcast_warning"]
            else "With targets (B, 1), `F.mse_loss` averages only the outlined diagonal, p_i − y_i, shown again "
            "as bars: each prediction against its own target. The rest of the matrix is what the posted "
            "shapes would have averaged as well."
        )
    )


def fixed_caption() -> str:
    """What the fixed preset's sweep measures, from FIXED_REACHES (tests/test_linreg.py checks the claim)."""
    fixed, sizes = PRESETS["fixed"], sweep_sizes(PRESETS["fixed"])
    return (
        f"Measured, seeds 0-{FIXED_REACHES['seeds'] - 1}: with targets (B, 1) and {fixed.steps} Adam steps for "
        f"every batch size, every batch size from {sizes[0]} to {sizes[-1]}, shuffled or not, ends within "
        f"{FIXED_REACHES['slope']} of slope {AS_POSTED.slope:g} and {FIXED_REACHES['intercept']} of intercept "
        f"{AS_POSTED.intercept:g}."
    )


def loss_text(losses: pd.DataFrame) -> pd.DataFrame:
    """The detail's epoch-loss table as the page shows it: each loss to 4 significant digits."""
    return losses.map(lambda v: f"{v:.4g}" if isinstance(v, float) else v)
