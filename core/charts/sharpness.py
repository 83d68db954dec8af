"""The chart every case page shows beside its loss: the measured sharpness over training
against the stability line it must stay under (2/lr; 2(1+β)/lr with momentum; 38/lr for Adam's
preconditioned sharpness), and one sentence that reads it."""

from __future__ import annotations

import math
from collections.abc import Mapping

import altair as alt
import numpy as np
import pandas as pd

from core import curvature
from core.charts import colors, finish
from core.train import RunResult

TITLE = "Sharpness and the stability line"
EDGE = 0.5  # from this share of the line up, a run is "on the edge"
JUMP = 1.1  # a loss that climbs this far above its best so far "jumps"
LINE_COLOR = "#111827"  # the stability line when every run shares it
EXPLAIN = (
    "Sharpness is the largest curvature of the training loss (the top eigenvalue of its Hessian, measured by "
    "power iteration on Hessian-vector products on a sample of steps). A step of lr is stable along a direction "
    "of curvature λ only while λ < 2/lr; heavy-ball momentum β moves the line to 2(1+β)/lr, and for Adam the "
    "curvature as its per-weight scaling sees it (preconditioned) meets 38/lr. Past the line each step overshoots "
    "along the sharpest direction and the loss jumps or diverges. Minibatch runs show the mean over a few fixed "
    "batches of each batch's λmax. All in the loss's own units: a sum over n points is n times as sharp as the mean."
)


def number(v: float) -> str:
    """A value as the axis writes it: 5e+6, 3.8e+3 (3 significant digits at most)."""
    return f"{v:.3g}".replace("e+0", "e+").replace("e-0", "e-")


def ticks(values) -> list[float]:
    """The log axis's labelled values: the powers of ten that span `values` (positive ones), with
    2× and 5× between them when the span is under three decades."""
    v = np.asarray([x for x in values if np.isfinite(x) and x > 0], dtype=float)
    if not len(v):
        return [1.0]
    lo, hi = math.floor(math.log10(v.min())), math.ceil(math.log10(v.max()))
    steps = (1, 2, 5) if hi - lo < 3 else (1,)
    return [m * 10.0**k for k in range(lo, hi + 1) for m in steps if m * 10.0**k <= 10.0**hi]


def measured(result: RunResult) -> pd.DataFrame:
    """The run's sharpness measurements past the optimizer's warm-up (Adam's first 10 steps, where
    its line does not apply yet: see `curvature.warmup`); empty when it has none."""
    frame = result.frames.get("sharpness")
    if frame is None:
        return pd.DataFrame(columns=list(curvature.COLUMNS))
    return frame[frame["settled"].astype(bool)] if "settled" in frame else frame


def _label(result: RunResult) -> str:
    sharp = measured(result)
    if not len(sharp):
        return "no line"
    return curvature.rule(float(sharp["limit"].iloc[0]), float(sharp["lr"].iloc[0]))


def chart(runs: Mapping[str, RunResult], order: list[str] | None = None, x_title: str = "step"):
    """λmax (or the variant the run measured) at each measured step, one line per run, on a log axis;
    each run's stability line dashed in its colour, labelled with its value; the first measured step
    above the line ringed. Values ≤ 0 (a dead network's flat loss) cannot sit on a log axis and are
    left out. order: every series of the page, so each run keeps its colour (see `colors`)."""
    names = [n for n, r in runs.items() if len(measured(r))]
    points = pd.concat(
        [measured(runs[n])[["step", "sharpness", "limit"]].assign(run=n) for n in names]
        or [pd.DataFrame({"step": [], "sharpness": [], "limit": [], "run": []})],
        ignore_index=True,
    )
    points = points[np.isfinite(points["sharpness"].astype(float)) & (points["sharpness"].astype(float) > 0)]
    lines = pd.DataFrame(
        [{"run": n, "limit": float(measured(runs[n])["limit"].iloc[0]), "rule": _label(runs[n])} for n in names],
        columns=["run", "limit", "rule"],
    )
    lines = lines[np.isfinite(lines["limit"].astype(float))]
    lines["text"] = [f"{r} = {number(v)}" for r, v in zip(lines["rule"], lines["limit"], strict=True)]
    shared = lines["limit"].nunique() == 1  # one line for every run: drawn once, in black
    if shared:
        lines = lines.iloc[:1]
    crossings = pd.DataFrame(
        [
            {"run": n, "step": c, "sharpness": float(_value_at(runs[n], c)), "text": f"crossed at step {c:,}"}
            for n in names
            if (c := runs[n].metrics.get("crossed_at")) is not None
        ],
        columns=["run", "step", "sharpness", "text"],
    )
    color = alt.Color("run:N", title=None, scale=colors(names, order), sort=names)
    y_axis = alt.Axis(format=".0e", values=ticks([*points["sharpness"], *lines["limit"]]))  # one label format
    y = alt.Y("sharpness:Q", title=f"{_variant(runs, names)} (log)", scale=alt.Scale(type="log"), axis=y_axis)
    tooltip = [alt.Tooltip("run:N"), alt.Tooltip("step:Q"), alt.Tooltip("sharpness:Q", format=".4g")]
    curve = (
        alt.Chart(points)
        .mark_line(strokeWidth=2, point=alt.OverlayMarkDef(size=30), clip=True)
        .encode(x=alt.X("step:Q", title=x_title), y=y, color=color, tooltip=tooltip)
    )
    layers = [curve]
    if len(lines):
        rule_y = alt.Y("limit:Q", scale=alt.Scale(type="log"), axis=y_axis)
        line_color = alt.value(LINE_COLOR) if shared else color
        rule = alt.Chart(lines).mark_rule(strokeDash=[6, 4], strokeWidth=2)
        text = alt.Chart(lines).mark_text(align="left", baseline="bottom", dx=4, dy=-3, fontSize=12)
        layers.append(rule.encode(y=rule_y, color=line_color, tooltip=["text:N"]))
        layers.append(text.encode(y=rule_y, x=alt.value(0), text="text:N", color=line_color))
    if len(crossings):
        layers.append(
            alt.Chart(crossings)
            .mark_point(shape="circle", size=260, strokeWidth=2.5, filled=False)
            .encode(x="step:Q", y=y, color=color, tooltip=["run:N", "text:N"])
        )
        layers.append(
            alt.Chart(crossings)
            .mark_text(align="left", dx=10, dy=12, fontSize=12, fontWeight=600)
            .encode(x="step:Q", y=y, text="text:N", color=color)
        )
    return finish(alt.layer(*layers), TITLE)


def _variant(runs: Mapping[str, RunResult], names: list[str]) -> str:
    """The y axis's name: what every run measured, without the batch count (short enough for the axis)."""
    kinds = {str(measured(runs[n])["variant"].iloc[0]).split(" (")[0] for n in names}
    return kinds.pop() if len(kinds) == 1 else "sharpness"


def _value_at(result: RunResult, step: int) -> float:
    sharp = measured(result)
    return float(sharp.loc[sharp["step"] == step, "sharpness"].iloc[0])


def reading(result: RunResult, loss: str = "loss") -> str:
    """One sentence that reads the chart for this run, from its numbers: how close the sharpness
    came to the line, or where it crossed it and what the loss (the history column `loss`) did after."""
    sharp = measured(result)
    m = result.metrics
    values = sharp["sharpness"].to_numpy(dtype=float) if len(sharp) else np.zeros(0)
    if not np.isfinite(values).any():
        return "The sharpness was not measured on this run."
    name = _label(result)
    top, final, limit = m["sharpness_max"], m["sharpness_final"], m["stability_limit"]
    what = str(sharp["variant"].iloc[0])
    if not math.isfinite(limit):
        return f"The {what} peaked at {top:.3g} and ended at {final:.3g}; this optimizer has no fixed step, so no line."
    crossed = m.get("crossed_at")
    if crossed is None:
        ratio = top / limit
        verdict = "stable, on the edge" if ratio >= EDGE else "stable, well below the line"
        finite = values[np.isfinite(values)]
        peak_step = int(sharp["step"].iloc[int(np.nanargmax(values))])
        if finite.max() - finite.min() <= 1e-3 * abs(finite.max()):  # a quadratic under plain SGD: one number
            how = "stayed at"
        elif peak_step == int(sharp["step"].iloc[-1]):
            how = "rose to"
        else:
            how = f"peaked at step {peak_step:,} at"
        return f"The {what} {how} {ratio:.2g} × {name}: {verdict}."
    at = _value_at(result, crossed)
    after = _after(result, crossed, loss)
    flat = "; then it fell to 0: the loss went flat (dead units)" if final <= 0 else ""
    return f"The {what} crossed {name} at step {crossed:,} ({at / limit:.3g} × the line); {after}{flat}."


def _after(result: RunResult, step: int, loss: str) -> str:
    """What the loss did from `step` on: diverged, jumped, or kept falling."""
    m = result.metrics
    if m.get("diverged_at"):
        return f"the loss diverged at step {m['diverged_at']:,}"
    history = result.history
    if loss not in history or "step" not in history:
        return "past the line each step overshoots along the sharpest direction"
    curve = history[loss].to_numpy(dtype=float)
    steps = history["step"].to_numpy()
    best = np.fmin.accumulate(curve)
    later = steps >= step
    rises = curve[later] / np.maximum(best[later], 1e-300)
    jumps = np.flatnonzero(rises > JUMP)
    if len(jumps):
        first = int(steps[later][jumps[0]])
        return f"the loss jumps from step {first:,} on (up to {np.nanmax(rises):.3g}× its best so far)"
    return "the loss kept falling all the same: the run sits at the edge of stability"


def limit_ratio(result: RunResult) -> float:
    """The largest measured sharpness as a multiple of the line (NaN when either is unknown)."""
    m = result.metrics
    top, limit = m.get("sharpness_max", math.nan), m.get("stability_limit", math.nan)
    return top / limit if math.isfinite(top) and math.isfinite(limit) and limit > 0 else math.nan
