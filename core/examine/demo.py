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
    "linreg": {"mode": "single", "shuffle": "false", "epochs": 5},
}
PRESET = {"cifar": "x255"}  # the CIFAR page's failure is the ×255 one; its as-posted run trains


def demo_script(name: str) -> str:
    """The case's exported script, as `python -m core script CASE --preset ... --set ...` writes it."""
    case = registry.get(name)
    config = case.configure(PRESET.get(name, "as-posted"), {k: str(v) for k, v in BUDGET[name].items()})
    return export.script(case, config)


def examine_case(name: str) -> dict:
    """Run the case's exported script under the examiner -> its run record."""
    from core.examine import script

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"{name}_{PRESET.get(name, 'as-posted').replace('-', '_')}.py"
        path.write_text(demo_script(name))
        report = script.run(path, [], own_process_state=False, quiet_traceback=True)
    return report.record
