"""The examiner: run any PyTorch training code under the clinic's measurements.

    from core.examine import examine
    with examine() as e:
        train()
    e.report()

`python -m core examine SCRIPT.py [--json] [--out DIR] [--steps N] [-- ARGS...]` runs a
script the same way (core/examine/script.py). The finding keys: `findings.KEYS`.
"""

from core.examine.findings import KEYS, Finding
from core.examine.hooks import Examiner, StopRun, examine

__all__ = ["KEYS", "Examiner", "Finding", "StopRun", "examine"]
