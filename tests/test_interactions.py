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


def test_a_run_target_is_judged_on_the_current_runs_charts_not_on_what_trains_after():
    """Issue 17: the comparison and the seed set train after the current run's charts and must not
    delay them; the final (idle) time is shown beside, not judged."""
    ts = [interactions.Timing("sine", "open (cold)", 0.2, 30.0, 1.0, "run", current_s=1.5) for _ in range(5)]
    ts += [interactions.Timing("sine", "fix", 0.2, 30.0, 1.0, "run", current_s=2.5) for _ in range(5)]
    lines = interactions.table(ts).splitlines()
    cold, fix = next(x for x in lines if "open (cold)" in x), next(x for x in lines if "| fix |" in x)
    assert "| 1.50 / 1.50 | 30.00 / 30.00 | 1.50 |" in cold and cold.endswith("| yes |")
    assert fix.endswith("| no |")


@pytest.mark.browser
def test_one_pass_over_a_page_finds_every_standard_interaction():
    from tests.test_browser import CHROMIUM, _require

    _require(CHROMIUM is not None, "no chromium on PATH")
    timings, _ = interactions.measure(["poly"], repeat=1, log=lambda line: None)
    actions = [t.action for t in timings]
    case = registry.get("poly")
    expected = ["open (cold)", "open (cached)", "revisit (sidebar)", "diagnosis fix", "lr one notch", "pin"]
    expected += ["export panel", "range test", "open (first load)", "open (reload)"]  # the last two: the home page
    expected += [f"preset {p} (uncached)" for p in case.presets if p != "as-posted"]
    assert set(expected) <= set(actions), (set(expected) - set(actions), timings)
    assert {t.page for t in timings} == {"home", "poly"}
    for t in timings:
        assert t.final_s >= 0 and (t.first_s is None or 0 <= t.first_s <= t.final_s + 1e-3), t
    assert all(t.train_s and t.train_s > 0 for t in timings if t.action.endswith("(uncached)"))
    # a first view trains its seed set after the current run's charts; its bar marks the current run drawn,
    # unless those runs are so short that the bar never reaches the browser (then drawn = final)
    cold = next(t for t in timings if t.action == "open (cold)")
    assert cold.current_s is None or 0 < cold.current_s <= cold.final_s + 1e-3, cold
    assert all(t.drawn_s <= t.final_s + 1e-3 for t in timings)


def test_a_rewritten_section_keeps_its_hand_written_notes_and_no_other_section_changes():
    from bench import NOTES, replace_section

    notes = f"{NOTES[0]}\nStill missed: the revisits.\n{NOTES[1]}"
    text = "# Benchmarks\n\n## Latency\n\nold run\n\n" + notes + "\n\n| a |\n| 1 |\n\n## Other\n\nkept\n"
    new = replace_section(text, "## Latency", "## Latency\n\nnew run\n\n| a |\n| 2 |")
    assert new == "# Benchmarks\n\n## Latency\n\nnew run\n\n" + notes + "\n\n| a |\n| 2 |\n\n## Other\n\nkept\n"
    assert replace_section(new, "## Latency", "## Latency\n\nnewer") == (
        "# Benchmarks\n\n## Latency\n\nnewer\n\n" + notes + "\n\n## Other\n\nkept\n"
    )  # no table: at the end
    without = text.replace(notes + "\n\n", "")
    assert (
        replace_section(without, "## Latency", "## Latency\n\nx")
        == "# Benchmarks\n\n## Latency\n\nx\n\n## Other\n\nkept\n"
    )
    assert replace_section("# B\n", "## New", "## New\n\ny") == "# B\n\n## New\n\ny\n"
