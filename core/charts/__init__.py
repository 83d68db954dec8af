"""Chart builders: pure functions from results (data frames) to finished `alt.Chart`s.

Every chart carries its own look (`finish`), so what the page shows and what a report
export renders are the same picture; the app draws them with Streamlit's theme off.
Series are told apart by colour through one shared palette.
"""

from __future__ import annotations

from collections.abc import Mapping

import altair as alt
import numpy as np
import pandas as pd

# series name -> colour; runs not listed here take the next colour of EXTRA
PALETTE = {
    "current": "#2563eb",  # blue: the run for the settings on screen
    "as-posted": "#ea580c",  # orange: the posted settings, for comparison
    "fixed": "#16a34a",  # green
    "truth": "#111827",  # near-black, dashed
    "data": "#9ca3af",  # grey points
}
EXTRA = ("#9333ea", "#0891b2", "#ca8a04", "#db2777", "#4b5563", "#65a30d")
FONT = "Arial, Liberation Sans, Helvetica, sans-serif"  # present in browsers and for vl-convert alike
HEIGHT = 280
LEGEND_COLUMNS = 3  # a bottom legend wraps into rows of this many, instead of running past a narrow chart


def colors(names: list[str], order: list[str] | None = None) -> alt.Scale:
    """A colour scale that gives the palette's series their colours and others the extras.
    order: every series of the page, when a chart shows only some of them, so each keeps its colour."""
    extra = iter(EXTRA)
    everyone = list(dict.fromkeys([*(order or []), *names]))
    by_name = {n: PALETTE.get(n) or next(extra, "#6b7280") for n in everyone}
    return alt.Scale(domain=list(names), range=[by_name[n] for n in names])


def current_on_top(chart):
    """Reorder each layer's rows so that the runs are drawn last-listed first: the current run (listed
    first) is painted over the runs it is compared with. Vega draws a mark's rows, and a line's
    series, in the order of the data; the legend keeps its own order (`sort`)."""
    for part in [chart, *getattr(chart, "layer", [])]:
        data = getattr(part, "data", None)
        if isinstance(data, pd.DataFrame) and "run" in data.columns and len(data):
            rank = {name: i for i, name in enumerate(dict.fromkeys(data["run"]))}
            order = np.argsort(-data["run"].map(rank).to_numpy(), kind="stable")
            part.data = data.iloc[order].reset_index(drop=True)
    return chart


def finish(chart, title: str | None = None, height: int = HEIGHT):
    """The shared look: one font, light grid, titles left-aligned; the current run drawn on top. Call last."""
    chart = current_on_top(chart)
    if title is not None:
        chart = chart.properties(title=alt.TitleParams(title, anchor="start", fontSize=15, fontWeight=600))
    return (
        chart.properties(height=height)
        .configure(font=FONT, background="white")
        .configure_axis(
            labelFontSize=12, titleFontSize=12, titleFontWeight=500, gridColor="#e5e7eb", domainColor="#9ca3af"
        )
        .configure_legend(
            labelFontSize=12, titleFontSize=12, orient="bottom", symbolStrokeWidth=3, columns=LEGEND_COLUMNS
        )
        .configure_view(stroke=None)
    )


E_LABEL = "replace(format(datum.value, '~e'), 'e+', 'e')"  # 1e-8, 2e-7, 1e0, 5e3: one style for an axis


def log_y(field: str, title: str, values, **axis) -> alt.Y:
    """A y channel on a log scale with the shared log axis (`log_axis` of `values`)."""
    return alt.Y(field, title=title, scale=alt.Scale(type="log"), axis=log_axis(values, **axis))


def log_axis(values, **kwargs) -> alt.Axis:
    """A log axis with one number format and few gridlines: ticks (and gridlines) only at decades,
    with 2× and 5× between them when the data spans under three decades; every label plain
    (0.001 ... 10000) when all ticks allow it, else every label as 1e-8. kwargs: other Axis options."""
    v = np.asarray(values, dtype=float).ravel()
    v = v[np.isfinite(v) & (v > 0)]
    if not len(v):
        return alt.Axis(**kwargs)
    lo, hi = int(np.floor(np.log10(v.min()))), int(np.ceil(np.log10(v.max())))
    hi = max(hi, lo + 1)
    decades = 10.0 ** np.arange(lo, hi + 1)
    step = max(1, int(np.ceil((hi - lo) / 10)))  # at most ~10 labels
    ticks = decades[::step]
    if hi - lo < 3:
        ticks = np.unique(np.r_[decades, 2 * decades[:-1], 5 * decades[:-1]])
        ticks = ticks[(ticks >= v.min() / 2) & (ticks <= v.max() * 2)] if len(ticks) > 3 else ticks
    ticks = [float(f"{t:.12g}") for t in ticks]
    if min(ticks) >= 1e-3 and max(ticks) <= 1e4:
        return alt.Axis(values=ticks, format="~g", **kwargs)
    return alt.Axis(values=ticks, labelExpr=E_LABEL, **kwargs)


def long_runs(runs: Mapping[str, pd.DataFrame], x: str, y: str) -> pd.DataFrame:
    """Several runs' (x, y) columns stacked into one long table with a `run` column."""
    parts = [pd.DataFrame({x: df[x].to_numpy(), y: df[y].to_numpy(), "run": name}) for name, df in runs.items()]
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame({x: [], y: [], "run": []})


def thin(df: pd.DataFrame, max_rows: int = 1500) -> pd.DataFrame:
    """Every k-th row (and the last), so a long history stays a light chart."""
    if len(df) <= max_rows:
        return df
    idx = np.unique(np.r_[np.linspace(0, len(df) - 1, max_rows).astype(int), len(df) - 1])
    return df.iloc[idx]


PIXELS = 400  # a loss line's row budget is about this many x buckets: a half-page chart is ~600 px wide


def envelope(df: pd.DataFrame, column: str, buckets: int = PIXELS) -> pd.DataFrame:
    """At most ~2·`buckets` rows of a long history, drawn as the full one is: the rows are split into
    `buckets` runs of consecutive rows, and each keeps its lowest and its highest `column` value (in
    their order), plus the first and the last row. A spike or a diverging step stays on the chart,
    where `thin` could step over it; non-finite values count as the highest (a NaN row is kept, so a
    line still ends where the run diverged). Fewer rows to send, decode and draw (issue 17)."""
    n = len(df)
    if n <= 2 * buckets + 2:
        return df
    v = df[column].to_numpy(dtype=float)
    finite = np.isfinite(v)
    lo_key = np.where(finite, v, np.inf)
    hi_key = np.where(finite, v, -np.inf)
    hi_key[~finite] = np.inf  # a NaN or inf is the bucket's "highest": kept
    edges = np.linspace(0, n, buckets + 1).astype(int)
    starts = edges[:-1]
    lo = np.minimum.reduceat(lo_key, starts)
    hi = np.maximum.reduceat(hi_key, starts)
    which = np.repeat(np.arange(buckets), np.diff(edges))
    keep = np.zeros(n, dtype=bool)
    # the first row of each bucket that reaches its low and its high
    for target, key in ((lo, lo_key), (hi, hi_key)):
        hit = key == target[which]
        first = np.flatnonzero(hit & ~np.r_[False, hit[:-1] & (which[1:] == which[:-1])])
        keep[first] = True
    keep[[0, n - 1]] = True
    return df.iloc[np.flatnonzero(keep)]


def ema(values, smoothing: float) -> np.ndarray:
    """TensorBoard's smoothing: the debiased exponential moving average
    ema_t = s·ema_(t-1) + (1 - s)·v_t, divided by 1 - s^t, where t counts the finite values so far.
    A non-finite value (a diverged run's NaN or inf) stays as it is and does not enter the average.
    smoothing 0 returns the values unchanged; it must be below 1 (1 would never move)."""
    if not 0 <= smoothing < 1:
        raise ValueError(f"smoothing must be in [0, 1), not {smoothing}")
    v = np.asarray(values, dtype=float)
    if smoothing == 0:
        return v.copy()
    out = np.full_like(v, np.nan)
    last, t = 0.0, 0
    for i, value in enumerate(v):  # a plain loop: ~1e5 steps at most, and NaN skipping keeps it sequential
        if not np.isfinite(value):
            out[i] = value
            continue
        t += 1
        last = smoothing * last + (1 - smoothing) * value
        out[i] = last / (1 - smoothing**t)
    return out


def loss_layers(
    histories: Mapping[str, pd.DataFrame],
    *,
    x: alt.X,
    y: str,
    y_title: str,
    color: alt.Color,
    per_run: int,
    smoothing: float = 0.0,
    log_scale: bool = True,
    also=(),
    tooltip_x: alt.Tooltip | None = None,
    **mark,
) -> list[alt.Chart]:
    """Every case's loss lines, one per run: on a log axis (`log_axis` of the losses and of `also`,
    values that other layers draw; non-positive losses cannot sit on it and are left out) or on a
    linear one. With smoothing > 0 (TensorBoard's EMA, `ema`, taken over the whole history before
    thinning to `per_run` rows) the raw lines stay faint under the smoothed ones, in the same colour.
    smoothing 0: one layer, the raw lines. mark: the line's look (strokeWidth, opacity)."""
    field = x.shorthand.split(":")[0]
    frames = {}
    for name, h in histories.items():
        frame = pd.DataFrame({field: h[field].to_numpy(), y: h[y].to_numpy(dtype=float)})
        if smoothing > 0:
            frame["smoothed"] = ema(frame[y], smoothing)
        # the row budget: per_run, and fewer where the screen cannot show them (`envelope`)
        frames[name] = envelope(frame, y)
        if len(frames[name]) > per_run:
            frames[name] = thin(frames[name], per_run)
    empty = {field: [], y: [], **({"smoothed": []} if smoothing > 0 else {}), "run": []}
    data = pd.concat([f.assign(run=n) for n, f in frames.items()], ignore_index=True) if frames else pd.DataFrame(empty)

    def shown(column):
        keep = np.isfinite(data[column]) & ((data[column] > 0) if log_scale else True)
        return data[keep]

    raw = shown(y)
    smooth = shown("smoothed") if smoothing > 0 else None
    notes = (["log scale"] if log_scale else []) + ([f"EMA {smoothing:g}"] if smoothing > 0 else [])
    title = f"{y_title} ({', '.join(notes)})" if notes else y_title
    values = np.r_[raw[y].to_numpy(), np.asarray(also, dtype=float)]
    scale = alt.Scale(type="log") if log_scale else alt.Scale(type="linear")
    axis = log_axis(values) if log_scale else alt.Axis()
    tip_x = tooltip_x or alt.Tooltip(x.shorthand)
    style = {"strokeWidth": 2, **mark, "clip": True}
    if smooth is None:
        return [
            alt.Chart(raw)
            .mark_line(**style)
            .encode(
                x=x,
                y=alt.Y(f"{y}:Q", title=title, scale=scale, axis=axis),
                color=color,
                tooltip=[alt.Tooltip("run:N"), tip_x, alt.Tooltip(f"{y}:Q", format=".4g")],
            )
        ]
    faint = (
        alt.Chart(raw.drop(columns="smoothed"))
        .mark_line(**{**style, "opacity": 0.25})
        .encode(x=x, y=alt.Y(f"{y}:Q", title=title, scale=scale, axis=axis), color=color)
    )
    lines = (
        alt.Chart(smooth)
        .mark_line(**style)
        .encode(
            x=x,
            y=alt.Y("smoothed:Q", title=title),
            color=color,
            tooltip=[
                alt.Tooltip("run:N"),
                tip_x,
                alt.Tooltip("smoothed:Q", format=".4g", title=f"{y_title} (EMA {smoothing:g})"),
                alt.Tooltip(f"{y}:Q", format=".4g", title=y_title),
            ],
        )
    )
    return [faint, lines]


def loss_chart(
    runs: Mapping[str, pd.DataFrame],
    *,
    title: str = "Training loss",
    y: str = "loss",
    x: str = "step",
    y_title: str = "loss",
    order: list[str] | None = None,
    max_rows: int = 4000,
    smoothing: float = 0.0,
    log_scale: bool = True,
):
    """Loss per step, one line per run, on a log axis (or linear), raw or smoothed: `loss_layers`.
    A run that diverged simply ends where its loss stopped being finite. order: see `colors`.
    max_rows: all runs together (Altair refuses more than 5000 rows in all)."""
    names = list(runs)
    layers = loss_layers(
        runs,
        x=alt.X(f"{x}:Q", title=x),
        y=y,
        y_title=y_title,
        color=alt.Color("run:N", title=None, scale=colors(names, order), sort=names),
        per_run=max(200, max_rows // max(1, len(runs))),
        smoothing=smoothing,
        log_scale=log_scale,
    )
    return finish(layers[0] if len(layers) == 1 else alt.layer(*layers), title)


def live_loss(loss: np.ndarray, name: str = "loss"):
    """The growing curve shown while a run trains, named as the finished chart names it."""
    frame = pd.DataFrame({"step": np.arange(1, len(loss) + 1), "loss": loss})
    return loss_chart({"current": frame}, title=f"Training… ({name} per step)", y_title=name)


def live_loss_spec(name: str, total: int) -> dict:
    """`live_loss` as a Vega-Lite spec without its data (draw it with `live_frame`'s rows): the same
    spec for every redraw of one run, so that Streamlit swaps the data of the view in place instead of
    embedding a new one each time (0.1-0.3 s of the browser's main thread at every redraw, on the cores
    the training needs). So nothing in it depends on the data: steps 1..total on x (the curve grows to
    the right), and on the log y axis Vega's own ticks (decades, or 1-9 within one or two), labels
    thinned where they would overlap."""
    spec = live_loss(np.ones(1), name).to_dict(validate=False)
    spec.pop("datasets", None)
    spec.pop("data", None)
    spec["encoding"]["x"]["scale"] = {"domain": [1, max(int(total), 2)]}
    spec["encoding"]["y"]["axis"] = {"format": "~g", "tickCount": 3}  # d3: decades only once 3 are spanned
    return spec


def live_frame(loss: np.ndarray) -> pd.DataFrame:
    """The rows of `live_loss_spec`: the loss per step so far, as an `envelope` (a long run's spikes
    kept), the values a log axis can show."""
    frame = envelope(pd.DataFrame({"step": np.arange(1, len(loss) + 1), "loss": np.asarray(loss, dtype=float)}), "loss")
    frame = frame[np.isfinite(frame["loss"]) & (frame["loss"] > 0)]
    return frame.assign(run="current").reset_index(drop=True)


RULE_COLORS = {"valley": "#16a34a", "slide": "#9333ea", "minimum": "#0891b2", "steep": "#ca8a04"}


def lr_find_chart(result, current: float, limit: float | None = None, limit_label: str = "2/λmax"):
    """The range test: loss (and its smoothed curve) against the learning rate, log-log; fastai's
    four rules' rates as points on the smoothed curve; the current rate and, where known, the
    analytic stability limit as rules (named `limit_label`)."""
    frame = result.frames["lr_find"]
    frame = frame[np.isfinite(frame["loss"]) & (frame["loss"] > 0)]
    long = pd.concat(
        [
            pd.DataFrame({"lr": frame["lr"], "loss": frame["loss"], "curve": "loss"}),
            pd.DataFrame({"lr": frame["lr"], "loss": frame["smoothed"], "curve": "smoothed"}),
        ]
    )
    x = alt.X("lr:Q", title="learning rate (log scale)", scale=alt.Scale(type="log"), axis=log_axis(long["lr"]))
    y = alt.Y("loss:Q", title="loss (log scale)", scale=alt.Scale(type="log"), axis=log_axis(long["loss"]))
    lines = (
        alt.Chart(long)
        .mark_line(clip=True)
        .encode(
            x=x,
            y=y,
            color=alt.Color(
                "curve:N",
                title=None,
                scale=alt.Scale(domain=["loss", "smoothed"], range=["#cbd5e1", PALETTE["current"]]),
                legend=alt.Legend(direction="vertical"),
            ),
        )
    )
    layers = [lines]
    points = []
    for name, colour in RULE_COLORS.items():
        lr = result.metrics.get(f"{name}_lr")
        if lr and len(frame):
            at = float(np.exp(np.interp(np.log(lr), np.log(frame["lr"]), np.log(frame["smoothed"]))))
            points.append({"lr": lr, "loss": at, "rule": f"{name}: {lr:.3g}", "colour": colour})
    if points:
        rule_points = pd.DataFrame(points)
        layers.append(
            alt.Chart(rule_points)
            .mark_point(size=110, filled=True, stroke="white", strokeWidth=1.5, opacity=1)
            .encode(
                x="lr:Q",
                y="loss:Q",
                fill=alt.Fill(
                    "rule:N",
                    title=None,
                    scale=alt.Scale(domain=list(rule_points["rule"]), range=list(rule_points["colour"])),
                    legend=alt.Legend(columns=2),
                ),
                tooltip=["rule:N", alt.Tooltip("loss:Q", format=".4g")],
            )
        )
    marks = [("current", current, PALETTE["as-posted"])]
    if limit is not None:
        marks.append((limit_label, limit, "#111827"))
    rules = pd.DataFrame([{"lr": v, "what": f"{name}: {v:.3g}"} for name, v, _ in marks if v])
    layers.append(
        alt.Chart(rules)
        .mark_rule(strokeDash=[5, 3], strokeWidth=2)
        .encode(
            x="lr:Q",
            stroke=alt.Stroke(
                "what:N",
                title=None,
                scale=alt.Scale(domain=list(rules["what"]), range=[c for _, v, c in marks if v]),
                legend=alt.Legend(direction="vertical"),
            ),
        )
    )
    return finish(alt.layer(*layers).resolve_scale(color="independent"), "Learning-rate range test")
