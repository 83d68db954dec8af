"""Charts for case 1: the fit, the loss, where the units switch, and saturation."""

from __future__ import annotations

from collections.abc import Mapping

import altair as alt
import numpy as np
import pandas as pd

from core.charts import HEIGHT, PALETTE, colors, finish, log_y, long_runs, loss_chart, thin
from core.charts import sharpness as sharpness_
from core.train import RunResult


def data_range(result: RunResult) -> tuple[float, float]:
    x = result.frames["fit"]["x"]
    return float(x.min()), float(x.max())


def fit_chart(runs: Mapping[str, RunResult]):
    """The data (downsampled), the noiseless target sin(x)/2.5, and each run's prediction."""
    first = next(iter(runs.values()))
    points = (
        alt.Chart(first.frames["data"])
        .mark_circle(size=10, opacity=0.35, color=PALETTE["data"])
        .encode(x=alt.X("x:Q", title="x", scale=alt.Scale(domain=list(data_range(first)))), y=alt.Y("y:Q", title="y"))
    )
    own = bool(first.frames["fit"]["truth"].isna().all())  # your own points: no known true function
    curves = {} if own else {"truth": thin(first.frames["fit"], 500).rename(columns={"truth": "value"})}
    curves |= {name: thin(r.frames["fit"], 500).rename(columns={"prediction": "value"}) for name, r in runs.items()}
    data = long_runs(curves, "x", "value")
    data = data[np.isfinite(data["value"])]
    names = list(curves)
    lines = (
        alt.Chart(data)
        .mark_line(strokeWidth=2.5, clip=True)
        .encode(
            x="x:Q",
            y=alt.Y("value:Q", title="y"),
            color=alt.Color("run:N", title=None, scale=colors(names), sort=names),
            strokeDash=alt.condition(alt.datum.run == "truth", alt.value([5, 4]), alt.value([1, 0])),
        )
    )
    title = "Your points and the prediction" if own else "The fit to sin(x)/2.5"
    return finish(alt.layer(points, lines), title)


def loss(runs: Mapping[str, RunResult], smoothing: float = 0.0, log_scale: bool = True):
    """Training MSE per step: every run in the same unit, whatever loss it minimised."""
    return loss_chart(
        {name: r.history for name, r in runs.items()},
        title="Training MSE per step",
        y="mse",
        y_title="MSE",
        smoothing=smoothing,
        log_scale=log_scale,
    )


def units_chart(runs: Mapping[str, RunResult]):
    """Each first-layer unit: where its pre-activation crosses zero (x = -b/w) against its
    steepness |w|. The shaded band is where the data lies."""
    frames = {name: r.frames["units"] for name, r in runs.items()}
    data = pd.concat([f.assign(run=name) for name, f in frames.items()], ignore_index=True)
    data = data[np.isfinite(data["switch_x"]) & (data["steepness"] > 0)]
    x_min, x_max = data_range(next(iter(runs.values())))
    lo, hi = x_min - 0.6 * (x_max - x_min), x_max + 0.6 * (x_max - x_min)
    data = data.assign(shown_x=data["switch_x"].clip(lo, hi))  # far-away units drawn at the edges
    names = list(frames)
    band = alt.Chart(pd.DataFrame({"a": [x_min], "b": [x_max]})).mark_rect(color="#f3f4f6").encode(x="a:Q", x2="b:Q")
    dots = (
        alt.Chart(data)
        .mark_circle(size=45, opacity=0.75)
        .encode(
            x=alt.X("shown_x:Q", title="x where the unit switches (-b/w)", scale=alt.Scale(domain=[lo, hi])),
            y=log_y("steepness:Q", "steepness |w| (log scale)", data["steepness"]),
            color=alt.Color("run:N", title=None, scale=colors(names), sort=names),
            tooltip=[
                "run:N",
                "unit:Q",
                alt.Tooltip("switch_x:Q", format=".3g"),
                alt.Tooltip("steepness:Q", format=".3g"),
            ],
        )
    )
    return finish(alt.layer(band, dots), "Where first-layer units switch")


def _over_training(runs: Mapping[str, RunResult], column: str, title: str, y: alt.Y):
    data = long_runs({n: r.frames["saturation"] for n, r in runs.items()}, "step", column)
    names = list(runs)
    chart = (
        alt.Chart(data)
        .mark_line(strokeWidth=2)
        .encode(x=alt.X("step:Q"), y=y, color=alt.Color("run:N", title=None, scale=colors(names), sort=names))
    )
    return finish(chart, title, height=HEIGHT - 60)


def saturation_chart(runs: Mapping[str, RunResult]):
    """Share of hidden activations in the flat part of the activation, over training."""
    y = alt.Y(
        "saturated_fraction:Q", title="saturated share", scale=alt.Scale(domain=[0, 1]), axis=alt.Axis(format="%")
    )
    return _over_training(runs, "saturated_fraction", "Saturated hidden activations", y)


def preact_chart(runs: Mapping[str, RunResult]):
    """RMS of the output pre-activation over training: above ~4, the output tanh is flat."""
    y = alt.Y("output_preact_rms:Q", title="RMS of z over the data")
    return _over_training(runs, "output_preact_rms", "Output pre-activation z", y)


def figures(runs: Mapping[str, RunResult], smoothing: float = 0.0, log_scale: bool = True) -> dict:
    """The page's charts by name (the page lays them out; `python -m core figures` writes them).
    smoothing, log_scale: the loss chart's (see `core.charts.loss_layers`)."""
    return {
        "fit": fit_chart(runs),
        "loss": loss(runs, smoothing, log_scale),
        "sharpness": sharpness_.chart(runs),
        "units": units_chart(runs),
        "saturation": saturation_chart(runs),
        "preact": preact_chart(runs),
    }
