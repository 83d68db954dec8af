"""Charts of an examined run (a run record from `python -m core examine --out`): pure
builders, record in, `alt.Chart` out, in the case pages' look (`finish`, one palette)."""

from __future__ import annotations

import altair as alt
import pandas as pd

from core.charts import EXTRA, PALETTE, finish, log_axis, thin

PADDING = {"left": 12, "top": 8, "right": 8, "bottom": 4}  # room for the y title beside wide log labels
MAX_LAYERS = 8  # the layers with the most weights' worth of gradient; the rest would be a tangle


def _frame(record: dict, table: str) -> pd.DataFrame:
    return pd.DataFrame(record.get(table) or {})


def _series(frame: pd.DataFrame, y: str, title: str, y_title: str, log: bool, color: str):
    data = thin(frame.dropna(subset=[y])[["step", y]])
    positive = log and bool((data[y] > 0).all()) and len(data) > 0
    scale = alt.Scale(type="log") if positive else alt.Scale(zero=False)
    if positive and data[y].min() == data[y].max():  # a constant (an lr without a schedule): a decade around it
        scale = alt.Scale(type="log", domain=[float(data[y].min()) / 3, float(data[y].max()) * 3])
    axis = log_axis(data[y]) if positive else alt.Axis(format="~g")  # one label format, gridlines at decades
    chart = (
        alt.Chart(data)
        .mark_line(color=color, strokeWidth=2)
        .encode(x=alt.X("step:Q", title="optimizer step"), y=alt.Y(f"{y}:Q", title=y_title, scale=scale, axis=axis))
    )
    return finish(chart.properties(padding=PADDING), title)


def loss_chart(record: dict):
    """The loss at each step (log scale when it stays positive)."""
    return _series(_frame(record, "series"), "loss", "Loss", "loss (at backward)", True, PALETTE["current"])


def lr_chart(record: dict):
    """The learning rate of the first parameter group at each step."""
    return _series(_frame(record, "series"), "lr", "Learning rate", "lr (param group 0)", True, PALETTE["as-posted"])


def _layers(record: dict) -> pd.DataFrame:
    df = _frame(record, "layers")
    if df.empty:
        return df
    top = df.groupby("layer")["grad_norm"].median().sort_values(ascending=False).index[:MAX_LAYERS]
    return df[df["layer"].isin(top)]


SERIES = (PALETTE["current"], PALETTE["as-posted"], PALETTE["fixed"], *EXTRA)  # one colour per layer


def _per_layer(data: pd.DataFrame, y: str, title: str, y_title: str, color: str, scale: alt.Scale | None = None):
    data = data.dropna(subset=[y]) if not data.empty else pd.DataFrame({"step": [], y: [], color: []})
    if scale is None:
        positive = len(data) > 0 and bool((data[y] > 0).all())
        scale = alt.Scale(type="log") if positive else alt.Scale(zero=False)
    log = scale.to_dict().get("type") == "log"
    axis = log_axis(data[y]) if log else alt.Axis(format="~g")
    names = list(dict.fromkeys(data[color])) if len(data) else []
    chart = (
        alt.Chart(data)
        .mark_line(point=alt.OverlayMarkDef(size=18), strokeWidth=1.8)
        .encode(
            x=alt.X("step:Q", title="optimizer step (sampled)"),
            y=alt.Y(f"{y}:Q", title=y_title, scale=scale, axis=axis),
            color=alt.Color(
                f"{color}:N",
                title=None,
                scale=alt.Scale(domain=names, range=list(SERIES[: len(names)])),
                legend=alt.Legend(columns=2, labelLimit=220),  # two a row: a half-width chart at 1024 px holds them
            ),
            tooltip=[f"{color}:N", "step:Q", alt.Tooltip(f"{y}:Q", format=".3g")],
        )
    )
    return finish(chart.properties(padding=PADDING), title)


def grad_norm_chart(record: dict):
    """Each layer's gradient norm on the sampled steps."""
    return _per_layer(_layers(record), "grad_norm", "Gradient norm per layer", "‖grad‖", "layer")


def update_ratio_chart(record: dict):
    """Each layer's ‖Δw‖ / ‖w‖ per step (1e-3 is the usual healthy size)."""
    return _per_layer(_layers(record), "update_ratio", "Update / weight ratio per layer", "‖Δw‖ / ‖w‖", "layer")


def activation_chart(record: dict):
    """Per activation layer: the share of dead units (ReLU) or saturated outputs (tanh, sigmoid)."""
    df = _frame(record, "activations")
    if df.empty:
        data = pd.DataFrame({"step": [], "share": [], "layer": []})
    else:
        df = df.assign(share=df["dead"].where(df["kind"] == "relu", df["saturated"]))
        df = df.assign(layer=df["site"] + df["kind"].map({"relu": " · dead"}).fillna(" · saturated"))
        data = df.dropna(subset=["share"])[["step", "share", "layer"]]
    title, y_title = "Dead / saturated share per activation layer", "share of the batch's units"
    return _per_layer(data, "share", title, y_title, "layer", alt.Scale(domain=[0, 1]))


def figures(record: dict) -> dict:
    """Every chart of the page, by file name."""
    return {
        "loss": loss_chart(record),
        "lr": lr_chart(record),
        "grad-norm": grad_norm_chart(record),
        "update-ratio": update_ratio_chart(record),
        "activations": activation_chart(record),
    }
