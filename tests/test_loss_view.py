"""Issue 14: smoothing and scale on the loss charts, as TensorBoard draws them (EMA with the raw
curve faint; log or linear), in every case's loss chart and on a page."""

import inspect
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest

from core import charts, registry
from core.cases.cifar import charts as cifar
from core.cases.linreg import charts as linreg
from core.cases.poly import charts as poly
from core.cases.sine import charts as sine
from core.train import RunResult

ROOT = Path(__file__).resolve().parents[1]


def debiased_ema(values, s):
    """The oracle, written out: TensorBoard's smoothing over the finite values only."""
    out, last, t = [], 0.0, 0
    for v in values:
        if not math.isfinite(v):
            out.append(v)
            continue
        t += 1
        last = s * last + (1 - s) * v
        out.append(last / (1 - s**t))
    return np.array(out)


def test_ema_is_tensorboards_debiased_average():
    v = np.array([4.0, 2.0, 1.0, 3.0])
    # by hand, s = 0.5, the running sums 2, 2, 1.5, 2.25 over the debias 0.5, 0.75, 0.875, 0.9375
    np.testing.assert_allclose(charts.ema(v, 0.5), [4.0, 8 / 3, 12 / 7, 12 / 5])
    np.testing.assert_allclose(charts.ema(v, 0.9), debiased_ema(v, 0.9))
    assert charts.ema(v, 0.9)[0] == 4.0  # debiased: the first value is not pulled towards 0


def test_no_smoothing_returns_the_values_exactly():
    v = np.array([3.0, np.nan, 1e-30, np.inf, 7.5])
    out = charts.ema(v, 0.0)
    np.testing.assert_array_equal(out, v)
    assert out is not v


def test_smoothing_of_1_or_more_is_refused_and_no_runs_draw_an_empty_chart():
    with pytest.raises(ValueError):
        charts.ema([1.0, 2.0], 1.0)
    spec = charts.loss_chart({}, smoothing=0.9).to_dict()
    assert [len(spec["datasets"][layer["data"]["name"]]) for layer in spec["layer"]] == [0, 0]


def test_non_finite_values_stay_out_of_the_average():
    v = np.array([1.0, np.nan, 3.0, np.inf, -np.inf, 5.0])
    out = charts.ema(v, 0.6)
    assert np.isnan(out[1]) and out[3] == np.inf and out[4] == -np.inf
    finite = np.isfinite(v)
    np.testing.assert_allclose(out[finite], charts.ema(v[finite], 0.6))  # as if they were not there
    np.testing.assert_allclose(out, debiased_ema(v, 0.6))


# ------------------------------------------------------------------ every case's loss chart

METRICS = {
    "closed_form_loss": 0.05,  # poly's optimum rule
    "loss_ratio": 2.0,
    "chance_loss": math.log(10),  # cifar's chance rule
    "dataset": "synthetic",
    "train_size": 100,
    "epochs_run": 1,
}


def history(n: int, diverged: bool = False) -> pd.DataFrame:
    loss = np.exp(-np.arange(n) / 50) + 0.1 * np.random.default_rng(n).random(n)
    if diverged:
        loss[-3:] = [np.nan, np.inf, np.inf]
    return pd.DataFrame({"step": np.arange(1, n + 1), "loss": loss, "mse": loss})


RUNS = {"current": RunResult(METRICS, history(6000)), "as-posted": RunResult(METRICS, history(300, diverged=True))}
LOSS_CHARTS = {
    "sine": sine.loss,
    "linreg": linreg.loss,
    "poly": poly.loss_chart,
    "cifar": cifar.loss_chart,
}
EXTRA_RULES = {"sine": 0, "linreg": 0, "poly": 1, "cifar": 1}  # the least-squares optimum, ln(K)


def layers(spec: dict) -> list[dict]:
    return spec.get("layer", [spec])


def lines(spec: dict) -> list[dict]:
    return [layer for layer in layers(spec) if layer["mark"]["type"] == "line"]


def rows(spec: dict, layer: dict) -> list[dict]:
    return spec["datasets"][layer["data"]["name"]]


@pytest.mark.parametrize("case_name", list(LOSS_CHARTS))
def test_by_default_one_raw_line_layer_on_a_log_axis(case_name):
    spec = LOSS_CHARTS[case_name](RUNS).to_dict()
    (line,) = lines(spec)
    assert line["encoding"]["y"]["scale"]["type"] == "log"
    assert line["mark"].get("opacity", 1) > 0.5
    assert len(layers(spec)) == 1 + EXTRA_RULES[case_name]


@pytest.mark.parametrize("case_name", list(LOSS_CHARTS))
def test_smoothing_draws_the_raw_lines_faint_under_the_ema(case_name):
    spec = LOSS_CHARTS[case_name](RUNS, smoothing=0.9).to_dict()
    raw, smooth = lines(spec)
    assert raw["mark"]["opacity"] < 0.5 <= smooth["mark"].get("opacity", 1)
    assert raw["encoding"]["color"] == smooth["encoding"]["color"]  # the same colour per run
    assert len(layers(spec)) == 2 + EXTRA_RULES[case_name]  # the optimum or chance rule stays
    y = smooth["encoding"]["y"]["field"]
    drawn = pd.DataFrame(rows(spec, smooth))
    current = drawn[drawn["run"] == "current"]
    assert len(current) < 6000  # thinned after smoothing
    y_raw = raw["encoding"]["y"]["field"]
    full = RUNS["current"].history[y_raw].to_numpy()
    expected = debiased_ema(full, 0.9)[current["step"].to_numpy() - 1]  # smoothed over the whole history
    np.testing.assert_allclose(current[y].to_numpy(), expected, rtol=1e-9)
    assert np.isfinite(drawn[y]).all()  # the diverged run's NaN and inf stay out
    assert raw["encoding"]["y"]["scale"]["type"] == "log"


@pytest.mark.parametrize("case_name", list(LOSS_CHARTS))
def test_a_linear_scale_keeps_zero_and_negative_losses_and_the_rules(case_name):
    runs = {"current": RunResult(METRICS, pd.DataFrame({"step": [1, 2, 3], "loss": [1.0, 0.0, -0.5]}).assign(
        mse=lambda f: f["loss"]))}  # fmt: skip
    spec = LOSS_CHARTS[case_name](runs, smoothing=0.5, log_scale=False).to_dict()
    raw, smooth = lines(spec)
    assert raw["encoding"]["y"]["scale"]["type"] == "linear"
    assert "log" not in raw["encoding"]["y"]["title"]
    assert len(rows(spec, raw)) == 3 and len(rows(spec, smooth)) == 3
    assert len(layers(spec)) == 2 + EXTRA_RULES[case_name]
    log = LOSS_CHARTS[case_name](runs).to_dict()
    assert len(rows(log, lines(log)[0])) == 1  # on a log axis only the positive loss can be drawn


@pytest.mark.parametrize("build", [sine.figures, poly.figures, cifar.figures, linreg.figures])
def test_figures_default_to_todays_look(build):
    """The CLI and the exports call `figures(runs)`: unsmoothed, on a log axis, unless asked."""
    params = inspect.signature(build).parameters
    assert params["smoothing"].default == 0.0 and params["log_scale"].default is True


# ------------------------------------------------------------------ on a page


def loss_spec(at: AppTest) -> dict:
    specs = [json.loads(c.proto.spec) for c in at.get("vega_lite_chart")]
    return next(s for s in specs if s.get("title", {}).get("text") == "Training MSE per step")


def test_the_sine_page_smooths_and_switches_the_loss_axis_to_linear():
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.switch_page(registry.get("sine").page)
    at.query_params.update({"steps": "300"})
    at.run()
    assert not at.exception
    (line,) = lines(loss_spec(at))
    assert line["encoding"]["y"]["scale"]["type"] == "log"

    at.toggle(key="sine._log_scale").set_value(False).run()
    (line,) = lines(loss_spec(at))
    assert line["encoding"]["y"]["scale"]["type"] == "linear"

    at.slider(key="sine._smoothing").set_value(0.9).run()
    raw, smooth = lines(loss_spec(at))
    assert raw["encoding"]["y"]["scale"]["type"] == "linear" and raw["mark"]["opacity"] < 0.5
    assert "EMA 0.9" in smooth["encoding"]["y"]["title"]

    at.switch_page("app.py").run()  # the view survives a visit to another page
    at.switch_page(registry.get("sine").page).run()
    assert at.slider(key="sine._smoothing").value == 0.9 and at.toggle(key="sine._log_scale").value is False
    assert len(lines(loss_spec(at))) == 2
