"""From the measurements to findings: one check per key, each with its evidence in numbers.

Every threshold is a property of training in general, not of a test script: a share of
units ("most": half or more), a ratio against what a healthy run gives (a shuffled batch's
target spread equals the whole's; a classifier that learned anything is below ln K), or a
scale (a loss 1e3× its start, an lr 1e-6× its peak). A check that lacks the numbers to
judge says nothing.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

KEYS = (
    "loss-shape-broadcast",
    "missing-zero-grad",
    "probabilities-into-logits-loss",
    "lr-collapsed",
    "no-gradient",
    "parameters-not-updated",
    "batchnorm-batch-one",
    "diverged",
    "unshuffled-data",
    "dead-relu",
    "saturated-activation",
    "output-range-mismatch",
    "input-scale",
    "sum-reduction",
    "ill-conditioned",
    "loss-at-chance",
)

DEAD_SHARE = 0.5  # "most units of a ReLU layer never fire"
SATURATED_SHARE = 0.5  # most outputs of a tanh / sigmoid in its flat tails
LEARNED = 0.1  # a run whose loss fell to a tenth of its start is learning
OUTSIDE_SHARE = 0.05  # targets out of the output activation's reach
INPUT_RMS = 10.0  # 100× the second moment of standardized inputs
SPREAD_RATIO = 0.25  # within-batch target spread / the whole's; about 1 when shuffled
KAPPA = 1e4  # ≥ 5,000 steps per e-fold of the flattest direction at the largest stable lr
EXPLODED = 1e3  # loss ≥ 1e3 × its start
COLLAPSED = 1e-6  # lr < 1e-6 × its peak ...
COLLAPSED_SHARE = 0.1  # ... for a tenth of the run or more
CHANCE_BAND = 0.1  # loss within ±10% of ln K over the last half of the run
STILL_FALLING = 0.03  # ... and not still falling: the last quarter's median 3% of ln K under the late half's first half


@dataclass(frozen=True)
class Finding:
    key: str
    title: str
    evidence: str  # measured, in words and numbers
    fix: str  # the one-line code change
    step: int  # the optimizer step it was first seen at (1-based)

    def to_dict(self) -> dict:
        return asdict(self)


def g(v: float) -> str:
    return f"{v:.3g}"


def diagnose(m, losses: list[tuple[int, float]]) -> list[Finding]:
    """The Monitor's numbers after the run (m) and the per-step losses -> the findings, by step."""
    from core.examine import checks_data as d
    from core.examine import checks_training as t

    checks = (
        d.broadcast,
        t.missing_zero_grad,
        d.probabilities,
        t.lr_collapsed,
        t.no_gradient,
        t.not_updated,
        d.batchnorm_one,
        t.diverged,
        d.unshuffled,
        d.dead_relu,
        d.saturated,
        d.output_range,
        d.input_scale,
        d.sum_reduction,
        t.ill_conditioned,
        t.at_chance,
    )
    found = [check(m, losses) for check in checks]
    out = [f for f in found if f is not None]
    return sorted(out, key=lambda f: (f.step, KEYS.index(f.key)))
