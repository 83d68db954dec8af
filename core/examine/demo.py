"""The page's demo: one of the app's own exported standalone scripts (a case's as-posted
settings, on a budget of seconds) run under the examiner, in the server's process.

Torch's hooks are process-global, so examinations take turns (`hooks.LOCK`), and every hook
ignores the other threads, where other sessions train meanwhile. The script runs in a
namespace of its own: the process's sys.argv, sys.path and __main__ are left alone.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from core import export, registry

# the as-posted settings on a smaller budget, so that the symptom shows in seconds
BUDGET = {
    "sine": {"steps": 300, "n_points": 1000},
    "cifar": {"dataset": "synthetic", "train_size": 2000, "test_size": 500, "epochs": 4},
    "poly": {"epochs": 300},
    "linreg": {"shuffle": "false", "epochs": 5, "batch_sizes_to": 10, "batch_sizes_count": 1},  # one run, B = 10
}
PRESET = {"cifar": "x255"}  # the CIFAR page's failure is the ×255 one; its as-posted run trains


def demo_script(name: str, preset: str | None = None) -> str:
    """The case's exported script on the demo's budget, as `python -m core script CASE --preset ...
    --set ...` writes it: its failing preset by default, or `preset` (e.g. "fixed", shuffled)."""
    case = registry.get(name)
    sets = dict(BUDGET[name])
    if preset is not None and name == "linreg":
        sets["shuffle"] = "true"
    config = case.configure(preset or PRESET.get(name, "as-posted"), {k: str(v) for k, v in sets.items()})
    return export.script(case, config)


def small_stand_in(text: str, train: int = 2000, test: int = 500) -> str:
    """The CIFAR script with its offline stand-in drawn at `train` + `test` images instead of
    60,000 (the budget uses only that many): for the tests and the benchmark, where seconds count."""
    for full, small in (("50_000, 2020", f"{train}, 2020"), ("10_000, 2021", f"{test}, 2021")):
        if f"synthetic_images({full})" not in text:
            raise ValueError("the CIFAR script no longer draws its stand-in as expected")
        text = text.replace(f"synthetic_images({full})", f"synthetic_images({small})")
    return text


def examine_case(name: str) -> dict:
    """Run the case's exported script under the examiner -> its run record."""
    from core.examine import script

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}_{PRESET.get(name, 'as-posted').replace('-', '_')}.py"
        path.write_text(demo_script(name))
        report = script.run(path, [], own_process_state=False, quiet_traceback=True)
    return report.record
