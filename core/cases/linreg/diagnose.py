"""Case 4's diagnosis: the measured evidence for each cause a config holds, with the settings that fix it."""

from __future__ import annotations

import pandas as pd

from core import curvature
from core.case import Finding
from core.cases.linreg.config import AS_POSTED, LinregConfig
from core.cases.linreg.data import steps_needed
from core.train import RunResult

REACHED = 0.1  # a run "reaches" the slope when it ends within this of it


def diagnose(config: LinregConfig, result: RunResult, detail: RunResult | None = None) -> list[Finding]:
    """The measured evidence for each cause present in `config`, with the setting change that fixes it.
    detail: the single run shown beside a sweep (its sharpness is measured; the sweep's is not)."""
    m = result.metrics
    found = []
    sweep = result.frames.get("sweep")
    if config.target_shape == "as-posted":
        if sweep is not None:
            evidence = _broadcast_evidence(config, sweep)
        else:
            evidence = (
                f"This run ended at slope {m['slope']:.2f} and intercept {m['intercept']:.2f} "
                f"(the data: {config.slope:g} and {config.intercept:g}). "
            )
        evidence += (
            "Predictions are (B, 1) but targets (B, 1, 1), so `F.mse_loss` broadcasts them to (B, B, 1) and "
            "averages all B² pairs (p_i − y_j)², of which only B pair a prediction with its own target. That "
            "loss is smallest when every prediction is the batch's mean target: slope 0. Shuffled batches span "
            "the whole line, so every step pulls the slope towards 0; unshuffled small batches hold neighbouring "
            "x, whose targets are nearly equal, so there the wrong loss is close to the right one."
        )
        if m.get("warning"):
            evidence += f' PyTorch said so: "{m["warning"]}"'
        found.append(
            Finding(
                "broadcast", "The loss compares every prediction with every target", evidence, {"target_shape": "fixed"}
            )
        )
    short = _too_few_steps(config, result)
    if short is not None:
        found.append(short)
    single = detail if detail is not None else result if "sweep" not in result.frames else None
    above = curvature.above_line(single.metrics, config.lr) if single is not None else None
    if above is not None:
        evidence, lr = above
        found.append(Finding("above-stability-line", "lr above the stability line", evidence, {"lr": lr}))
    return found


def reach(config: LinregConfig, sweep: pd.DataFrame) -> dict[bool, dict]:
    """By shuffle setting of a sweep: how many batch sizes end within REACHED of the true slope,
    the largest of them, and the run that came closest."""
    out = {}
    for shuffled, part in sweep.groupby("shuffle", sort=False):
        error = (part["slope"] - config.slope).abs()
        ok = part[error <= REACHED]
        best = part.loc[error.idxmin()] if error.notna().any() else part.iloc[0]
        out[bool(shuffled)] = {
            "runs": len(part),
            "reached": len(ok),
            "largest_reached": int(ok["batch_size"].max()) if len(ok) else None,
            "best_slope": float(best["slope"]),
            "best_batch_size": int(best["batch_size"]),
        }
    return out


def _broadcast_evidence(config: LinregConfig, sweep: pd.DataFrame) -> str:
    parts = []
    for shuffled, r in reach(config, sweep).items():
        label = "with shuffling" if shuffled else "without shuffling"
        if r["reached"] == 0:
            parts.append(
                f"{label}, no batch size reaches slope {config.slope:g} (the closest: {r['best_slope']:.2f} at "
                f"batch size {r['best_batch_size']})"
            )
        else:
            parts.append(
                f"{label}, {r['reached']} of {r['runs']} batch sizes end within {REACHED} of it (the largest: "
                f"{r['largest_reached']})"
            )
    return "Measured: " + "; ".join(parts) + ". " if parts else ""


def _too_few_steps(config: LinregConfig, result: RunResult) -> Finding | None:
    m = result.metrics
    needed = steps_needed(config, m["initial_slope"])
    sweep = result.frames.get("sweep")
    steps = sweep.drop_duplicates("batch_size") if sweep is not None else None
    fewest = int(steps["steps"].min()) if steps is not None else m["steps_run"]
    if config.budget != "epochs" or config.optimizer != "adam" or fewest >= needed:
        return None
    evidence = (
        f"The budget is {config.epochs} epochs, so a run takes {config.epochs} × ceil({config.n_points} / B) steps: "
    )
    if steps is not None:
        big = steps.iloc[-1]
        short = steps[steps["steps"] < needed]
        evidence += (
            f"batch size {steps.iloc[0]['batch_size']} takes {int(steps.iloc[0]['steps']):,} and batch size "
            f"{big['batch_size']} only {int(big['steps']):,}. "
        )
    else:
        evidence += f"batch size {config.batch_size} takes {fewest:,}. "
    evidence += (
        f"Adam moves a weight by about lr = {config.lr:g} per step, and the slope starts at "
        f"{m['initial_slope']:.2f}: reaching {config.slope:g} takes at least {needed:,} steps"
    )
    if steps is not None:
        evidence += f", which {len(short)} of the {len(steps)} batch sizes do not get, bug or no bug."
    else:
        evidence += ", more than this run gets."
    if sweep is not None and config.target_shape == "fixed":  # the bug fixed: what is left is this cause
        row = sweep[sweep["batch_size"] == sweep["batch_size"].max()].iloc[0]
        evidence += f" Measured: batch size {row['batch_size']} ends at slope {row['slope']:.2f}."
    return Finding(
        "too-few-steps",
        "Large batches take too few optimizer steps",
        evidence,
        {"budget": "steps", "steps": AS_POSTED.steps},
    )
