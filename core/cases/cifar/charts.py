"""Charts for case 2: loss and test accuracy, per-layer gradients and updates, dead ReLUs,
test images with their predictions, the s² rule measured, and the post's table."""

from __future__ import annotations

import math
from collections.abc import Mapping

import altair as alt
import numpy as np
import pandas as pd

from core.charts import E_LABEL, colors, finish, log_axis, long_runs, loss_layers
from core.charts import sharpness as sharpness_
from core.train import RunResult

GRID_COLUMNS = 8


def figures(runs: Mapping[str, RunResult], smoothing: float = 0.0, log_scale: bool = True) -> dict:
    """The page's charts by name (the page lays them out; `python -m core figures` writes them).
    The first run is the current one: the test images and the s² rule are its own.
    smoothing, log_scale: the loss chart's (see `core.charts.loss_layers`)."""
    current = next(iter(runs.values()))
    return {
        "loss": loss_chart(runs, smoothing, log_scale),
        "sharpness": sharpness_.chart(runs),
        "accuracy": accuracy_chart(runs),
        "grad_norm": grad_norm_chart(runs),
        "update_ratio": update_ratio_chart(runs),
        "dead": dead_chart(runs),
        "images": images_chart(current),
        "rule": rule_chart(current.frames["rule"]),
    }


def data_label(result: RunResult) -> str:
    """Which data a chart's numbers come from, for its axis title: the synthetic stand-in is
    named on every chart it appears in, exports included. (Not a subtitle: Streamlit sizes a
    chart's frame without one, and the overflow hides the title of the chart below.)"""
    m = result.metrics
    return f"{m['dataset']}, {m['train_size']:,} images × {m['epochs_run']:g} epochs"


def loss_chart(runs: Mapping[str, RunResult], smoothing: float = 0.0, log_scale: bool = True):
    """Training loss of every step (log axis, or linear), one line per run (smoothed: `loss_layers`),
    with ln(classes): the loss of a uniform guess, where a collapsed network sits."""
    names = list(runs)
    chance = next(iter(runs.values())).metrics["chance_loss"]
    first = next(iter(runs.values()))
    lines = loss_layers(
        {name: r.history for name, r in runs.items()},
        x=alt.X("step:Q", title=f"step · {data_label(first)}"),
        y="loss",
        y_title="training loss",
        color=alt.Color("run:N", title=None, scale=colors(names), sort=names),
        per_run=max(200, 4000 // max(1, len(runs))),  # Altair refuses more than 5000 rows in all
        smoothing=smoothing,
        log_scale=log_scale,
        also=[chance],
        strokeWidth=1.5,
        opacity=0.9,
    )
    # named in the legend, not written on the plot: a collapsed run's loss line lies right on it
    label = f"ln {round(math.exp(chance))} = {chance:.3f}: a uniform guess"
    chance_line = alt.Chart(pd.DataFrame({"loss": [chance], "label": [label]}))
    rule = chance_line.mark_rule(strokeDash=[5, 4], strokeWidth=1.5).encode(
        y="loss:Q",
        stroke=alt.Stroke(
            "label:N", title=None, scale=alt.Scale(domain=[label], range=["#6b7280"]), legend=alt.Legend(labelLimit=400)
        ),
        tooltip=["label:N"],
    )
    return finish(alt.layer(rule, *lines), "Training loss per step")


def accuracy_chart(runs: Mapping[str, RunResult]):
    """Test accuracy after each epoch, one line per run; the dashed line is chance."""
    data = long_runs({n: r.frames["epochs"] for n, r in runs.items()}, "epoch", "test_accuracy")
    data = data[np.isfinite(data["test_accuracy"])]
    names = list(runs)
    first = next(iter(runs.values()))
    classes = first.metrics["classes"]
    lines = (
        alt.Chart(data)
        .mark_line(strokeWidth=2, point=alt.OverlayMarkDef(size=30))
        .encode(
            x=alt.X("epoch:Q", title=f"epoch · {data_label(first)}", axis=alt.Axis(tickMinStep=1)),
            y=alt.Y(
                "test_accuracy:Q", title="test accuracy", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")
            ),
            color=alt.Color("run:N", title=None, scale=colors(names), sort=names),
            tooltip=["run:N", "epoch:Q", alt.Tooltip("test_accuracy:Q", format=".1%")],
        )
    )
    chance_line = alt.Chart(pd.DataFrame({"test_accuracy": [1 / classes], "label": [f"chance: 1/{classes}"]}))
    rule = chance_line.mark_rule(color="#6b7280", strokeDash=[5, 4]).encode(y="test_accuracy:Q", tooltip=["label:N"])
    text = chance_line.mark_text(align="left", dx=4, dy=-7, color="#6b7280", fontSize=11).encode(
        y="test_accuracy:Q", x=alt.value(0), text="label:N"
    )
    return finish(alt.layer(lines, rule, text), "Test accuracy per epoch")


def _layers(runs: Mapping[str, RunResult], field: str) -> pd.DataFrame:
    parts = []
    for name, r in runs.items():
        f = r.frames["layers"]
        parts.append(pd.DataFrame({"step": f["step"], "layer": f["layer"], field: f[field], "run": name}))
    data = pd.concat(parts, ignore_index=True)
    return data[np.isfinite(data[field].astype(float)) & (data[field] >= 0)]


def _layer_chart(runs: Mapping[str, RunResult], field: str, y_title: str, title: str):
    """Per-layer values on a log axis. Exact zeros (a dead layer's gradient: the key evidence at
    x255) cannot sit on a log axis: they are drawn on a floor a decade below the smallest positive
    value, a dashed line labelled 0 on the axis."""
    data = _layers(runs, field)
    positive = data.loc[data[field] > 0, field]
    floor = float(10.0 ** np.floor(np.log10(positive.min()) - 1)) if len(positive) else 1e-12
    zeros = bool((data[field] == 0).any())
    data = data.assign(**{field: data[field].where(data[field] > 0, floor)})
    axis = log_axis(np.r_[data[field].to_numpy(), floor] if zeros else data[field])
    if zeros:  # the floor's tick reads 0
        axis = alt.Axis(values=sorted({*axis.values, floor}), labelExpr=f"datum.value == {floor!r} ? '0' : {E_LABEL}")
    names = list(runs)
    chart = (
        alt.Chart(data)
        .mark_line(strokeWidth=1.5, clip=True)
        .encode(
            x=alt.X("step:Q", title=f"step · {data_label(next(iter(runs.values())))}"),
            y=alt.Y(f"{field}:Q", title=y_title, scale=alt.Scale(type="log"), axis=axis),
            color=alt.Color("run:N", title=None, scale=colors(names), sort=names),
            strokeDash=alt.StrokeDash(
                "layer:N", title=None, sort=["layer 1", "layer 2"], scale=alt.Scale(range=[[1, 0], [5, 3]])
            ),
            detail="layer:N",
            tooltip=["run:N", "layer:N", "step:Q", alt.Tooltip(f"{field}:Q", format=".3g")],
        )
    )
    if zeros:
        floor_line = alt.Chart(pd.DataFrame({field: [floor], "label": ["0: exact zeros, drawn on this line"]}))
        chart = alt.layer(
            floor_line.mark_rule(color="#6b7280", strokeDash=[2, 3]).encode(y=f"{field}:Q", tooltip=["label:N"]),
            chart,
        )
    return finish(chart, title)


def grad_norm_chart(runs: Mapping[str, RunResult]):
    """Each layer's weight-gradient norm (log axis): solid layer 1, dashed layer 2."""
    return _layer_chart(runs, "grad_norm", "gradient norm (log scale)", "Gradient norm per layer")


def update_ratio_chart(runs: Mapping[str, RunResult]):
    """|weights after - before| / |before| per step and layer (log axis): ~1e-3 is healthy."""
    return _layer_chart(runs, "update_ratio", "|update| / |weights| (log scale)", "Update / weight ratio per layer")


def dead_chart(runs: Mapping[str, RunResult]):
    """Share of hidden units that output 0 for every image of the step's batch."""
    data = long_runs({n: r.frames["dead"] for n, r in runs.items()}, "step", "dead_share")
    names = list(runs)
    chart = (
        alt.Chart(data)
        .mark_line(strokeWidth=2)
        .encode(
            x=alt.X("step:Q", title=f"step · {data_label(next(iter(runs.values())))}"),
            y=alt.Y(
                "dead_share:Q",
                title="dead on the whole batch",
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%"),
            ),
            color=alt.Color("run:N", title=None, scale=colors(names), sort=names),
            tooltip=["run:N", "step:Q", alt.Tooltip("dead_share:Q", format=".1%")],
        )
    )
    return finish(chart, "Dead ReLUs over training")


def images_chart(result: RunResult):
    """The first test images with their true label and the run's prediction (green when right)."""
    data = result.frames["samples"].assign(
        col=lambda f: f["slot"] % GRID_COLUMNS,
        row=lambda f: f["slot"] // GRID_COLUMNS,
        verdict=lambda f: np.where(f["correct"], "right", "wrong"),
    )
    rows = int(data["row"].max()) + 1 if len(data) else 1
    caption = data_label(result)
    base = alt.Chart(data).encode(
        x=alt.X(
            "col:Q",
            title=caption,
            scale=alt.Scale(domain=[-0.5, GRID_COLUMNS - 0.5]),
            axis=alt.Axis(labels=False, ticks=False, domain=False, grid=False, titleFontWeight=400),
        ),
        y=alt.Y("row:Q", axis=None, scale=alt.Scale(domain=[-0.5, rows - 0.5], reverse=True)),
    )
    images = base.mark_image(width=56, height=56, yOffset=-14).encode(url="image:N", tooltip=["true:N", "predicted:N"])
    truth = base.mark_text(yOffset=24, fontSize=11, color="#374151").encode(text="true:N")
    guess = base.mark_text(yOffset=37, fontSize=11, fontWeight=600).encode(
        text="predicted:N",
        color=alt.Color(
            "verdict:N", legend=None, scale=alt.Scale(domain=["right", "wrong"], range=["#16a34a", "#dc2626"])
        ),
    )
    chart = alt.layer(images, truth, guess)
    title = "Test images: label, prediction"  # the prediction green if right
    return finish(chart, title, height=rows * 100 + 60)  # + 60: the title and axis title, inside the height


def rule_chart(sweep: pd.DataFrame):
    """How far the first SGD step moves layer 1's pre-activations at input scale s, compared
    with s = 1, for three recipes (log-log); dashed: s² and s, the simple prediction."""
    names = list(dict.fromkeys(sweep["recipe"]))
    measured = (
        alt.Chart(sweep)
        .mark_line(strokeWidth=2.5, point=alt.OverlayMarkDef(size=40))
        .encode(
            x=alt.X(
                "scale:Q",
                title="input scale s (log scale) · dashed: s² and s, what the algebra alone predicts",
                scale=alt.Scale(type="log", base=2),
            ),
            y=alt.Y("move_ratio:Q", title="step's move / move at s = 1 (log scale)", scale=alt.Scale(type="log")),
            color=alt.Color("recipe:N", title=None, scale=colors(names), sort=names),
            tooltip=[
                "recipe:N",
                "scale:Q",
                alt.Tooltip("move_ratio:Q", format=",.3g", title="measured"),
                alt.Tooltip("predicted:Q", format=",.3g", title="s², s or 1"),
            ],
        )
    )
    guide = (
        alt.Chart(sweep[sweep["recipe"] != names[-1]])
        .mark_line(strokeDash=[4, 4], strokeWidth=1.2, opacity=0.7)
        .encode(x="scale:Q", y="predicted:Q", color=alt.Color("recipe:N", title=None, scale=colors(names), sort=names))
    )
    title = "Layer 1's first-step move: ~s²"
    return finish(alt.layer(guide, measured), title)


def table_chart(table: pd.DataFrame, data: str = ""):
    """The post's table as bars: test accuracy per preset, chance dashed."""
    names = list(table["preset"])
    bars = (
        alt.Chart(table)
        .mark_bar()
        .encode(
            y=alt.Y("preset:N", sort=names, title=None),
            x=alt.X(
                "test_accuracy:Q",
                title=f"test accuracy · {data}",
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%"),
            ),
            color=alt.Color("preset:N", scale=colors(names), sort=names, legend=None),
            tooltip=["preset:N", "changes:N", alt.Tooltip("test_accuracy:Q", format=".1%"), "post says:N"],
        )
    )
    labels = bars.mark_text(align="left", dx=4, fontSize=12).encode(
        text=alt.Text("test_accuracy:Q", format=".1%"), color=alt.value("#111827")
    )
    classes = int(table["classes"].iloc[0]) if len(table) else 10
    rule = alt.Chart(pd.DataFrame({"x": [1 / classes]})).mark_rule(color="#6b7280", strokeDash=[5, 4]).encode(x="x:Q")
    return finish(alt.layer(bars, labels, rule), "The post's table, re-run", height=36 * max(1, len(table)))
