"""The examiner: run any PyTorch training code under the clinic's measurements.

    from core.examine import examine
    with examine() as e:
        train()
    e.report()

`python -m core examine SCRIPT.py [--json] [--out DIR] [--steps N] [-- ARGS...]` runs a
script the same way (core/examine/script.py). The finding keys: `findings.KEYS`.

torch is imported on first use of these names, so that the command answers bad input
(a missing script, a bad --out) at once.
"""

_EXPORTS = {
    "examine": "hooks",
    "Examiner": "hooks",
    "StopRun": "hooks",
    "KEYS": "findings",
    "Finding": "findings",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'core.examine' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(f"core.examine.{_EXPORTS[name]}"), name)
