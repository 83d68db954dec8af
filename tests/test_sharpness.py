"""Sharpness on every case: the quadratic cases against their closed forms, the metrics and the
history column, the chart, its sentence, and the diagnosis card."""

import dataclasses
import json
import math

import numpy as np
import pandas as pd
import pytest
import torch

from core import cli, curvature, export
from core.cases import linreg
from core.cases.linreg import data, single
from core.cases.poly import config as poly_config
from core.cases.poly.run import run as poly_run
from core.cases.sine import config as sine_config
from core.cases.sine import run as sine
from core.charts import sharpness as charts
from core.train import RunResult

CPU = torch.device("cpu")
KEYS = {"sharpness_max", "sharpness_final", "stability_limit", "crossed_at"}


@pytest.fixture(scope="module")
def poly_posted():
    return poly_run(poly_config.AS_POSTED, CPU)


def test_poly_as_posted_measures_the_analytic_lambda_max(poly_posted):
    m = poly_posted.metrics
    assert set(m) >= KEYS
    # the measurement goes through autograd's double backward; lambda_max is eigvalsh of 2 AᵀA
    assert m["sharpness_max"] == pytest.approx(m["lambda_max"], rel=1e-3)
    assert m["sharpness_final"] == pytest.approx(m["lambda_max"], rel=1e-3)
    assert 2 / m["sharpness_max"] == pytest.approx(1.6228e-6, rel=1e-3)  # as the post's thread works it out
    assert m["stability_limit"] == pytest.approx(2 / poly_config.AS_POSTED.lr) and m["crossed_at"] is None
    sharp = poly_posted.frames["sharpness"]
    assert sharp["step"].iloc[0] == 1 and sharp["step"].iloc[-1] == poly_config.AS_POSTED.epochs
    column = poly_posted.history["sharpness"]
    assert column.notna().sum() == len(sharp) and column.isna().sum() == poly_config.AS_POSTED.epochs - len(sharp)


@pytest.mark.parametrize("preset", ["fixed", "lr-2e-6"])
def test_poly_other_bases_and_rates_match_too(preset):
    config = poly_config.PRESETS[preset]
    m = poly_run(config, CPU).metrics
    assert m["sharpness_max"] == pytest.approx(m["lambda_max"], rel=1e-3)
    if preset == "lr-2e-6":  # above 2/λmax from the first step
        assert m["crossed_at"] == 1 and m["diverged"]


def test_poly_adam_meets_its_line_preconditioned():
    config = dataclasses.replace(poly_config.PRESETS["adam"], epochs=2000)
    m = poly_run(config, CPU).metrics
    assert m["stability_limit"] == pytest.approx(38 / config.lr)
    assert 0 < m["sharpness_max"] < 1.1 * m["stability_limit"]


def test_linreg_batch_sharpness_matches_the_closed_form():
    config = linreg.config.LinregConfig(
        target_shape="fixed", shuffle="true", budget="steps", steps=200, batch_size=50, optimizer="sgd"
    )
    result = single.run_single(config, CPU)
    x = data.make_data(config)[0][:, 0].double().numpy()
    batches = single.measurement_batches(config)
    exact = np.mean([np.linalg.eigvalsh(single.batch_hessian(x, idx.numpy()))[-1] for idx in batches])
    sharp = result.frames["sharpness"]
    assert len(batches) == single.SHARPNESS_BATCHES
    assert np.allclose(sharp["sharpness"], exact, rtol=1e-3)  # the loss is quadratic: the same at every step
    assert result.metrics["stability_limit"] == pytest.approx(2 / config.lr)


def test_linreg_above_the_line_gets_a_card_with_the_fix():
    config = linreg.config.LinregConfig(
        target_shape="fixed",
        shuffle="false",
        budget="steps",
        steps=50,
        n_points=100,
        batch_size=100,
        optimizer="sgd",
        lr=1.0,
    )
    result = single.run_single(config, CPU)
    m = result.metrics
    assert m["crossed_at"] == 1 and m["sharpness_max"] > 2 / config.lr
    cards = {f.key: f for f in linreg.CASE.diagnose(config, result)}
    card = cards["above-stability-line"]
    assert card.title == "lr above the stability line"
    assert card.fix["lr"] < 2 / m["sharpness_max"] and card.fix["lr"] == pytest.approx(1.8 / m["sharpness_max"], 0.05)
    assert f"{m['sharpness_max']:.3g}" in card.evidence
    fixed = single.run_single(dataclasses.replace(config, lr=card.fix["lr"]), CPU)
    assert fixed.metrics["crossed_at"] is None and not fixed.metrics["diverged"]


def test_sine_measures_on_its_schedule_and_the_cli_json_is_valid():
    config = dataclasses.replace(sine_config.AS_POSTED, n_points=200, steps=120)
    result = sine.run(config, CPU)
    sharp = result.frames["sharpness"]
    every = curvature.every_for(config.steps, sine_config.sharpness_measurements(config.steps))
    assert every >= sine_config.SHARPNESS_EVERY_AT_LEAST  # a short run measures at most every 50th step
    assert sharp["step"].tolist() == curvature.schedule(config.steps, every).tolist()
    assert result.metrics["stability_limit"] == pytest.approx(2 / config.lr)
    text = json.dumps(export.jsonable(dict(result.metrics)), allow_nan=False)
    assert set(json.loads(text)) >= KEYS


def test_the_cli_prints_the_sharpness_metrics(capsys):
    assert cli.main(["run", "poly", "--set", "epochs=100", "--history"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert set(out["metrics"]) >= KEYS and out["metrics"]["crossed_at"] is None
    column = out["history"]["sharpness"]
    assert column[0] is not None and column[1] is None  # NaN -> null on the steps not measured


def fake(values, limit, steps=None, loss=None, diverged_at=None, lr=1.0):
    """A RunResult carrying only what the chart and its sentence read."""
    steps = steps or list(range(1, len(values) + 1))
    frame = curvature.frame(
        [(s, curvature.Sharpness(v, 2, 0.0, True)) for s, v in zip(steps, values, strict=True)], limit, lr=lr
    )
    metrics = curvature.metrics(frame, limit) | {"diverged_at": diverged_at}
    n = steps[-1]
    history = pd.DataFrame({"step": np.arange(1, n + 1), "loss": loss if loss is not None else np.linspace(2, 1, n)})
    return RunResult(metrics=metrics, history=history, frames={"sharpness": frame})


def test_reading_states_the_verdict_from_the_numbers():
    edge = fake([10.0, 50.0, 82.0], 100.0, lr=0.02)
    assert charts.reading(edge) == "The λmax rose to 0.82 × 2/lr: stable, on the edge."
    low = fake([10.0, 20.0, 15.0], 100.0, lr=0.02)
    assert charts.reading(low) == "The λmax peaked at step 2 at 0.2 × 2/lr: stable, well below the line."
    loss = np.r_[np.linspace(2, 1, 150), np.full(50, 3.0)]
    crossed = fake([10.0, 120.0, 130.0], 100.0, steps=[1, 140, 200], loss=loss, lr=0.02)
    assert crossed.metrics["crossed_at"] == 140
    assert charts.reading(crossed) == (
        "The λmax crossed 2/lr at step 140 (1.2 × the line); "
        "the loss jumps from step 151 on (up to 3× its best so far)."
    )
    blown = fake([10.0, 120.0], 100.0, steps=[1, 50], diverged_at=60, lr=0.02)
    assert charts.reading(blown).endswith("the loss diverged at step 60.")
    assert (
        charts.reading(RunResult(metrics={}, history=pd.DataFrame())) == "The sharpness was not measured on this run."
    )


def test_chart_draws_each_run_its_line_and_the_crossing():
    runs = {
        "current": fake([10.0, 120.0, 130.0], 100.0, steps=[1, 140, 200], lr=0.02),
        "as-posted": fake([5.0, 40.0, 60.0], 200.0, steps=[1, 140, 200], lr=0.01),
    }
    spec = charts.chart(runs).to_dict()
    assert spec["title"]["text"] == charts.TITLE
    layers = spec["layer"]
    marks = [layer["mark"]["type"] for layer in layers]
    assert marks == ["line", "rule", "text", "point", "text"]
    assert layers[0]["encoding"]["y"]["scale"]["type"] == "log"
    assert layers[0]["encoding"]["y"]["axis"]["format"] == ".0e"
    data = spec["datasets"]
    lines = data[layers[1]["data"]["name"]]
    assert sorted(row["limit"] for row in lines) == [100.0, 200.0]
    assert {row["text"] for row in lines} == {"2/lr = 100", "2/lr = 200"}
    crossing = data[layers[3]["data"]["name"]]
    assert crossing == [{"run": "current", "step": 140, "sharpness": 120.0, "text": "crossed at step 140"}]


def test_one_shared_line_is_drawn_once_in_black():
    runs = {"a": fake([1.0, 2.0], 10.0), "b": fake([1.5, 3.0], 10.0)}
    layers = charts.chart(runs).to_dict()["layer"]
    assert layers[1]["encoding"]["color"] == {"value": charts.LINE_COLOR}
    assert math.isclose(charts.limit_ratio(runs["b"]), 0.3)
