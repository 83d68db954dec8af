"""Issue 14's chart defects, on the chart specs (pure builders: result in, spec out)."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest
import torch

from core import charts, registry, runner
from core.cases.cifar import charts as cifar_charts
from core.train import RunResult


def log_axes(spec) -> list[dict]:
    """Every encoding channel on a log scale, anywhere in the spec."""
    found = []

    def walk(node):
        if isinstance(node, dict):
            if node.get("scale", {}).get("type") == "log" if isinstance(node.get("scale"), dict) else False:
                found.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(spec)
    return found


def test_a_log_axis_has_one_number_format_and_gridlines_only_at_its_ticks():
    """Issue 14, item 8: '1e-8, 1e-7, 0.000001' on one axis, and grey bands of minor gridlines."""
    wide = charts.log_axis([3e-9, 10.0]).to_dict()
    assert wide["labelExpr"] == charts.E_LABEL and "format" not in wide
    assert wide["values"] == [10.0**k for k in range(-9, 2)]  # decades only
    narrow = charts.log_axis([0.4, 8.0]).to_dict()
    assert narrow["format"] == "~g" and "labelExpr" not in narrow
    assert {0.5, 1.0, 2.0, 5.0} <= set(narrow["values"])


@pytest.mark.parametrize("case_name", ["sine", "poly"])
def test_every_log_axis_of_a_page_has_fixed_ticks_and_one_format(case_name, cpu):
    case = registry.get(case_name)
    config = case.presets["as-posted"]
    config = dataclasses.replace(config, **({"steps": 100} if case_name == "sine" else {}))
    result = runner.execute(case, config, cpu)
    figures = case.figures
    axes = [a for fig in figures({"current": result}).values() for a in log_axes(fig.to_dict())]
    assert axes
    for a in axes:
        axis = a.get("axis", {})
        assert axis.get("values"), a
        assert ("format" in axis) != ("labelExpr" in axis), a


def layers_result(grad_norms) -> RunResult:
    steps = np.arange(1, len(grad_norms) + 1)
    layers = pd.DataFrame(
        {
            "step": np.repeat(steps, 2),
            "layer": ["layer 1", "layer 2"] * len(steps),
            "grad_norm": np.ravel([[g, 0.5] for g in grad_norms]),
            "update_ratio": 1e-3,
        }
    )
    metrics = {"dataset": "synthetic", "train_size": 100, "epochs_run": 1}
    return RunResult(metrics=metrics, history=pd.DataFrame({"step": [], "loss": []}), frames={"layers": layers})


def test_exact_zero_gradient_norms_sit_on_a_floor_marked_0():
    """Issue 14, item 8: at x255 layer 1's gradient is exactly 0 (dead ReLUs), and the log axis dropped it."""
    spec = cifar_charts.grad_norm_chart({"current": layers_result([0.2, 0.0, 0.0])}).to_dict()
    text = json.dumps(spec)
    assert "0: exact zeros, drawn on this line" in text
    data = [row for rows in spec["datasets"].values() for row in rows if row.get("layer") == "layer 1"]
    assert len(data) == 3 and min(r["grad_norm"] for r in data) == pytest.approx(0.01)  # a decade below 0.2
    axis = next(a["axis"] for a in log_axes(spec) if "axis" in a)
    assert 0.01 in axis["values"] and "datum.value == 0.01 ? '0'" in axis["labelExpr"]
    # without zeros: no floor
    assert "exact zeros" not in json.dumps(
        cifar_charts.grad_norm_chart({"current": layers_result([0.2, 0.1])}).to_dict()
    )


def test_the_chance_line_is_named_in_the_legend_not_written_across_the_loss():
    """Issue 14, item 13: the 'ln 10 = 2.303' label lay on the x255 loss line."""
    result = layers_result([0.1])
    result = dataclasses.replace(
        result,
        history=pd.DataFrame({"step": [1, 2, 3], "loss": [2.31, 2.303, 2.302]}),
        metrics={**result.metrics, "chance_loss": float(np.log(10))},
    )
    spec = cifar_charts.loss_chart({"current": result}).to_dict()
    assert not any(layer.get("mark", {}).get("type") == "text" for layer in spec["layer"])
    assert "ln 10 = 2.303: a uniform guess" in json.dumps(spec)


# ------------------------------------------------------------------ issue 14, items 6 and 7


def painted(spec: dict) -> dict[str, int]:
    """Pixels of the current (blue) and as-posted (orange) colours in the rendered chart."""
    import io

    import vl_convert as vlc
    from PIL import Image

    img = np.asarray(Image.open(io.BytesIO(vlc.vegalite_to_png(spec))).convert("RGB")).astype(int)
    out = {}
    for name in ("current", "as-posted"):
        rgb = [int(charts.PALETTE[name][i : i + 2], 16) for i in (1, 3, 5)]
        out[name] = int((np.abs(img - rgb).sum(-1) < 60).sum())
    return out


def test_the_current_run_is_drawn_over_a_coinciding_comparison():
    """Item 6: with the current run listed first, Vega painted it first, under the others: on CIFAR
    x255-rule vs as-posted the current line was invisible."""
    frame = pd.DataFrame({"step": np.arange(1, 200), "loss": np.linspace(2, 0.1, 199)})
    chart = charts.loss_chart({"current": frame, "as-posted": frame})
    seen = painted(chart.to_dict())
    assert seen["current"] > 10 * seen["as-posted"]
    legend = chart.to_dict()["encoding"]["color"]
    assert legend["sort"] == ["current", "as-posted"]  # the legend keeps its order


def test_an_exported_figure_names_its_runs_by_their_settings_and_carries_a_caption():
    """Item 7: exported legends read 'current' / 'pin 1', meaningless in a report."""
    from core import figures
    from core.cases.poly import charts as poly_charts

    poly = registry.get("poly")
    current = dataclasses.replace(poly.presets["fixed"], seed=3, epochs=300)
    pin = dataclasses.replace(poly.presets["as-posted"], epochs=300)
    runs = {n: runner.execute(poly, c, torch.device("cpu")) for n, c in (("current", current), ("pin 1", pin))}
    names = figures.report_names(poly, {"current": current, "pin 1": pin, "baseline": poly.presets["fixed"]})
    assert names == {
        "current": "fixed (epochs = 300, seed = 3)",
        "pin 1": "as-posted (epochs = 300)",
        "baseline": "baseline: fixed",
    }
    line = figures.caption(poly, current, runs["current"])
    assert line.startswith("Polynomial fit: fixed (epochs = 300, seed = 3)") and "seed 3" in line
    spec = figures.for_report(poly_charts.figures(runs)["loss"], names, line)
    text = json.dumps(spec)
    assert '"current"' not in text and '"pin 1"' not in text
    assert "fixed (epochs = 300, seed = 3)" in text and spec["title"]["subtitle"] == line
    assert figures.svg(poly_charts.figures(runs)["loss"], names, line).count("as-posted (epochs = 300)") >= 1


def test_runs_that_coincide_with_the_current_one_are_named():
    """Item 6: a compared run whose history is the current one's (to 1e-6) lies under it: the page says so."""
    from core import ui

    h = pd.DataFrame({"step": [1, 2, 3], "loss": [1.0, 0.5, 0.25]})
    runs = {
        "current": RunResult({}, h),
        "as-posted": RunResult({}, h.assign(loss=h["loss"] * (1 + 1e-8))),
        "pin 1": RunResult({}, h.assign(loss=h["loss"] * 1.01)),
    }
    assert ui.coinciding(runs) == ["as-posted"]


def test_legends_wrap_instead_of_being_cut_at_1024_px():
    """Item 5: at 1024 px bottom legends were cut ('not shufl')."""
    frame = pd.DataFrame({"step": [1, 2], "loss": [1.0, 0.5]})
    runs = {n: frame for n in ("current", "as-posted", "pin 1", "pin 2", "pin 3")}
    spec = charts.loss_chart(runs, title="Loss; dashed: the optimum").to_dict()
    assert spec["config"]["legend"]["columns"] == charts.LEGEND_COLUMNS < len(runs)


def test_a_long_loss_line_is_sent_at_screen_resolution_with_its_spikes_and_ends():
    """Issue 17: a chart re-embeds in the browser per row; a 10,000-step history is drawn from about
    2 rows per pixel column, keeping each bucket's extremes: a one-step spike, the lowest loss, the
    first and last steps and the step where the run diverged."""
    steps = np.arange(1, 10_001)
    loss = np.exp(-steps / 3000) + 0.01 * np.sin(steps)
    loss[4321] = 50.0  # a one-step spike between thinned rows
    loss[9000:] = np.nan  # diverged
    kept = charts.envelope(pd.DataFrame({"step": steps, "loss": loss}), "loss")
    assert len(kept) <= 2 * charts.PIXELS + 80
    assert 4322 in set(kept["step"]) and kept["loss"].max() == 50.0
    assert np.nanmin(kept["loss"]) == np.nanmin(loss)
    assert kept["step"].iloc[0] == 1 and kept["step"].iloc[-1] == 10_000 and 9001 in set(kept["step"])
    assert kept["step"].is_monotonic_increasing
    short = pd.DataFrame({"step": steps[:300], "loss": loss[:300]})
    assert charts.envelope(short, "loss") is short  # nothing to save: the rows as they are

    spec = charts.loss_chart({"current": pd.DataFrame({"step": steps, "loss": loss})}).to_dict()
    (rows,) = spec["datasets"].values()
    assert len(rows) <= 2 * charts.PIXELS + 80 and max(r["loss"] for r in rows) == 50.0


def test_the_live_curve_keeps_one_spec_for_a_run_and_sends_only_its_rows():
    """Issue 17: while a run trains, its curve is redrawn every 0.25 s. With the same spec each time,
    Streamlit's frontend swaps the view's data instead of embedding a new view; so the spec must not
    depend on the loss so far (no tick list, no dataset name), only on the run's name and length."""
    import altair as alt

    steps = np.arange(1, 5001)
    loss = np.exp(-steps / 800) * 3
    loss[2500] = 40.0  # a spike
    loss[4000:] = np.nan  # diverged
    early, late = charts.live_frame(loss[:30]), charts.live_frame(loss)
    spec = charts.live_loss_spec("MSE", 5000)
    assert spec == charts.live_loss_spec("MSE", 5000) and "data" not in spec and "datasets" not in spec
    assert spec["encoding"]["x"]["scale"]["domain"] == [1, 5000] and "values" not in spec["encoding"]["y"]["axis"]
    assert spec["title"]["text"] == "Training… (MSE per step)" and spec["encoding"]["y"]["title"] == "MSE (log scale)"
    # rows: the envelope of the finite, positive losses (a log axis), the spike kept
    assert len(early) == 30 and list(early["step"]) == list(range(1, 31))
    assert len(late) <= 2 * charts.PIXELS + 80 and late["loss"].max() == 40.0 and late["step"].max() == 4000
    assert np.isfinite(late["loss"]).all() and set(late["run"]) == {"current"}
    # with its rows, a valid Vega-Lite chart (Altair's schema validation)
    records = json.loads(late.to_json(orient="records"))
    alt.Chart.from_dict({**spec, "data": {"values": records}}).to_dict()
