"""Charts for case 3: the fit, the loss against the least-squares optimum, the Hessian's
eigenvalues, the learning-rate scan, and the coefficients."""

from __future__ import annotations

import math
from collections.abc import Mapping

import altair as alt
import numpy as np
import pandas as pd

from core.cases.poly.config import PolyConfig
from core.cases.poly.diagnose import limit_label, stability_limit
from core.charts import HEIGHT, PALETTE, colors, finish, log_axis, long_runs, loss_layers, thin
from core.charts import sharpness as sharpness_
from core.train import RunResult

OPTIMUM = "least squares"  # the closed-form fit's series name
DIVERGED = "#dc2626"  # red: a run whose loss overflowed


def run_colors(names: list[str]) -> alt.Scale:
    """The shared palette for the runs, and green for the least-squares fit (as on the scan), so a
    pinned run has the same colour on every chart whether or not the optimum is a series there."""
    runs = [n for n in names if n != OPTIMUM]
    by_name = dict(zip(runs, colors(runs).range, strict=True)) | {OPTIMUM: PALETTE["fixed"]}
    return alt.Scale(domain=list(names), range=[by_name[n] for n in names])


def _finite(df: pd.DataFrame, column: str, positive: bool = False) -> pd.DataFrame:
    keep = np.isfinite(df[column].to_numpy(dtype=float))
    if positive:
        keep &= df[column].to_numpy(dtype=float) > 0
    return df[keep]


MAX_ROWS = 4500  # per chart: Altair refuses more than 5000 rows in one data set (and the export with it)
MAX_POINTS = 2000  # the data points drawn (every k-th of a large upload)


def own_data(result: RunResult) -> bool:
    """True when the run fitted the user's points (which have no known true function)."""
    return bool(result.frames["curves"]["truth"].isna().all())


def same_target(a: RunResult, b: RunResult) -> bool:
    """Two runs fitted the same thing: both sin(x), or both the very same points."""
    if own_data(a) or own_data(b):
        return own_data(a) and own_data(b) and a.frames["points"].equals(b.frames["points"])
    return True


def fit_chart(runs: Mapping[str, RunResult]):
    """The points, sin(x) (not for your own points), the closed-form least-squares polynomial and
    each run's polynomial that fitted the same target, on a grid a little wider than the data. The
    y axis follows the data, not a wild fit."""
    first = next(iter(runs.values()))
    curves = first.frames["curves"]
    mine = own_data(first)
    series = {} if mine else {"truth": curves.rename(columns={"truth": "y"})}
    series[OPTIMUM] = curves.rename(columns={"closed_form": "y"})
    series |= {
        name: r.frames["curves"].rename(columns={"fitted": "y"}) for name, r in runs.items() if same_target(first, r)
    }
    per_series = max(50, MAX_ROWS // len(series))
    data = _finite(long_runs({n: thin(df, per_series) for n, df in series.items()}, "x", "y"), "y")
    points = thin(first.frames["points"], MAX_POINTS)
    y_all = np.r_[first.frames["points"]["y"].to_numpy(), curves["truth"].to_numpy()]
    lo, hi = float(np.nanmin(y_all)), float(np.nanmax(y_all))
    pad = 0.3 * (hi - lo) + 1e-9
    y_scale = alt.Scale(domain=[lo - pad, hi + pad])
    x_scale = alt.Scale(domain=[float(curves["x"].min()), float(curves["x"].max())], nice=False)
    names = list(series)
    dashes = {"truth": [5, 4], OPTIMUM: [2, 2]}
    lines = (
        alt.Chart(data)
        .mark_line(strokeWidth=2.5, clip=True)
        .encode(
            x=alt.X("x:Q", title="x", scale=x_scale),
            y=alt.Y("y:Q", title="y", scale=y_scale),
            color=alt.Color("run:N", title=None, scale=run_colors(names), sort=names),
            strokeDash=alt.StrokeDash(
                "run:N",
                title=None,
                sort=names,
                scale=alt.Scale(domain=names, range=[dashes.get(n, [1, 0]) for n in names]),
            ),
        )
    )
    dots = (
        alt.Chart(points)
        .mark_circle(size=80 if len(points) <= 100 else 20, color="#111827", opacity=0.9 if len(points) <= 100 else 0.5)
        .encode(x="x:Q", y="y:Q", tooltip=[alt.Tooltip("x:Q", format=".3g"), alt.Tooltip("y:Q", format=".4g")])
    )
    title = "Your points, fitted polynomial" if mine else "The polynomial fit to sin(x)"
    return finish(alt.layer(lines, dots), title)


def loss_chart(runs: Mapping[str, RunResult], smoothing: float = 0.0, log_scale: bool = True):
    """Loss per epoch on a log axis (or linear), one line per run (smoothed: `loss_layers`), and each
    run's least-squares optimum as a dashed rule in its colour (runs with different reductions or data
    have different optima). A run that diverged ends at its last finite loss."""
    names = list(runs)
    optima = pd.DataFrame(
        [
            {"run": n, "optimum": r.metrics["closed_form_loss"]}
            for n, r in runs.items()
            if not np.isnan(r.metrics["loss_ratio"])  # NaN: the optimum is 0 to rounding (interpolation)
        ],
        columns=["run", "optimum"],
    )
    scale = run_colors(names)
    lines = loss_layers(
        {n: r.history for n, r in runs.items()},
        x=alt.X("step:Q", title="epoch"),
        y="loss",
        y_title="loss",
        color=alt.Color("run:N", title=None, scale=scale, sort=names),
        per_run=max(100, MAX_ROWS // len(runs)),
        smoothing=smoothing,
        log_scale=log_scale,
        also=optima["optimum"].to_numpy(dtype=float),
        tooltip_x=alt.Tooltip("step:Q", title="epoch"),
    )
    rules = (
        alt.Chart(optima)
        .mark_rule(strokeDash=[6, 4], strokeWidth=1.5)
        .encode(
            y="optimum:Q",
            color=alt.Color("run:N", title=None, scale=scale, sort=names),
            tooltip=["run:N", alt.Tooltip("optimum:Q", title="least-squares loss", format=".4g")],
        )
    )
    return finish(alt.layer(*lines, rules), "Loss; dashed: the optimum")


def eigen_chart(runs: Mapping[str, RunResult]):
    """The Hessian's eigenvalues of each run on one log axis: the spread is the condition number."""
    names = list(runs)
    rows = []
    for name, r in runs.items():
        lam = r.frames["eigenvalues"]["eigenvalue"].to_numpy()
        kappa = r.metrics["condition_number"]
        label = f"{name}: κ = {kappa:.2g}"
        rows += [{"run": name, "row": label, "eigenvalue": v} for v in lam]
    data = _finite(pd.DataFrame(rows, columns=["run", "row", "eigenvalue"]), "eigenvalue", positive=True)
    order = list(dict.fromkeys(data["row"]))
    chart = (
        alt.Chart(data)
        .mark_point(size=140, filled=True, opacity=0.9, shape="diamond")
        .encode(
            x=alt.X(
                "eigenvalue:Q",
                title="eigenvalue of the Hessian (log scale)",
                scale=alt.Scale(type="log"),
                axis=log_axis(data["eigenvalue"]),
            ),
            y=alt.Y("row:N", title=None, sort=order, axis=alt.Axis(labelLimit=260)),
            color=alt.Color("run:N", title=None, scale=run_colors(names), sort=names, legend=None),
            tooltip=["run:N", alt.Tooltip("eigenvalue:Q", format=".3g")],
        )
    )
    return finish(chart, "Hessian eigenvalues", height=60 + 45 * len(order))


def cards(config: PolyConfig, result: RunResult) -> list[dict]:
    """The page's five metric cards (st.metric's arguments), from the run's metrics."""
    m = result.metrics
    limit, limit_name = stability_limit(config, m)
    ratio = f"{m['loss_ratio']:.3g}× the optimum" if math.isfinite(m["loss_ratio"]) else None
    off = {"delta_color": "off", "delta_arrow": "off"}
    return [
        dict(
            label="Final loss",
            value=f"{m['final_loss']:.4g}" if not m["diverged"] else "diverged",
            delta=ratio,
            help=f"{config.reduction} of squared errors at the last epoch",
            **off,
        ),
        dict(
            label="Least-squares loss",
            value=f"{m['closed_form_loss']:.4g}",
            help="The closed-form fit (torch.linalg.lstsq in float64) with the same reduction: the best any run "
            "can do.",
        ),
        dict(
            label="Condition number κ",
            value=f"{m['condition_number']:.3g}",
            help="λmax / λmin of the loss's Hessian. Plain gradient descent needs on the order of κ epochs.",
        ),
        dict(
            label="Largest stable lr",
            value=f"{limit:.3g}",
            delta=limit_name,
            help="Plain gradient descent diverges along the steepest direction above 2/λmax; heavy-ball momentum "
            "β moves the limit to 2(1+β)/λmax. Adam and L-BFGS have no such simple limit.",
            **off,
        ),
        dict(label="Epochs run", value=f"{m['epochs_run']:,}", help=f"{result.seconds:.2f} s on {result.device}"),
    ]


def scan_chart(result: RunResult):
    """Loss after the epoch budget against the learning rate, log-log. Runs whose loss overflowed
    are drawn as red crosses along the top; the analytic stability limit is the vertical rule,
    the least-squares optimum the horizontal one, and the current lr a ring."""
    scan = result.frames["scan"].copy()
    m = result.metrics
    # The ceiling: 1000× the starting loss. Runs that overflowed or grew past it sit on it, so the
    # axis keeps the decades where the stable runs differ.
    ceiling = float(np.nanmax(scan["initial_loss"])) * 1e3 if len(scan) else 1.0
    finite = scan[~scan["diverged"] & (scan["final_loss"] > 0) & (scan["final_loss"] < ceiling)]
    scan["shown_loss"] = np.where(scan["diverged"], ceiling, np.minimum(scan["final_loss"], ceiling))
    scan["status"] = np.select(
        [scan["diverged"], scan["grew"]], ["loss overflowed", "loss grew"], default="loss went down"
    )
    scan["overflow_epoch"] = np.where(scan["diverged"], scan["diverged_at"], np.nan)
    statuses = ["loss went down", "loss grew", "loss overflowed"]
    status_colors = alt.Scale(domain=statuses, range=[PALETTE["current"], PALETTE["as-posted"], DIVERGED])
    x = alt.X("lr:Q", title="learning rate (log scale)", scale=alt.Scale(type="log"), axis=log_axis(scan["lr"]))
    y = alt.Y(
        "shown_loss:Q",
        title="loss after the budget (log scale)",
        scale=alt.Scale(type="log"),
        axis=log_axis(np.r_[scan["shown_loss"].to_numpy(dtype=float), m["closed_form_loss"]]),
    )
    tooltip = [
        alt.Tooltip("lr:Q", format=".3g"),
        alt.Tooltip("relative_lr:Q", title="lr / limit", format=".3g"),
        alt.Tooltip("final_loss:Q", title="loss", format=".4g"),
        "status:N",
        alt.Tooltip("overflow_epoch:Q", title="overflow at epoch"),
    ]
    line = alt.Chart(finite).mark_line(color="#9ca3af", strokeWidth=1.5).encode(x=x, y=alt.Y("final_loss:Q"))
    marks = (
        alt.Chart(scan)
        .mark_point(size=90, filled=True, strokeWidth=2.5)
        .encode(
            x=x,
            y=y,
            color=alt.Color("status:N", title=None, scale=status_colors, sort=statuses),
            shape=alt.Shape(
                "status:N", title=None, scale=alt.Scale(domain=statuses, range=["circle", "triangle-up", "cross"])
            ),
            tooltip=tooltip,
        )
    )
    layers = [line, marks]
    current = scan[scan["current"]]
    if len(current):
        layers.append(
            alt.Chart(current)
            .mark_point(size=420, filled=False, strokeWidth=2, color="#111827")
            .encode(x=x, y=y, tooltip=tooltip)
        )
    limit = m.get("scan_limit", np.nan)
    if np.isfinite(limit):
        rule = pd.DataFrame({"lr": [limit], "label": [f"{limit_label(m['scan_optimizer'])} = {limit:.3g}"]})
        layers.append(alt.Chart(rule).mark_rule(strokeDash=[6, 4], strokeWidth=2, color="#111827").encode(x="lr:Q"))
        layers.append(
            alt.Chart(rule)
            .mark_text(align="right", dx=-6, dy=4, baseline="top", fontSize=12, color="#111827")
            .encode(x="lr:Q", y=alt.value(0), text="label:N")
        )
    if not np.isnan(m["loss_ratio"]):  # NaN: an interpolation, whose optimum is 0
        optimum = pd.DataFrame({"y": [m["closed_form_loss"]]})
        layers.append(alt.Chart(optimum).mark_rule(strokeDash=[2, 2], color=PALETTE["fixed"]).encode(y="y:Q"))
    return finish(alt.layer(*layers), "Learning-rate scan")


def coefficient_chart(runs: Mapping[str, RunResult]):
    """Each run's coefficients in the raw power basis (constant term last) against the closed form."""
    first = next(iter(runs.values()))
    frame = first.frames["coefficients"]
    series = {OPTIMUM: frame.rename(columns={"closed_form": "value"})}
    series |= {name: r.frames["coefficients"].rename(columns={"fitted": "value"}) for name, r in runs.items()}
    data = long_runs(series, "term", "value")
    data = data[np.isfinite(data["value"].to_numpy(dtype=float))]
    names = list(series)
    terms = list(frame["term"])
    chart = (
        alt.Chart(data)
        .mark_point(size=110, filled=True, opacity=0.85)
        .encode(
            x=alt.X("term:N", title="term", sort=terms, axis=alt.Axis(labelAngle=0)),
            xOffset=alt.XOffset("run:N", sort=names),
            y=alt.Y("value:Q", title="coefficient"),
            color=alt.Color("run:N", title=None, scale=run_colors(names), sort=names),
            shape=alt.Shape("run:N", title=None, sort=names),
            tooltip=["run:N", "term:N", alt.Tooltip("value:Q", format=".6g")],
        )
    )
    zero = alt.Chart(pd.DataFrame({"y": [0.0]})).mark_rule(color="#9ca3af").encode(y="y:Q")
    return finish(alt.layer(zero, chart), "Coefficients, raw power basis", height=HEIGHT - 20)


def coefficient_text(runs: Mapping[str, RunResult]) -> pd.DataFrame:
    """The table as text for the page: 6 significant digits, "diverged" for a run without a fitted
    polynomial, blank for a term that a run of another degree does not have."""
    table = coefficient_table(runs)
    text = table.map(lambda v: "" if np.isnan(v) else f"{v:.6g}")
    for name, r in runs.items():
        if r.metrics["diverged"]:
            text[name] = "diverged"
    return text


def coefficient_table(runs: Mapping[str, RunResult]) -> pd.DataFrame:
    """The same numbers as a table: one row per term of the first run (runs of another degree
    show a blank where they have no such term)."""
    first = next(iter(runs.values()))
    terms = first.frames["coefficients"]["term"]
    table = pd.DataFrame(index=pd.Index(terms, name="term"))
    for name, r in runs.items():
        table[name] = r.frames["coefficients"].set_index("term")["fitted"].reindex(terms).to_numpy()
    table[OPTIMUM] = first.frames["coefficients"]["closed_form"].to_numpy()
    return table


def figures(runs: Mapping[str, RunResult], smoothing: float = 0.0, log_scale: bool = True) -> dict:
    """The page's charts by name (the page lays them out; `python -m core figures` writes them).
    The first run is the current one; the scan is its own. smoothing, log_scale: the loss chart's."""
    current = next(iter(runs.values()))
    return {
        "fit": fit_chart(runs),
        "loss": loss_chart(runs, smoothing, log_scale),
        "sharpness": sharpness_.chart(runs, x_title="epoch"),
        "scan": scan_chart(current),
        "eigenvalues": eigen_chart(runs),
        "coefficients": coefficient_chart(runs),
    }
