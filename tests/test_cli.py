"""The headless CLI, run as a user would: `python -m core ...` in a subprocess."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def cli(*args, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def test_list_prints_every_case_preset_and_setting():
    out = cli("list")
    assert out.returncode == 0, out.stderr
    assert "sine: A shallow tanh network fits sin(x) badly" in out.stdout
    assert "presets: as-posted, as-posted-deep, answer, fixed" in out.stdout
    assert "lr" in out.stdout and "> 0 and <= 10" in out.stdout


def test_list_json():
    out = cli("list", "--json")
    cases = json.loads(out.stdout)
    sine = next(c for c in cases if c["case"] == "sine")
    lr = next(s for s in sine["settings"] if s["name"] == "lr")
    assert lr == {
        "name": "lr",
        "type": "float",
        "default": "4e-07",
        "allowed": "> 0 and <= 10",
        "help": "learning rate",
    }


def test_run_prints_exactly_one_json_object():
    out = cli("run", "sine", "--preset", "as-posted", "--set", "steps=40", "--history", "--device", "cpu")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.strip().splitlines()
    assert len(lines) == 1
    data = json.loads(lines[0])
    assert set(data) == {"case", "preset", "config", "device", "seconds", "metrics", "history"}
    assert data["case"] == "sine" and data["device"] == "cpu" and data["config"]["steps"] == 40
    for key in ("final_loss", "rmse_vs_truth", "saturated_fraction", "transitions_near_zero", "diverged", "steps_run"):
        assert key in data["metrics"]
    assert data["metrics"]["transitions_near_zero"] == 1.0 and data["metrics"]["steps_run"] == 40
    assert len(data["history"]["loss"]) == 40


def test_a_diverged_run_is_still_valid_json():
    out = cli("run", "sine", "--preset", "fixed", "--set", "optimizer=gd", "--set", "lr=10", "--set", "steps=100")
    data = json.loads(out.stdout)
    assert data["metrics"]["diverged"] is True and data["metrics"]["rmse_vs_truth"] is None


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--set", "lr=-1"], "error: lr: must be > 0 and <= 10 (got -1)"),
        (["--set", "foo=1"], "error: foo: unknown setting for case sine"),
        (["--set", "lr=abc"], "error: lr: expected a number such as 0.001 or 1e-3, got 'abc'"),
        (["--set", "hidden=128,abc"], "error: hidden: expected comma-separated whole numbers"),
        (["--set", "steps=-5"], "error: steps: must be >= 1 and <= 20000 (got -5)"),
        (["--set", "lr"], "error: lr: expected KEY=VALUE"),
        (["--preset", "nope"], "error: preset: must be one of"),
        (["--device", "tpu"], "error: device: must be one of auto, cpu, cuda, mps"),
    ],
)
def test_bad_input_exits_2_with_one_line_naming_the_setting(args, message):
    out = cli("run", "sine", *args)
    assert out.returncode == 2
    assert out.stdout == ""
    assert out.stderr.count("\n") == 1 and out.stderr.startswith(message), out.stderr


def test_unknown_case_and_bad_command():
    out = cli("run", "nope")
    assert out.returncode == 2 and out.stderr.startswith("error: case: must be one of sine")
    out = cli("fly")
    assert out.returncode == 2 and out.stderr.startswith("error: ")
