"""Charts for case 4: the post's three panels against batch size, the steps each batch size
takes, and one run in detail (the fit, and the differences the broadcast loss averages)."""

from __future__ import annotations

from collections.abc import Mapping

import altair as alt
import numpy as np
import pandas as pd

from core.charts import HEIGHT, PALETTE, colors, finish, loss_chart
from core.train import RunResult

SHUFFLE = ("shuffled", "not shuffled")  # told apart by line style; runs by colour
DASHES = alt.Scale(domain=list(SHUFFLE), range=[[1, 0], [6, 3]])


def sweep_frame(runs: Mapping[str, RunResult]) -> pd.DataFrame:
    """Every run's sweep rows in one long table, with `run` and a `shuffled` label."""
    parts = [r.frames["sweep"].assign(run=name) for name, r in runs.items()]
    data = pd.concat(parts, ignore_index=True)
    return data.assign(shuffled=np.where(data["shuffle"], SHUFFLE[0], SHUFFLE[1]))


def sweep_chart(
    runs: Mapping[str, RunResult], field: str, title: str, *, truth: float | None = None, log: bool = False
):
    """One of the post's panels: the final `field` against batch size, one line per run and
    shuffle setting. A dotted rule marks the true value. Runs that diverged (NaN or inf) are left out."""
    data = sweep_frame(runs)[["batch_size", field, "run", "shuffled", "steps"]]
    keep = np.isfinite(data[field]) & ((data[field] > 0) if log else True)
    data = data[keep]
    names = list(runs)
    lines = (
        alt.Chart(data)
        .mark_line(strokeWidth=2, clip=True)
        .encode(
            x=alt.X("batch_size:Q", title="batch size"),
            y=alt.Y(f"{field}:Q", title=field.replace("_", " ") + (" (log scale)" if log else ""),
                    scale=alt.Scale(type="log") if log else alt.Scale(zero=False)),
            color=alt.Color("run:N", title=None, scale=colors(names), sort=names),
            strokeDash=alt.StrokeDash(
                "shuffled:N", title=None, scale=DASHES, sort=list(SHUFFLE), legend=alt.Legend(orient="top")
            ),
            tooltip=["run:N", "shuffled:N", "batch_size:Q", alt.Tooltip(f"{field}:Q", format=".4g"), "steps:Q"],
        )
    )  # fmt: skip
    layers = [lines]
    if truth is not None:
        rule = alt.Chart(pd.DataFrame({"truth": [truth]})).mark_rule(color=PALETTE["truth"], strokeDash=[2, 3])
        layers.insert(0, rule.encode(y="truth:Q"))
    return finish(alt.layer(*layers), title)


def steps_chart(runs: Mapping[str, RunResult], needed: int | None = None):
    """Optimizer steps each batch size takes (the same with and without shuffling), log scale. The
    dotted rule: the fewest steps that can carry the slope from its start to the truth at about lr per step."""
    data = sweep_frame(runs).drop_duplicates(["run", "batch_size"])[["batch_size", "steps", "run"]]
    names = list(runs)
    lines = (
        alt.Chart(data)
        .mark_line(strokeWidth=2, point=alt.OverlayMarkDef(size=12))
        .encode(
            x=alt.X("batch_size:Q", title="batch size"),
            y=alt.Y("steps:Q", title="optimizer steps (log scale)", scale=alt.Scale(type="log")),
            color=alt.Color("run:N", title=None, scale=colors(names), sort=names),
            tooltip=["run:N", "batch_size:Q", alt.Tooltip("steps:Q", format=",")],
        )
    )
    layers = [lines]
    if needed is not None:
        marker = pd.DataFrame({"steps": [needed], "label": [f"the fewest steps that reach the slope: {needed:,}"]})
        rule = alt.Chart(marker).mark_rule(color=PALETTE["truth"], strokeDash=[2, 3]).encode(y="steps:Q")
        text = (
            alt.Chart(marker)
            .mark_text(align="right", dx=-4, dy=-7, fontSize=12, color=PALETTE["truth"])
            .encode(y="steps:Q", x=alt.datum(float(data["batch_size"].max())), text="label:N")
        )
        layers += [rule, text]
    return finish(alt.layer(*layers), "Optimizer steps each batch size takes")


def fit_chart(result: RunResult, title: str):
    """The data (grey), the run's last full batch (blue dots), the true line (dashed), the
    starting line (grey) and the fitted line (blue)."""
    f = result.frames
    points = (
        alt.Chart(f["data"])
        .mark_circle(size=10, opacity=0.35, color=PALETTE["data"])
        .encode(x=alt.X("x:Q", title="x"), y=alt.Y("y:Q", title="y"))
    )
    batch = (
        alt.Chart(f["batch"])
        .mark_circle(size=55, opacity=0.9, color=PALETTE["current"], stroke="white", strokeWidth=1)
        .encode(x="x:Q", y="y:Q", tooltip=[alt.Tooltip("x:Q", format=".3f"), alt.Tooltip("y:Q", format=".3f")])
    )
    names = {"truth": "the data's line", "start": "start", "fit": "fitted"}
    line = f["line"].melt(id_vars="x", value_vars=list(names), var_name="key", value_name="y")
    line = line.assign(line=line["key"].map(names))
    order = list(names.values())
    lines = (
        alt.Chart(line)
        .mark_line(strokeWidth=2.5)
        .encode(
            x="x:Q",
            y="y:Q",
            color=alt.Color(
                "line:N",
                title=None,
                sort=order,
                scale=alt.Scale(domain=order, range=[PALETTE["truth"], "#9ca3af", PALETTE["current"]]),
            ),
            strokeDash=alt.StrokeDash(
                "line:N", legend=None, sort=order, scale=alt.Scale(domain=order, range=[[5, 4], [2, 2], [1, 0]])
            ),
        )
    )
    return finish(alt.layer(points, lines, batch), title)


def _color_scale(result: RunResult) -> alt.Scale:
    """One diverging scale, centred on 0, shared by the (B, B) heatmap and the B meant differences."""
    d = result.frames["pairs"]["difference"].to_numpy()
    d = np.abs(d[np.isfinite(d)])
    top = float(d.max()) if len(d) and d.max() > 0 else 1.0
    return alt.Scale(scheme="redblue", domain=[-top, top], reverse=True)


def pairs_chart(result: RunResult):
    """The (B, B) matrix of p_i − y_j that the broadcast loss averages (at most 40 × 40 shown),
    its diagonal (the B pairs the user meant) outlined."""
    pairs = result.frames["pairs"]
    pairs = pairs[np.isfinite(pairs["difference"])]
    k = int(pairs["prediction"].max()) + 1 if len(pairs) else 0
    scale = _color_scale(result)
    ticks = list(range(0, k, 5)) if k > 20 else alt.Undefined  # every 5th label when the matrix is big
    heat = (
        alt.Chart(pairs)
        .mark_rect()
        .encode(
            x=alt.X("prediction:O", title="prediction i", axis=alt.Axis(labelAngle=0, values=ticks)),
            y=alt.Y("target:O", title="target j", axis=alt.Axis(values=ticks)),
            color=alt.Color("difference:Q", title="p_i − y_j", scale=scale),
            tooltip=["prediction:O", "target:O", alt.Tooltip("difference:Q", format=".3f")],
        )
    )
    diagonal = (
        alt.Chart(pairs[pairs["prediction"] == pairs["target"]])
        .mark_rect(fill=None, stroke="#111827", strokeWidth=1.5)
        .encode(x="prediction:O", y="target:O")
    )
    batch = int(result.metrics["batch_size"])
    if result.metrics["broadcast_warning"]:
        title = f"The {batch} × {batch} differences the loss averages"
    else:
        title = f"All {batch} × {batch} differences; the loss averages the diagonal"
    if k < batch:  # a second title line
        title = [title, f"(the first {k} rows and columns)"]
    return finish(alt.layer(heat, diagonal), title, height=max(HEIGHT, 12 * k))


def meant_chart(result: RunResult):
    """The B differences p_i − y_i the user meant (the diagonal above), as bars in the same colours."""
    batch = result.frames["batch"]
    batch = batch[np.isfinite(batch["difference"])]
    k = len(result.frames["pairs"]["prediction"].unique())
    bars = (
        alt.Chart(batch.head(max(k, 1)))
        .mark_bar(stroke="#9ca3af", strokeWidth=0.5)
        .encode(
            y=alt.Y("i:O", title="i", axis=alt.Axis(values=list(range(0, k, 5)) if k > 20 else alt.Undefined)),
            x=alt.X("difference:Q", title="p_i − y_i"),
            color=alt.Color("difference:Q", scale=_color_scale(result), legend=None),
            tooltip=["i:O", alt.Tooltip("x:Q", format=".3f"), alt.Tooltip("difference:Q", format=".3f")],
        )
    )
    return finish(bars, "The differences meant", height=max(HEIGHT, 12 * k))


def loss(result: RunResult):
    return loss_chart({"current": result.history}, title="One run: loss per step")
