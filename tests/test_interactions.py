"""The interaction benchmark's harness (bench/interactions.py): its statistics, and one real pass
over a page in Chromium, which must find every standard interaction (a renamed widget key would
otherwise drop an interaction from the table without a word)."""

import numpy as np
import pytest

from bench import interactions
from core import registry


def test_percentile_matches_numpy():
    rng = np.random.default_rng(0)
    for n in (1, 2, 5, 7, 20):
        xs = list(rng.exponential(size=n))
        for q in (50, 95):
            assert interactions.percentile(xs, q) == pytest.approx(np.percentile(xs, q))


def test_table_flags_a_missed_target_and_gives_the_training_ratio():
    ts = [interactions.Timing("poly", "open (cold)", 0.2, 3.0 + i, 1.0, "run") for i in range(5)]
    ts += [interactions.Timing("poly", "pin", 0.1, 0.2, None, "cached") for _ in range(5)]
    text = interactions.table(ts)
    cold = next(line for line in text.splitlines() if "open (cold)" in line)
    pin = next(line for line in text.splitlines() if "| pin |" in line)
    assert cold.endswith("| no |") and "| 5.00 |" in cold  # p50 of 3..7 over a 1 s training
    assert pin.endswith("| yes |")


@pytest.mark.browser
def test_one_pass_over_a_page_finds_every_standard_interaction():
    from tests.test_browser import CHROMIUM, _require

    _require(CHROMIUM is not None, "no chromium on PATH")
    timings, _ = interactions.measure(["poly"], repeat=1, log=lambda line: None)
    actions = [t.action for t in timings]
    case = registry.get("poly")
    expected = ["open (cold)", "open (cached)", "diagnosis fix", "lr one notch", "pin", "export panel", "range test"]
    expected += [f"preset {p} (uncached)" for p in case.presets if p != "as-posted"]
    assert set(expected) <= set(actions), set(expected) - set(actions)
    for t in timings:
        assert t.final_s >= 0 and (t.first_s is None or 0 <= t.first_s <= t.final_s + 1e-3), t
    assert all(t.train_s and t.train_s > 0 for t in timings if t.action.endswith("(uncached)"))
