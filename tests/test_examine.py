"""The examiner (core/examine): its corpus of bug scripts and fixed twins, the four cases'
exported scripts, the command, and its manners (hooks removed, other threads ignored).

The scripts run in this process under the examiner, as `python -m core examine` runs them;
two tests go through the command in a subprocess.
"""

import json
import subprocess
import sys
import threading
import warnings
from pathlib import Path

import pytest
import torch

from core import export, registry
from core.examine import KEYS, demo, examine, script
from core.examine.hooks import StopRun

CORPUS = Path(__file__).parent / "examine_corpus"
ROOT = Path(__file__).parent.parent


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models: one thread is faster and steadier on a shared CPU."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def run(path, *args, steps=None):
    """The script as `python -m core examine` runs it -> the report (its output is captured by pytest)."""
    with torch.random.fork_rng(devices=[]):  # the scripts seed the global generator, as scripts do
        return script.run(path, list(args), max_steps=steps, quiet_traceback=True)


def keys(report) -> set[str]:
    return {f.key for f in report.findings}


def write(tmp_path, name, text) -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def hooks_installed() -> list[str]:
    """Whatever the examiner installs on torch that is still there."""
    from torch.nn.modules import module
    from torch.optim import lr_scheduler, optimizer

    left = []
    for name in ("_global_forward_hooks", "_global_forward_pre_hooks"):
        if getattr(module, name):
            left.append(name)
    for name in ("_global_optimizer_pre_hooks", "_global_optimizer_post_hooks"):
        if getattr(optimizer, name):
            left.append(name)
    for cls, attr in (
        (torch.Tensor, "backward"),
        (torch.optim.Optimizer, "zero_grad"),
        (torch.nn.Module, "zero_grad"),
        (lr_scheduler.LRScheduler, "step"),
        (torch.amp.GradScaler, "scale"),
    ):
        if getattr(vars(cls)[attr], "__module__", "") == "core.examine.hooks":  # a wrap left on
            left.append(f"{cls.__name__}.{attr}")
    if torch._C._len_torch_function_stack():
        left.append("a TorchFunctionMode")
    return left


# --- the corpus: every key's bug script names it; its fixed twin gets no finding


TWINS = sorted(p.stem.removeprefix("bug_") for p in CORPUS.glob("bug_*.py"))  # "<key>" or "<key>_<variant>"


def test_the_keys_are_the_issues_sixteen():
    assert len(KEYS) == len(set(KEYS)) == 16
    files = sorted(p.name for p in CORPUS.glob("*.py"))
    assert files == sorted([f"bug_{t}.py" for t in TWINS] + [f"fixed_{t}.py" for t in TWINS])
    assert {t.split("_")[0] for t in TWINS} == set(KEYS)  # every key has a twin; every twin names a key


@pytest.mark.parametrize("twin", TWINS)
def test_bug_script_gets_its_key_and_its_fixed_twin_none(twin):
    key = twin.split("_")[0]
    bug = run(CORPUS / f"bug_{twin}.py")
    assert key in keys(bug), bug.text()
    found = next(f for f in bug.findings if f.key == key)
    assert found.step >= 1 and any(c.isdigit() for c in found.evidence) and found.fix
    fixed = run(CORPUS / f"fixed_{twin}.py")
    assert fixed.findings == [], fixed.text()
    assert fixed.steps > 0 and fixed.status == 0


def test_a_non_linear_models_conditioning_is_its_hessians():
    """An MLP on features whose scales differ 1000-fold: the evidence is the loss's Hessian along the
    first layer's input directions (Hessian-vector products), not the Gram matrix of a linear model."""
    report = run(CORPUS / "bug_ill-conditioned_mlp.py")
    found = next(f for f in report.findings if f.key == "ill-conditioned")
    assert "Hessian along the first layer's 2 input directions" in found.evidence
    kappa = float(found.evidence.split("κ = ")[1].split(" ")[0])
    assert kappa > 1e5, found.evidence


# --- the four cases' exported scripts


def case_script(tmp_path, name, preset, **sets) -> Path:
    case = registry.get(name)
    text = export.script(case, case.configure(preset, {k: str(v) for k, v in sets.items()}))
    if name == "cifar":  # the offline stand-in draws 60,000 images; a small budget needs far fewer
        text = demo.small_stand_in(text, train=sets["train_size"], test=sets["test_size"])
    return write(tmp_path, f"{name}-{preset}.py", text)


CASES = {  # case: (as-posted preset, its settings, the causes; the fixed preset's settings)
    "sine": ("as-posted", {"steps": 60, "n_points": 1000}, {"saturated-activation", "sum-reduction"}, {}),
    "poly": ("as-posted", {"epochs": 200}, {"ill-conditioned"}, {}),
    "linreg": (
        "as-posted",
        {"shuffle": "false", "epochs": 3, "batch_sizes_to": 10, "batch_sizes_count": 1},  # one run, B = 10
        {"loss-shape-broadcast", "unshuffled-data"},
        {"shuffle": "true", "steps": 300},
    ),
    "cifar": (
        "x255",
        {"dataset": "synthetic", "train_size": 2000, "test_size": 500, "epochs": 4},
        {"input-scale", "dead-relu", "loss-at-chance"},
        {},
    ),
}


@pytest.mark.parametrize("name", CASES)
def test_case_scripts_as_posted_name_the_causes_and_fixed_none(name, tmp_path, monkeypatch):
    monkeypatch.setenv("CLINIC_OFFLINE", "1")
    preset, sets, causes, fixed_sets = CASES[name]
    posted = run(case_script(tmp_path, name, preset, **sets))
    assert causes <= keys(posted), posted.text()
    budget = {k: v for k, v in sets.items() if k != "shuffle"} | fixed_sets
    fixed = run(case_script(tmp_path, name, "fixed", **budget))
    assert not causes & keys(fixed), fixed.text()
    assert fixed.findings == [], fixed.text()


# --- running scripts: steps, exceptions, exit codes, non-training code, models of every kind

LONG = """
import torch
model = torch.nn.Linear(3, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
x, y = torch.randn(32, 3), torch.randn(32, 1)
for step in range(1_000_000):
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()
print("never here")
"""


def test_steps_stops_a_long_script(tmp_path, capsys):
    report = run(write(tmp_path, "long.py", LONG), steps=7)
    assert report.steps == 7 and report.stopped and report.status == 0
    assert "never here" not in capsys.readouterr().out
    assert hooks_installed() == []


def test_a_script_that_raises_still_gets_a_report(tmp_path):
    text = LONG.replace("    opt.step()", "    opt.step()\n    if step == 12:\n        raise ValueError('bad batch')")
    report = run(write(tmp_path, "raises.py", text))
    assert report.status == 1 and report.steps == 13
    assert report.exception == {"type": "ValueError", "message": "bad batch", "file": "raises.py", "line": 11}
    assert "ValueError" in report.text() and "line 11" in report.text()
    assert report.to_dict()["exception"]["line"] == 11
    assert hooks_installed() == []


def test_exit_status_and_arguments_pass_through(tmp_path, capsys):
    p = write(tmp_path, "argv.py", "import sys\nprint('args', sys.argv[1:], __name__)\nsys.exit(3)\n")
    report = run(p, "--lr", "0.1")
    assert report.status == 3 and report.steps == 0 and report.findings == []
    assert "args ['--lr', '0.1'] __main__" in capsys.readouterr().out
    assert sys.argv[0] != str(p)


def test_a_script_that_does_not_train(tmp_path):
    p = write(tmp_path, "notrain.py", "import torch\nx = torch.randn(100, 3)\nprint((x @ x.T).trace().item())\n")
    report = run(p)
    assert report.steps == 0 and report.findings == [] and report.status == 0
    assert report.summary.startswith("no finding") and "No optimizer step" in report.text()


MIXED = """
import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, n):
        super().__init__()
        self.fc = nn.Linear(n, n)
        self.norm = nn.LayerNorm(n)

    def forward(self, x):
        return x + F.gelu(self.norm(self.fc(x)))


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Linear(6, 32), nn.ReLU())
        self.blocks = nn.ModuleList([Block(32), Block(32)])
        self.w = nn.Parameter(torch.randn(32, 3) / 32**0.5)

    def forward(self, x):
        h = self.stem(x)
        for b in self.blocks:
            h = b(h)
        return torch.tanh(h) @ self.w  # a functional head on a raw parameter


torch.manual_seed(0)
x = torch.randn(600, 6)
y = (x[:, :3] - x[:, 3:]).argmax(1)
model = Net()
opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=120)
for step in range(120):
    idx = torch.randperm(600)[:50]
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(model(x[idx]), TARGET)
    loss.backward()
    opt.step()
    sched.step()
"""


def test_sequential_custom_modules_and_functional_calls(tmp_path):
    healthy = run(write(tmp_path, "mixed.py", MIXED.replace("TARGET", "y[idx]")))
    assert healthy.findings == [] and healthy.steps == 120, healthy.text()
    sites = set(healthy.record["activations"]["site"])
    assert any("stem" in s and s.startswith("relu") for s in sites), sites  # named after the module it ran in
    assert any(s.startswith("tanh") for s in sites)
    # the same network fed shuffled labels: the classifier stays at chance
    noisy = run(write(tmp_path, "mixed_noise.py", MIXED.replace("TARGET", "y[torch.randperm(600)[:50]]")))
    assert "loss-at-chance" in keys(noisy), noisy.text()


def test_the_broadcast_warning_and_finding_name_the_scripts_line():
    """torch's own "Using a target size ..." warning, shown once at the script's line as without
    the examiner (not at the examiner's), and the finding names the same line."""
    path = CORPUS / "bug_loss-shape-broadcast.py"
    line = next(i for i, t in enumerate(path.read_text().splitlines(), 1) if "F.mse_loss(" in t)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # once per line, as Python shows them
        report = run(path)
    shown = [(w.filename, w.lineno) for w in caught if "Using a target size" in str(w.message)]
    assert shown == [(str(path), line)], shown
    found = next(f for f in report.findings if f.key == "loss-shape-broadcast")
    assert f"bug_loss-shape-broadcast.py, line {line}" in found.evidence


def test_a_dataloader_script_is_seen_batch_by_batch():
    text = (CORPUS / "bug_unshuffled-data.py").read_text()
    assert "DataLoader(" in text
    report = run(CORPUS / "bug_unshuffled-data.py")
    assert report.steps == 5 * 800 // 50
    assert report.record["loss_calls"][0]["input"] == [50, 4] and report.record["loss_calls"][0]["target"] == [50]


def test_mixed_precision_the_scaled_loss_and_skipped_steps(tmp_path):
    """autocast + GradScaler: the loss backpropagated is loss × 2^127 (inf at first: the scaler
    skips those steps); the record keeps the script's own loss, no step is taken for a skipped one,
    and the classification loss is still recognised as such (at chance when the labels are noise)."""
    path = CORPUS / "healthy" / "amp_bf16_scaler.py"
    report = run(path)
    assert report.findings == [] and report.steps == 150 - 3, report.text()
    loss = report.record["series"]["loss"]
    assert loss[0] > 5 and loss[-1] < 0.1, loss[:3]  # the unscaled loss: ~20 at first, then learned
    noise = path.read_text().replace("y[idx])", "y[torch.randperm(2000)[:64]])")  # labels that say nothing
    assert noise.count("randperm") == 2
    report = run(write(tmp_path, "amp_noise.py", noise))
    assert "loss-at-chance" in keys(report) and "diverged" not in keys(report), report.text()


# --- manners: the hooks come off, other threads are not seen, the notebook form works


def test_hooks_removed_after_examining_and_after_an_exception():
    assert hooks_installed() == []
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(RuntimeError, match="boom"), examine():
        assert hooks_installed()  # installed inside
        opt.zero_grad()
        model(torch.randn(4, 2)).sum().backward()
        opt.step()
        raise RuntimeError("boom")
    assert hooks_installed() == []
    with examine(max_steps=1) as e:  # StopRun is caught by the examiner itself
        for _ in range(5):
            opt.zero_grad()
            model(torch.randn(4, 2)).pow(2).mean().backward()
            opt.step()
    assert e.stopped and e.report().steps == 1
    assert hooks_installed() == []
    assert issubclass(StopRun, BaseException) and not issubclass(StopRun, Exception)


def test_other_threads_training_meanwhile_are_not_seen():
    done = threading.Event()

    def train_elsewhere():
        model = torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU(), torch.nn.Linear(8, 1))
        opt = torch.optim.SGD(model.parameters(), lr=0.1)
        while not done.is_set():
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(torch.randn(16, 3)), torch.randn(16)).backward()  # a broadcast
            opt.step()

    other = threading.Thread(target=train_elsewhere)
    other.start()
    try:
        with examine() as e:
            x = torch.randn(200, 200)
            for _ in range(50):
                x = torch.tanh(x @ x.T / 200)
    finally:
        done.set()
        other.join()
    report = e.report()
    assert report.steps == 0 and report.findings == []
    assert hooks_installed() == []


def test_the_notebook_form_and_the_json_report():
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.Tanh(), torch.nn.Linear(16, 1))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 4, generator=g), torch.randn(256, 1, generator=g)
    with examine() as e:
        for _ in range(30):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y, reduction="sum").backward()
            opt.step()
    report = e.report()
    assert keys(report) == {"sum-reduction"}
    assert "[sum-reduction]" in repr(report) and "256" in report.findings[0].evidence
    d = json.loads(json.dumps(report.to_dict()))
    assert set(d) == {"script", "seconds", "steps", "findings", "summary"}
    assert set(d["findings"][0]) == {"key", "title", "evidence", "fix", "step"}
    assert d["steps"] == 30 and d["summary"] == "1 finding: sum-reduction"


def _tiny_run(steps=40, *, order=("zero", "backward", "step"), detach_first=False, set_to_none=True, opt_cls=None):
    """A small regression trained in the notebook form; `order`: the loop's three calls."""
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(256, 4, generator=g), torch.randn(256, 1, generator=g)
    model = torch.nn.Sequential(torch.nn.Linear(4, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    opt = (opt_cls or torch.optim.SGD)(model.parameters(), lr=0.01)
    with examine() as e:
        for _ in range(steps):
            h = model[:2](x)
            h = h.detach() if detach_first else h
            loss = torch.nn.functional.mse_loss(model[2](h), y)
            calls = {"zero": lambda: opt.zero_grad(set_to_none=set_to_none), "backward": loss.backward}
            for call in order:
                calls.get(call, opt.step)()
    return e.report()


def test_no_gradient_says_which_parameters_and_a_late_zero_grad():
    """The no-gradient finding names the parameters left without a gradient (a detached backbone: the first
    layer's) and, when zero_grad() runs between backward and step, says so and gives the order as the fix."""
    assert _tiny_run().findings == []
    (f,) = _tiny_run(detach_first=True).findings
    assert f.key == "no-gradient" and "0.weight, 0.bias" in f.evidence and "2.weight" not in f.evidence
    for set_to_none in (True, False):  # cleared to None, or to zeros
        (f,) = _tiny_run(order=("backward", "zero", "step"), set_to_none=set_to_none).findings
        assert f.key == "no-gradient" and "zero_grad() ran after loss.backward()" in f.evidence, f.evidence
        assert f.fix.startswith("optimizer.zero_grad(); loss.backward(); optimizer.step()")
    assert _tiny_run(order=("backward", "step", "zero")).findings == []  # zeroed after the step: fine


def test_a_fix_that_changes_the_optimizer_names_the_scripts_own():
    from types import SimpleNamespace

    from core.examine.checks_training import optimizer

    assert optimizer(SimpleNamespace(optimizer_kinds=["Adam", "SGD"])) == "Adam"
    assert optimizer(SimpleNamespace(optimizer_kinds=["MyOwnOptimizer"])) == "SGD"  # not torch.optim's: SGD
    assert optimizer(SimpleNamespace(optimizer_kinds=[])) == "SGD"


def _sampled_steps(pause: float) -> list[int]:
    """The steps the examiner sampled in 60 steps of a tiny model, each step lasting `pause` more."""
    import time

    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1e-2)
    x, y = torch.randn(32, 4), torch.randn(32, 1)
    with examine() as e:
        for _ in range(60):
            opt.zero_grad()
            torch.nn.functional.mse_loss(model(x), y).backward()
            opt.step()
            time.sleep(pause)
    return sorted({c["step"] for c in e.monitor.grad_checks})


def test_a_quick_script_is_sampled_more_thinly(monkeypatch):
    """A sampled step costs about a millisecond: in a script whose steps take less (steps 2-5 under
    watch.QUICK_STEP), steps 6-100 are sampled every 20th, not every 10th; slower scripts keep every 10th.
    The threshold is set around the script so that the machine's load cannot move it across."""
    from core.examine import watch

    monkeypatch.setattr(watch, "QUICK_STEP", 10.0)  # every script is quick
    assert _sampled_steps(0.0) == [1, 2, 3, 4, 5, 20, 40, 60]
    monkeypatch.setattr(watch, "QUICK_STEP", 0.0)  # none is
    assert _sampled_steps(0.0) == [1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 60]
    monkeypatch.undo()  # the real threshold: a script whose steps last twice as long (load only adds) is not quick
    assert _sampled_steps(2 * watch.QUICK_STEP) == [1, 2, 3, 4, 5, 10, 20, 30, 40, 50, 60]
    assert [s for s in range(1, 1001) if watch.sampled(s, quick=True)][5:11] == [20, 40, 60, 80, 100, 125]
    assert sum(watch.sampled(s) for s in range(1, 1001)) == 5 + 10 + 36


# --- the command


def cli(*args, cwd=ROOT):
    return subprocess.run(
        [sys.executable, "-m", "core", "examine", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_command_json_last_line_record_and_status(tmp_path):
    p = write(tmp_path, "long.py", LONG + "\n")
    out = tmp_path / "runs"
    r = cli(str(p), "--json", "--steps", "25", "--out", str(out), "--", "--epochs", "3")
    assert r.returncode == 0, r.stderr
    last = json.loads(r.stdout.strip().splitlines()[-1])
    assert last["steps"] == 25 and last["findings"] == [] and last["script"] == "long.py"
    assert "Traceback" not in r.stderr
    record = json.loads((out / "long.examine.json").read_text())
    assert record["format"] == "convergence-clinic/examine-record" and len(record["series"]["loss"]) == 25
    assert record["layers"]["layer"][:2] == ["weight", "bias"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.py"], "no such file"),
        ([".", "--json"], "not a file"),
        (["README.md", "--steps", "0"], "--steps"),
        (["README.md", "--steps", "many"], "--steps"),
        (["README.md", "--out", "README.md"], "not a folder"),
    ],
)
def test_command_bad_input_is_one_line_and_status_2(args, message):
    r = cli(*args)
    assert r.returncode == 2 and message in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "Traceback" not in r.stderr and r.stdout == ""


def test_a_syntax_error_is_bad_input(tmp_path):
    with pytest.raises(script.ScriptError, match="line 2"):
        script.load(write(tmp_path, "bad.py", "x = 1\ndef (:\n"))
    big = tmp_path / "big.py"
    big.write_text("#" * (script.MAX_BYTES + 1))
    with pytest.raises(script.ScriptError, match="bytes"):
        script.load(big)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")
def test_on_the_gpu(tmp_path):
    text = (CORPUS / "bug_input-scale.py").read_text()
    text = text.replace("model = nn.Sequential(", "dev = 'cuda'\nmodel = nn.Sequential(").replace(
        "nn.Linear(32, 2))", "nn.Linear(32, 2)).to(dev)\nx, y = x.to(dev), y.to(dev)"
    )
    report = run(write(tmp_path, "gpu.py", text))
    assert "input-scale" in keys(report) and report.steps == 150
    assert hooks_installed() == []


@pytest.mark.parametrize("path", sorted((CORPUS / "healthy").glob("*.py")), ids=lambda p: p.stem)
def test_healthy_scripts_get_no_finding(path):
    """Batch norm, GRUs, clipping, schedules with warm-up and cosine decay, soft labels, BCEWithLogits,
    a confident sigmoid into BCELoss, two optimizers in one script: none of it is a finding."""
    report = run(path)
    assert report.steps > 0 and report.findings == [], report.text()


# --- the run record and the page


def small_record(tmp_path) -> dict:
    report = run(CORPUS / "bug_saturated-activation.py")
    out = script.write_record(report, tmp_path)
    return json.loads(out.read_text())


def test_a_record_opens_and_draws(tmp_path):
    from core.charts import examine as charts
    from core.examine import record

    rec = record.parse(json.dumps(small_record(tmp_path)).encode())
    assert rec["findings"][0]["key"] == "saturated-activation" and len(rec["series"]["loss"]) == 150
    for name, chart in charts.figures(rec).items():
        spec = chart.to_dict()
        assert spec["data"] or spec.get("datasets"), name
    acts = charts.activation_chart(rec).to_dict()
    assert any("tanh" in row["layer"] for rows in acts["datasets"].values() for row in rows)
    # the pages' log axes (issue 14, item 8): fixed ticks, one number format, no grey bands of gridlines
    from tests.test_charts import log_axes

    axes = [a for chart in charts.figures(rec).values() for a in log_axes(chart.to_dict())]
    assert len(axes) >= 3  # loss, gradient norms, update ratios
    for a in axes:
        assert a["axis"].get("values") and ("format" in a["axis"]) != ("labelExpr" in a["axis"]), a


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x80\x04\x95pickle", "not UTF-8"),
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "not a run record"),
        (b'{"format": "convergence-clinic/examine-record", "version": 7}', "version"),
        (b" " * 1_000_001, "bytes"),
    ],
)
def test_a_bad_record_is_one_message(data, message):
    from core.examine import record

    with pytest.raises(record.RecordError, match=message):
        record.parse(data)


def test_a_record_with_bad_columns_is_one_message(tmp_path):
    from core.examine import record

    rec = small_record(tmp_path)
    rec["series"]["loss"] = rec["series"]["loss"][:-1]
    with pytest.raises(record.RecordError, match="differ in length"):
        record.parse(json.dumps(rec).encode())
    rec = small_record(tmp_path)
    rec["layers"]["grad_norm"][0] = "1e9"
    with pytest.raises(record.RecordError, match="not a number"):
        record.parse(json.dumps(rec).encode())


def test_the_runs_folder_offers_only_its_own_json_files(tmp_path):
    from core.examine import record

    runs = tmp_path / "runs"
    (runs / "sub").mkdir(parents=True)
    rec = small_record(tmp_path)
    (runs / "mine.json").write_text(json.dumps(rec))
    (runs / "sub" / "deeper.json").write_text(json.dumps(rec))
    (runs / "notes.txt").write_text("hi")
    (tmp_path / "outside.json").write_text(json.dumps(rec))
    (runs / "link.json").symlink_to(tmp_path / "outside.json")
    assert record.listing(runs) == ["mine.json"]
    assert record.read_from("mine.json", runs)["script"] == "bug_saturated-activation.py"
    for name in ("../outside.json", "link.json", "sub/deeper.json", "/etc/passwd"):
        with pytest.raises(record.RecordError):
            record.read_from(name, runs)


def test_the_page_examines_a_case_script_on_the_button(monkeypatch):
    from streamlit.testing.v1 import AppTest

    monkeypatch.setenv("CLINIC_OFFLINE", "1")
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=120)
    at.switch_page("pages/5_Your_run.py").run()
    assert not at.exception
    at.selectbox(key="yourrun_case").set_value("poly").run()
    at.button(key="yourrun_demo").click().run()
    assert not at.exception
    text = " ".join(m.value for m in at.markdown)
    assert "ill\\-conditioned" in text and "κ" in text
    assert at.subheader[0].value.startswith("poly_as_posted.py: 300 optimizer steps")
    assert hooks_installed() == []


def test_the_record_holds_update_ratios_and_input_statistics(tmp_path):
    rec = small_record(tmp_path)
    ratios = [v for v in rec["layers"]["update_ratio"] if v is not None]
    assert len(ratios) == len(rec["layers"]["step"]) and all(0 < v < 1 for v in ratios)
    assert rec["inputs"]["rms"] and rec["loss_calls"] == []  # its loss is written by hand


def test_home_and_navigation_link_the_page():
    from streamlit.testing.v1 import AppTest

    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=60).run()
    assert not at.exception
    assert [link.proto.page for link in at.get("page_link")].count("Your_run") == 2  # the sidebar and the card
