"""Compare, share, export on the pages (AppTest): pinned runs, settings in the URL, downloads."""

import json
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import registry

ROOT = Path(__file__).resolve().parents[1]
SINE = registry.get("sine")


def page(case_name="sine", query=None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.switch_page(registry.get(case_name).page)
    if query:
        at.query_params.update(query)
    return at.run()


def series(at: AppTest) -> set[str]:
    """Every run named in any chart's colour legend."""
    names: set[str] = set()

    def walk(node):
        if isinstance(node, dict):
            color = node.get("color")
            if isinstance(color, dict) and isinstance(color.get("scale"), dict):
                names.update(color["scale"].get("domain", []))
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    for chart in at.get("vega_lite_chart"):
        walk(json.loads(chart.proto.spec))
    return names


def caption_text(at: AppTest) -> str:
    return " ".join(c.value for c in at.caption)


def test_a_link_with_a_preset_and_settings_reproduces_the_view():
    at = page(query={"preset": "fixed", "seed": "2", "steps": "300"})
    assert not at.exception and not at.error
    assert at.number_input(key="sine.seed").value == 2
    assert at.radio(key="sine.optimizer").value == "adam"
    # the URL now says what is on screen: settings that differ from as-posted
    assert at.query_params["seed"] == "2" and at.query_params["optimizer"] == "adam"


def test_invalid_or_stale_values_in_a_link_fall_back_with_a_notice():
    at = page(query={"preset": "nope", "lr": "abc", "hidden": "0", "colour": "blue", "seed": "3"})
    assert not at.exception and not at.error
    notices = " ".join(w.value for w in at.warning)
    assert "preset='nope'" in notices and "lr: expected a number" in notices
    assert "hidden: each width must be >= 1" in notices and "colour" in notices
    assert at.text_input(key="sine.lr").value == "4e-07"  # as-posted's value
    assert at.number_input(key="sine.seed").value == 3  # the valid part is kept
    at.run()
    assert not at.warning  # once


def test_a_preset_link_is_just_the_preset():
    at = page(query={"preset": "answer"})
    assert "Settings: **answer**" in caption_text(at)
    assert at.query_params == {"preset": "answer"}


def test_pinned_runs_stay_on_the_charts_across_settings_and_pages():
    at = page(query={"preset": "fixed", "steps": "200"})
    at.button(key="sine._pin").click().run()
    at.number_input(key="sine.seed").set_value(1).run()
    assert not at.exception
    assert "pin 1" in series(at)
    assert any("seed = 0" in m.value for m in at.markdown)  # what differs from the current run
    at.switch_page("app.py").run()
    at.switch_page(SINE.page).run()
    assert "pin 1" in series(at)
    at.button(key="sine._unpin.1").click().run()
    assert "pin 1" not in series(at)


def test_downloads_are_offered():
    at = page(query={"preset": "fixed", "steps": "100"})
    labels = [b.proto.label for b in at.get("download_button")]
    assert labels == [
        "History (CSV)",
        "Run record (JSON)",
        "Standalone script (.py)",
        "PNG",
        "SVG",
        "All figures (zip)",
    ]


def test_the_learning_rate_range_test_suggests_and_applies_a_rate():
    at = page(query={"preset": "as-posted"})
    at.button(key="sine._lr_find_go").click().run()
    assert not at.exception
    titles = [json.loads(c.proto.spec).get("title", {}).get("text") for c in at.get("vega_lite_chart")]
    assert "Learning-rate range test" in titles
    use = at.button(key="sine._lr_use")
    suggested = float(use.proto.label.removeprefix("Use lr = "))
    assert 4e-7 < suggested < 1e-3  # above the posted crawl, below where sum-loss GD explodes
    use.click().run()
    assert float(at.text_input(key="sine.lr").value) == pytest.approx(suggested, rel=1e-2)
