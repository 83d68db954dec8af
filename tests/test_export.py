"""Exports: the standalone script reproduces the app's metrics; figures are real PNG/SVG
files; the JSON record and CSV history carry the run."""

import dataclasses
import json
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest

from core import export, registry, runner

ROOT = Path(__file__).resolve().parents[1]

# reduced budgets: the comparison is about the same computation, not the full run
SCRIPT_CONFIGS = {
    "sine": [
        {"steps": 300},
        {"preset": "fixed", "steps": 300, "seed": 3},
        {"preset": "fixed", "optimizer": "gd", "lr": 10.0, "steps": 50},  # diverges
    ],
    "cifar": [
        {"dataset": "synthetic", "train_size": 1000, "test_size": 500, "epochs": 2},
        {"preset": "x255", "dataset": "synthetic", "train_size": 1000, "test_size": 500, "epochs": 2},  # collapses
        {"preset": "x255-rule", "dataset": "synthetic", "train_size": 1000, "test_size": 500, "epochs": 2},
        {"preset": "fixed", "dataset": "synthetic", "train_size": 900, "test_size": 300, "epochs": 2, "seed": 3,
         "batch_size": 200},  # standardised, biases, a smaller last batch
        {"dataset": "synthetic", "train_size": 1000, "normalize": "standardize", "lr": 10.0, "epochs": 5},  # diverges
    ],
    "poly": [
        {"epochs": 300},  # the posted crawl
        {"preset": "fixed", "points": ((-1.0, 0.4), (0.0, 1.1), (0.5, 1.6), (1.0, 2.7), (2.0, 7.5), (2.0, 7.2)),
         "epochs": 300},  # your own points, Legendre on their range
        {"optimizer": "momentum", "lr": 4e-7, "noise": 0.1, "n_points": 12, "seed": 3, "init": "zeros", "epochs": 300},
        {"preset": "adam", "basis": "standardized", "epochs": 300},
        {"preset": "lbfgs", "dtype": "float64", "epochs": 20},
        {"lr": 1e-5, "epochs": 200},  # diverges
    ],
    "linreg": [
        {"batch_sizes_count": 4, "epochs": 3},  # batch sizes 10, 340, 670, 1000, shuffled and not
        {"preset": "fixed", "batch_sizes_count": 3, "steps": 200, "seed": 5},
        {"shuffle": "true", "epochs": 5, "batch_sizes_from": 35, "batch_sizes_to": 35, "batch_sizes_count": 1},
        {"optimizer": "sgd", "lr": 3.0, "batch_sizes_from": 500, "batch_sizes_count": 2, "epochs": 40},  # diverges:
        # float32 overflows at batch size 500 where float64 still holds a number
    ],
}  # fmt: skip
# absolute tolerance per case (else 1e-6): linreg's script trains in float32 as posted, the app's batched sweep
# in float64 (measured: at most a few 1e-6 apart at these budgets, 2e-4 over 10,000 steps)
ABS_TOLERANCE = {"linreg": 1e-4}
FLOAT32_MAX = 3.4028234663852886e38


def configs():
    for name, overrides in SCRIPT_CONFIGS.items():
        for o in overrides:
            o = dict(o)
            case = registry.get(name)
            preset = o.pop("preset", "as-posted")
            yield pytest.param(case, dataclasses.replace(case.presets[preset], **o), id=f"{name}-{preset}-{o}")


def close(a, b, rel=2e-3, abs_=1e-6):
    if isinstance(a, bool) or isinstance(b, bool):
        return a == b
    if a is None or b is None:  # NaN and inf print as null; float32 overflows where float64 still holds a number
        other = b if a is None else a
        return a == b or (isinstance(other, float) and abs(other) > FLOAT32_MAX)
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return abs(a - b) <= max(abs_, rel * max(abs(a), abs(b)))
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(close(x, y, rel, abs_) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(close(a[k], b[k], rel, abs_) for k in a)
    return a == b


@pytest.mark.parametrize(("case", "config"), list(configs()))
def test_the_exported_script_reproduces_the_apps_metrics(case, config, tmp_path, cpu):
    path = tmp_path / "repro.py"
    path.write_text(export.script(case, config))
    # run it outside the project: it must need nothing from it
    out = subprocess.run([sys.executable, str(path)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    printed = json.loads(lines[0])
    app = export.record(case, config, runner.execute(case, config, cpu))["metrics"]
    assert printed, "the script printed no metrics"
    if app.get("diverged"):  # exploding values differ by rounding; where it blew up must not
        assert printed["diverged"] is True
        run = "steps_run" if "steps_run" in app else "epochs_run"  # a case counts steps or epochs
        assert abs(printed[run] - app[run]) <= 1
        return
    for key, value in printed.items():
        assert key in app, key
        assert close(value, app[key], abs_=ABS_TOLERANCE.get(case.name, 1e-6)), (key, value, app[key])


def test_scripts_import_nothing_from_the_project():
    for case in registry.CASES.values():
        text = export.script(case, case.presets["as-posted"])
        assert "from core" not in text and "import core" not in text


def test_the_record_and_history_carry_the_run(cpu):
    case = registry.get("sine")
    config = dataclasses.replace(case.presets["fixed"], steps=40)
    result = runner.execute(case, config, cpu)
    record = json.loads(export.record_json(case, config, result))
    assert record["config"]["steps"] == 40 and record["device"] == "cpu"
    assert record["metrics"]["steps_run"] == 40 and "torch" in record["versions"]
    history = pd.read_csv(__import__("io").StringIO(export.history_csv(result)))
    assert list(history["step"]) == list(range(1, 41))
    pd.testing.assert_series_equal(history["loss"], result.history["loss"], check_exact=False, rtol=1e-6)


def test_figures_cli_writes_png_and_svg_files_that_open(tmp_path):
    args = ["figures", "sine", "--preset", "fixed", "--set", "steps=200", "--out", str(tmp_path)]
    out = subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    files = [Path(f) for f in json.loads(out.stdout)["files"]]
    assert {f.suffix for f in files} == {".png", ".svg"}
    assert len(files) == 2 * 6  # six charts: the sine page's five and the sharpness
    for f in files:
        if f.suffix == ".png":
            data = f.read_bytes()
            assert data[:8] == b"\x89PNG\r\n\x1a\n"
            width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
            assert width >= 1000 and height >= 300  # 2x scale of a 640-px-wide chart
        else:
            root = ET.parse(f).getroot()
            assert root.tag.endswith("svg")
            assert "Arial" in f.read_text()  # the page's font: the figure looks like the page
    loss = (tmp_path / "sine-custom-loss.svg").read_text()  # a file leaving the app names its runs and data
    assert ">current<" not in loss and ">fixed (steps = 200)<" in loss and ">as-posted<" in loss
    assert ">Sine fit: fixed (steps = 200) · points 4,000 · seed 0 · cpu<" in loss


def test_poly_figures_are_the_pages_six_charts(tmp_path, cpu):
    from core import figures

    case = registry.get("poly")
    runs = {"current": runner.execute(case, dataclasses.replace(case.presets["fixed"], epochs=100), cpu)}
    runs["as-posted"] = runner.execute(case, dataclasses.replace(case.presets["as-posted"], epochs=100), cpu)
    paths = figures.write(figures.charts_for(case, runs), tmp_path, "poly-test")
    assert sorted(p.name for p in paths) == sorted(
        f"poly-test-{name}.{ext}"
        for name in ("fit", "loss", "sharpness", "scan", "eigenvalues", "coefficients")
        for ext in ("png", "svg")
    )
    for p in paths:
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert ET.parse(p).getroot().tag.endswith("svg") and "Arial" in p.read_text()


def test_cifar_figures_are_the_pages_eight_charts_with_many_pins(tmp_path, cpu):
    from core import figures

    case = registry.get("cifar")
    small = {"dataset": "synthetic", "train_size": 1000, "test_size": 200, "epochs": 30}  # 120 steps
    runs = {
        name: runner.execute(case, dataclasses.replace(case.presets[preset], **small, seed=seed), cpu)
        for name, preset, seed in [("current", "x255", 0), ("as-posted", "as-posted", 0), ("pin 1", "fixed", 0),
                                   ("pin 2", "fixed", 1), ("pin 3", "x255-rule", 0), ("pin 4", "x255-lr", 0)]
    }  # fmt: skip
    names = ("loss", "sharpness", "accuracy", "grad_norm", "update_ratio", "dead", "images", "rule")
    charts = figures.charts_for(case, runs)
    assert list(charts) == list(names)
    assert all(name in json.dumps(charts["loss"].to_dict()) for name in runs)  # every run, under the row limit
    paths = figures.write(charts, tmp_path, "cifar-test")
    assert sorted(p.name for p in paths) == sorted(f"cifar-test-{n}.{ext}" for n in names for ext in ("png", "svg"))
    svg = (tmp_path / "cifar-test-images.svg").read_text()
    assert svg.count("<image") == 24 and "synthetic stand-in" in svg  # the test images drawn, the data named


def test_script_cli_prints_the_script_with_the_settings():
    out = subprocess.run(
        [sys.executable, "-m", "core", "script", "sine", "--preset", "fixed", "--set", "seed=7"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert '"seed": 7' in out.stdout and '"optimizer": "adam"' in out.stdout
    compile(out.stdout, "exported.py", "exec")


def test_charts_with_several_pins_stay_under_altairs_row_limit(cpu):
    """Altair refuses more than 5000 rows: the current run, as-posted and three pins at the
    full sine budget must still export."""
    from core import figures

    case = registry.get("sine")
    base = dataclasses.replace(case.presets["as-posted"], n_points=200)
    runs = {
        name: runner.execute(case, dataclasses.replace(base, seed=i), cpu)
        for i, name in enumerate(["current", "as-posted", "pin 1", "pin 2", "pin 3"])
    }
    for name, chart in figures.charts_for(case, runs).items():
        assert figures.sized(chart), name  # to_dict() raises MaxRowsError past the limit


def test_linreg_figures_cli_and_the_detail_figures(tmp_path, cpu):
    """The sweep's four charts from the CLI, and its task's (the page's single run in detail) as files."""
    args = ["figures", "linreg", "--set", "batch_sizes_count=5", "--set", "epochs=10", "--out", str(tmp_path)]
    out = subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    names = {Path(f).stem.removeprefix("linreg-custom-") for f in json.loads(out.stdout)["files"]}
    assert names == {"slope", "intercept", "final_loss", "steps"}
    args = ["figures", "linreg", "--task", "single", "--set", "epochs=3", "--out", str(tmp_path / "detail")]
    out = subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    files = [Path(f) for f in json.loads(out.stdout)["files"]]
    assert sorted(f.name for f in files if f.suffix == ".png") == [
        f"linreg-custom-{n}.png" for n in ("fit", "loss", "meant", "pairs", "sharpness")
    ]
    for f in files:
        if f.suffix == ".png":
            assert f.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        else:
            assert ET.parse(f).getroot().tag.endswith("svg") and "Arial" in f.read_text()


def test_linreg_script_cli_writes_the_settings():
    out = subprocess.run(
        [sys.executable, "-m", "core", "script", "linreg", "--preset", "fixed", "--set", "shuffle=false"],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    assert '"mode"' not in out.stdout and '"target_shape": "fixed"' in out.stdout
    assert '"budget": "steps"' in out.stdout and '"shuffle": "false"' in out.stdout
    compile(out.stdout, "exported.py", "exec")
