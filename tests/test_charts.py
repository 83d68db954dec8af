"""Issue 14's chart defects, on the chart specs (pure builders: result in, spec out)."""

import dataclasses
import json

import numpy as np
import pandas as pd
import pytest

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
