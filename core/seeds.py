"""A failure that depends on the seed: how a case words its seed set's spread (`Case.spread`), and the
summary of one metric over the seeds (median, range, how many seeds fail). No Streamlit here: the page's
panel is core/ui/seeds.py."""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Spread:
    """One metric over a small seed set, and when a seed is said to fail: its metric above `threshold`
    (a metric that is not a number, a diverged run, fails too)."""

    metric: str  # the metric's key in the run's metrics, e.g. "rmse_vs_truth"
    label: str  # how the page names it, e.g. "RMSE"
    threshold: float  # above this a seed fails (chosen from measured seeds: the case's config says where)
    failed: str  # a failed seed, in the page's words: "stay stuck"
    applies: Callable[[Any], bool] = lambda config: True  # False: the config has no such metric (your own points)
    seeds: tuple[int, ...] = (0, 1, 2, 3, 4)


@dataclass(frozen=True)
class Summary:
    median: float
    lo: float
    hi: float
    failed: tuple[int, ...]  # the seeds that fail, in order
    n: int  # the seeds summarised


def fails(spread: Spread, value: float) -> bool:
    return not value <= spread.threshold  # NaN and inf fail


def summarize(spread: Spread, values: Mapping[int, float]) -> Summary:
    """Median and range of the metric over the seeds (`values`: seed -> metric; NaN counts as inf),
    and the seeds that fail."""
    if not values:
        raise ValueError("no seeds to summarise")
    v = [math.inf if math.isnan(x) else float(x) for x in values.values()]
    failed = tuple(s for s, x in values.items() if fails(spread, x))
    return Summary(statistics.median(v), min(v), max(v), failed, len(v))


def seeds_text(seeds: tuple[int, ...]) -> str:
    """0–4 for a run of consecutive seeds, else 0, 3, 7."""
    consecutive = list(seeds) == list(range(seeds[0], seeds[0] + len(seeds)))
    return f"{seeds[0]}–{seeds[-1]}" if consecutive and len(seeds) > 2 else ", ".join(map(str, seeds))
