"""Charts for case 4: the post's three panels against batch size, the steps each batch size
takes, and one run in detail (the fit, and the differences the broadcast loss averages)."""

from __future__ import annotations

from collections.abc import Mapping

import altair as alt
import numpy as np
import pandas as pd

from core.charts import HEIGHT, PALETTE, colors, finish, log_axis, log_y, loss_chart, thin
from core.charts import sharpness as sharpness_
from core.train import RunResult

SHUFFLE = ("shuffled", "not shuffled")  # told apart by line style; runs by colour
DASHES = alt.Scale(domain=list(SHUFFLE), range=[[1, 0], [6, 3]])
DIVERGED = 1000  # a final slope or intercept this many times the true one's scale is a diverged run
MAX_ROWS = 4000  # rows of one chart, all runs together: under Altair's 5000, which an exported figure must respect


def figures(
    runs: Mapping[str, RunResult],
    details: Mapping[str, RunResult] | None = None,
    smoothing: float = 0.0,
    log_scale: bool = True,
    sweep_charts: bool = True,
) -> dict:
    """The page's charts by name (the page lays them out; `python -m core figures` writes them).

    runs: sweeps by name, the current one first (compared and pinned sweeps after it): the post's three
    panels and the steps chart. details: single runs by name, the current one first: its fit and loss
    with the others' overlaid, and the differences its loss averages. Without `details`, the single runs
    among `runs` are the details, and the sweep charts are drawn only when the first run is a sweep (so
    the CLI's figures of a single run are that run's charts). A run has one colour in every chart.
    smoothing, log_scale: the loss chart's (see `core.charts.loss_layers`). sweep_charts=False: only the
    details' charts, for a page that has drawn the sweeps' already (building them costs ~0.3 s).
    """
    sweeps = {name: r for name, r in runs.items() if "sweep" in r.frames}
    if details is None:
        details = {name: r for name, r in runs.items() if "sweep" not in r.frames}
        if sweeps and next(iter(runs)) not in sweeps:
            sweeps = {}
    order = list(dict.fromkeys([*sweeps, *details]))  # every run: a pin without a detail shifts no colours
    out = {}
    if sweeps and sweep_charts:
        ref = next(iter(sweeps.values())).frames["reference"].iloc[0]
        floor, needed = ref["loss_floor"], ref["steps_needed"]
        out |= {
            "slope": sweep_chart(sweeps, "slope", "Final slope", truth=float(ref["slope"]), order=order),
            "intercept": sweep_chart(
                sweeps, "intercept", "Final intercept", truth=float(ref["intercept"]), order=order
            ),
            "final_loss": sweep_chart(
                sweeps,
                "final_loss",
                "Final loss (the last batch)",
                truth=float(floor) if np.isfinite(floor) else None,
                log=True,
                order=order,
            ),
            "steps": steps_chart(sweeps, int(needed) if np.isfinite(needed) else None, order=order),
        }
    if details:
        current = next(iter(details.values()))
        out |= {
            "fit": fit_chart(details, "Data, last batch, fitted line", order=order),
            "loss": loss(details, order=order, smoothing=smoothing, log_scale=log_scale),
            "sharpness": sharpness_.chart(details, order=order),
            "pairs": pairs_chart(current),
            "meant": meant_chart(current),
        }
    return out


def sweep_frame(runs: Mapping[str, RunResult]) -> pd.DataFrame:
    """Every run's sweep rows in one long table, with `run` and a `shuffled` label. When the runs
    together hold more than MAX_ROWS rows, each keeps an evenly spread part of its batch sizes."""
    per_run = MAX_ROWS // max(len(runs), 1)
    parts = []
    for name, r in runs.items():
        rows = r.frames["sweep"]
        if len(rows) > per_run:
            sizes = pd.DataFrame({"batch_size": rows["batch_size"].unique()})
            shuffles = len(rows) // len(sizes)  # 1 or 2 rows per batch size
            rows = rows[rows["batch_size"].isin(thin(sizes, max(2, per_run // shuffles - 1))["batch_size"])]
        parts.append(rows.assign(run=name))
    data = pd.concat(parts, ignore_index=True)
    return data.assign(shuffled=np.where(data["shuffle"], SHUFFLE[0], SHUFFLE[1]))


def sweep_chart(
    runs: Mapping[str, RunResult],
    field: str,
    title: str,
    *,
    truth: float | None = None,
    log: bool = False,
    order: list[str] | None = None,
):
    """One of the post's panels: the final `field` against batch size, one line per run and
    shuffle setting. A dotted rule marks the true value. Values of runs that diverged (NaN, inf, or on a
    linear axis beyond DIVERGED times the true value's scale) are left out, so the others stay readable."""
    data = sweep_frame(runs)[["batch_size", field, "run", "shuffled", "steps"]]
    if log:
        keep = np.isfinite(data[field]) & (data[field] > 0)
    else:
        keep = data[field].abs() <= DIVERGED * (1 + abs(truth or 0))  # False for NaN and inf too
    data = data[keep]
    names = list(runs)
    legend = alt.Legend(columns=2) if len(names) > 3 else alt.Undefined  # the page shows two panels side by side
    lines = (
        alt.Chart(data)
        .mark_line(strokeWidth=2, clip=True)
        .encode(
            x=alt.X("batch_size:Q", title="batch size"),
            y=alt.Y(f"{field}:Q", title=field.replace("_", " ") + (" (log scale)" if log else ""),
                    scale=alt.Scale(type="log") if log else alt.Scale(zero=False),
                    axis=log_axis(data[field]) if log else alt.Axis()),
            color=alt.Color("run:N", title=None, scale=colors(names, order), sort=names, legend=legend),
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


def steps_chart(runs: Mapping[str, RunResult], needed: int | None = None, order: list[str] | None = None):
    """Optimizer steps each batch size takes (the same with and without shuffling), log scale. The
    dotted rule: the fewest steps that can carry the slope from its start to the truth at about lr per step."""
    data = sweep_frame(runs).drop_duplicates(["run", "batch_size"])[["batch_size", "steps", "run"]]
    names = list(runs)
    lines = (
        alt.Chart(data)
        .mark_line(strokeWidth=2, point=alt.OverlayMarkDef(size=12))
        .encode(
            x=alt.X("batch_size:Q", title="batch size"),
            y=log_y("steps:Q", "optimizer steps (log scale)", data["steps"]),
            color=alt.Color("run:N", title=None, scale=colors(names, order), sort=names),
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
    return finish(alt.layer(*layers), "Optimizer steps per batch size")


def fit_chart(runs: Mapping[str, RunResult], title: str, order: list[str] | None = None):
    """The data (grey), the first run's last full batch (dots), the true line (dashed), the
    starting line (grey) and every run's fitted line in its colour. Lines that leave the data's
    range (a diverged run) are clipped."""
    first = next(iter(runs.values()))
    f = first.frames
    points = (
        alt.Chart(f["data"])
        .mark_circle(size=10, opacity=0.35, color=PALETTE["data"])
        .encode(x=alt.X("x:Q", title="x"), y=alt.Y("y:Q", title="y"))
    )
    fitted = {name: "fitted" if len(runs) == 1 else f"fitted: {name}" for name in runs}
    run_colors = colors(list(runs), order).range
    batch = (
        alt.Chart(thin(f["batch"], 1000))
        .mark_circle(size=55, opacity=0.9, color=run_colors[0], stroke="white", strokeWidth=1)
        .encode(x="x:Q", y="y:Q", tooltip=[alt.Tooltip("x:Q", format=".3f"), alt.Tooltip("y:Q", format=".3f")])
    )
    ends = f["line"]  # x = 0 and 1: the data's line, the start, the fit
    line = pd.concat(
        [pd.DataFrame({"x": ends["x"], "y": ends["truth"], "line": "the data's line"}),
         pd.DataFrame({"x": ends["x"], "y": ends["start"], "line": "start"})]
        + [pd.DataFrame({"x": r.frames["line"]["x"], "y": r.frames["line"]["fit"], "line": fitted[name]})
           for name, r in runs.items()],
        ignore_index=True,
    )  # fmt: skip
    line = line[np.isfinite(line["y"])]
    order = ["the data's line", "start", *fitted.values()]
    shown = np.r_[f["data"]["y"], ends["truth"], ends["start"]]
    shown = shown[np.isfinite(shown)]
    pad = 0.05 * (shown.max() - shown.min() + 1e-9)
    lines = (
        alt.Chart(line)
        .mark_line(strokeWidth=2.5, clip=True)
        .encode(
            x="x:Q",
            y=alt.Y("y:Q", scale=alt.Scale(domain=[float(shown.min() - pad), float(shown.max() + pad)])),
            color=alt.Color(
                "line:N",
                title=None,
                sort=order,
                scale=alt.Scale(domain=order, range=[PALETTE["truth"], "#9ca3af", *run_colors]),
            ),
            strokeDash=alt.StrokeDash(  # the same field as the colour: one legend with both
                "line:N",
                title=None,
                sort=order,
                scale=alt.Scale(domain=order, range=[[5, 4], [2, 2]] + [[1, 0]] * len(runs)),
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
        title = f"The loss averages all {batch} × {batch}"
    else:
        title = "The loss averages the diagonal"
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


def loss(runs: Mapping[str, RunResult], order: list[str] | None = None, smoothing: float = 0.0, log_scale: bool = True):
    """Each single run's loss per step (log scale unless log_scale is False, smoothed when smoothing > 0),
    thinned so that all of them stay a light chart."""
    histories = {name: r.history for name, r in runs.items()}
    return loss_chart(
        histories, title="One run: loss per step", order=order, max_rows=MAX_ROWS, smoothing=smoothing,
        log_scale=log_scale,
    )  # fmt: skip
