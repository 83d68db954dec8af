"""Every page through Streamlit's AppTest: defaults and each preset, no exception, the
expected charts present; bad input is an st.error, never a traceback."""

import json
import re
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import registry, runner

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300

# charts each page draws with its defaults, by title (a growing list as pages gain charts)
CHARTS = {
    "sine": [
        "The fit to sin(x)/2.5",
        "Training MSE per step",
        "Sharpness and the stability line",
        "Where first-layer units switch",
        "Saturated hidden activations",
        "Output pre-activation z",
    ],
    "cifar": [
        "Training loss per step",
        "Test accuracy per epoch",
        "Sharpness and the stability line",
        "Gradient norm per layer",
        "Update / weight ratio per layer",
        "Dead ReLUs over training",
        "Test images: label, prediction",
        "Layer 1's first-step move: ~s²",
    ],
    "poly": [
        "The polynomial fit to sin(x)",
        "Loss; dashed: the optimum",
        "Sharpness and the stability line",
        "Learning-rate scan",
        "Hessian eigenvalues",
        "Coefficients, raw power basis",
    ],
    "linreg": [
        "Final slope",
        "Final intercept",
        "Final loss (the last batch)",
        "Optimizer steps per batch size",
        "Data, last batch, fitted line",
        "One run: loss per step",
        "Sharpness and the stability line",
        "The loss averages all 10 × 10",
        "The differences meant",
    ],
}


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch, tmp_path):
    """No test touches the network: the CIFAR page finds no CIFAR-10 in an empty cache folder
    and may not download it, so it switches to the synthetic stand-in (and says so)."""
    monkeypatch.setenv("CLINIC_DATA_DIR", str(tmp_path / "no-cifar"))
    monkeypatch.setenv("CLINIC_OFFLINE", "1")


def open_page(case_name: str | None = None) -> AppTest:
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=TIMEOUT)
    if case_name is not None:
        at.switch_page(registry.get(case_name).page)
    return at.run()


def chart_titles(at: AppTest) -> list[str]:
    titles = []
    for chart in at.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        title = spec.get("title", {})
        titles.append(title.get("text") if isinstance(title, dict) else title)
    return titles


def assert_clean(at: AppTest):
    assert not at.exception, [e.value for e in at.exception]
    assert not at.error, [e.value for e in at.error]


def test_home_lists_every_case_with_a_link_and_a_device_badge():
    at = open_page()
    assert_clean(at)
    links = [link.proto.page for link in at.get("page_link")]  # URL path names
    for case in registry.CASES.values():
        url_name = re.sub(r"^\d+_", "", Path(case.page).stem)
        assert links.count(url_name) == 2  # sidebar navigation and the case card
    captions = " ".join(c.value for c in at.caption)
    assert "torch" in captions and "CPU threads" in captions
    for case in registry.CASES.values():
        assert case.symptom in captions


def test_the_home_page_warms_up_the_first_runs_import_once(monkeypatch):
    """The home page starts one background import of torch._dynamo per server process (torch.optim's
    first step imports it, ~1 s): started by the page, once, however many visits follow."""
    import sys
    import threading

    from core import ui

    started = []

    class Recording(threading.Thread):
        def start(self):
            started.append(self)
            super().start()

    monkeypatch.setattr(threading, "Thread", Recording)
    ui.warm_up.clear()  # as in a fresh server process
    open_page()
    open_page("poly")
    open_page()
    warm = [t for t in started if t.name == "warm-up"]
    assert len(warm) == 1 and warm[0].daemon and ui.warm_up() is warm[0]
    warm[0].join(timeout=60)
    assert not warm[0].is_alive() and "torch._dynamo" in sys.modules


@pytest.mark.parametrize("case_name", list(registry.CASES))
def test_page_with_defaults_and_every_preset(case_name):
    at = open_page(case_name)
    assert_clean(at)
    assert chart_titles(at) == CHARTS[case_name]
    case = registry.get(case_name)
    for preset in case.presets:
        at.button(key=f"{case_name}.load.{preset}").click().run()
        assert_clean(at)
        assert f"Settings: **{preset}**" in " ".join(c.value for c in at.caption)
        assert len(chart_titles(at)) >= len(CHARTS[case_name])


def test_sine_bad_input_is_a_message_not_a_traceback():
    at = open_page("sine")
    at.text_input(key="sine.lr").set_value("0").run()
    assert not at.exception
    assert [e.value for e in at.error] == ["**lr**: must be > 0 and <= 10 (got 0)"]
    at.text_input(key="sine.lr").set_value("4e-7")
    at.text_input(key="sine.hidden").set_value("128,abc").run()
    assert not at.exception
    assert "hidden" in at.error[0].value and "comma-separated" in at.error[0].value
    at.text_input(key="sine.hidden").set_value("0").run()
    assert "each width must be >= 1" in at.error[0].value


def test_sine_diagnosis_button_applies_its_fix():
    at = open_page("sine")
    assert at.toggle(key="sine.bias").value is False
    at.button(key="sine.fix.no-bias").click().run()
    assert_clean(at)
    assert at.toggle(key="sine.bias").value is True
    assert "Settings: **custom**" in " ".join(c.value for c in at.caption)


def test_a_revisit_renders_from_the_cache(monkeypatch):
    calls = []
    real = runner.execute

    def counting(*args, **kwargs):
        calls.append(args[1])
        return real(*args, **kwargs)

    monkeypatch.setattr(runner, "execute", counting)
    at = open_page("sine")
    assert len(calls) == 5  # the current run, then seeds 1-4 for the spread (after the page is drawn)
    at.run()
    at.switch_page("app.py").run()
    at.switch_page(registry.get("sine").page).run()
    assert len(calls) == 5
    assert_clean(at)


def test_settings_survive_a_visit_to_another_page():
    at = open_page("sine")
    at.button(key="sine.load.answer").click().run()
    at.switch_page("app.py").run()
    at.switch_page(registry.get("sine").page).run()
    assert at.radio(key="sine.optimizer").value == "adam"
    assert "Settings: **answer**" in " ".join(c.value for c in at.caption)


def test_cifar_without_cifar10_uses_the_labelled_stand_in_and_explains_the_rule():
    at = open_page("cifar")
    assert_clean(at)
    assert at.radio(key="cifar.dataset").value == "synthetic"
    text = " ".join(m.value for m in at.markdown)
    assert "**Synthetic stand-in.** CIFAR-10 is not in" in text and "downloads are off: CLINIC_OFFLINE=1" in text
    assert (
        "data: **synthetic stand-in**, the first 5,000 training images × 20 epochs, tested on the first 2,000"
        in " ".join(c.value for c in at.caption)
    )
    assert "s² times as much" in text
    # a preset changes the recipe and keeps the data and the budget
    at.button(key="cifar.load.x255").click().run()
    assert at.text_input(key="cifar.input_scale").value == "255"
    assert at.number_input(key="cifar.train_size").value == 5000
    accuracy, loss = float(at.metric[0].value.rstrip("%")), float(at.metric[2].value)
    assert abs(accuracy - 10) < 2 and abs(loss - 2.3026) < 0.01  # chance, and ln 10
    # its diagnosis button applies the s² rule: the as-posted run again
    at.button(key="cifar.fix.scaled-input").click().run()
    assert_clean(at)
    assert "Settings: **x255-rule**" in " ".join(c.value for c in at.caption)


def test_cifar_bad_input_is_a_message_not_a_traceback():
    at = open_page("cifar")
    at.text_input(key="cifar.input_scale").set_value("0").run()
    assert not at.exception
    assert [e.value for e in at.error] == ["**input_scale**: must be > 0 and <= 1000000 (got 0)"]
    at.text_input(key="cifar.input_scale").set_value("1")
    at.radio(key="cifar.dataset").set_value("folder").run()
    assert not at.exception
    assert at.error[0].value.startswith("**data_root**: give the folder that holds train/")
    at.text_input(key="cifar.data_root").set_value("/no/such/folder").run()  # outside the allowed roots
    assert not at.exception
    assert at.error[0].value.startswith("data_root: must be a path inside the data folder")
    at.text_input(key="cifar.data_root").set_value("no/such/folder").run()  # inside the app's folder
    assert not at.exception
    assert at.error[0].value == f"data_root: {ROOT / 'no' / 'such' / 'folder'} is not a folder"


def test_poly_bad_input_is_a_message_and_divergence_a_result():
    at = open_page("poly")
    at.text_input(key="poly.x_min").set_value("6").run()
    assert not at.exception
    assert [e.value for e in at.error] == ["**x_max**: must be greater than x_min (got x_min 6, x_max 5)"]
    at.text_input(key="poly.x_min").set_value("2")
    at.number_input(key="poly.degree").set_value(6).run()
    assert not at.exception and at.error[0].value.startswith("**degree**: a degree-6 polynomial has 7 coefficients")
    at.number_input(key="poly.degree").set_value(4)
    at.text_input(key="poly.lr").set_value("2e-6").run()
    assert_clean(at)
    assert "overflowed at epoch" in at.warning[0].value
    assert chart_titles(at) == CHARTS["poly"]


def test_poly_diagnosis_button_rebases():
    at = open_page("poly")
    at.button(key="poly.fix.ill-conditioned").click().run()
    assert_clean(at)
    assert at.radio(key="poly.basis").value == "legendre" and at.text_input(key="poly.lr").value == "0.12"
    assert "Settings: **custom**" in " ".join(c.value for c in at.caption)


def test_linreg_bad_input_is_a_message_and_the_fixes_apply():
    at = open_page("linreg")
    at.number_input(key="linreg.batch_size").set_value(2000).run()
    assert not at.exception
    assert [e.value for e in at.error] == ["**batch_size**: must be at most n_points (1000) (got 2000)"]
    at.number_input(key="linreg.batch_size").set_value(10)
    at.text_input(key="linreg.noise").set_value("-1").run()
    assert [e.value for e in at.error] == ["**noise**: must be >= 0 and <= 10 (got -1)"]
    at.text_input(key="linreg.noise").set_value("0.05").run()
    assert_clean(at)
    # the two diagnosis buttons together are the fixed preset
    at.button(key="linreg.fix.broadcast").click().run()
    assert at.radio(key="linreg.target_shape").value == "fixed"
    assert "Settings: **fixed-shape**" in " ".join(c.value for c in at.caption)
    at.button(key="linreg.fix.too-few-steps").click().run()
    assert_clean(at)
    assert "Settings: **fixed**" in " ".join(c.value for c in at.caption)
    assert [b for b in at.button if b.key and b.key.startswith("linreg.fix.")] == []
    assert any("No known problem" in s.value for s in at.success)
    # a diverging run is a result: charts and a message, no traceback
    at.radio(key="linreg.optimizer").set_value("sgd")
    at.text_input(key="linreg.lr").set_value("10").run()
    assert not at.exception
    assert [e.value for e in at.error] == [
        "The loss became NaN or infinite: the run diverged. A smaller lr keeps the steps in range."
    ]
    assert len(chart_titles(at)) == len(CHARTS["linreg"])


def test_a_bad_value_keeps_the_last_good_run_on_screen_greyed_with_the_error_at_the_setting():
    """Issue 14, item 4: lr=-5, lr=abc or hidden=0 blanked metrics, charts, pins and export."""
    at = open_page("sine")
    for key, bad, message in (("sine.lr", "abc", "expected a number"), ("sine.hidden", "0", "each width must be >= 1")):
        at.text_input(key=key).set_value(bad).run()
        assert not at.exception
        assert len(at.error) == 1 and message in at.error[0].value  # the error, once, above the run
        assert chart_titles(at) == CHARTS["sine"] and len(at.metric) == 5  # the last good run stays
        assert at.button(key="sine._pin") is not None and at.get("download_button")
        captions = " ".join(c.value for c in at.caption)
        assert "Showing the last good run, greyed" in captions and f":red[{message}" in captions  # at the setting
        assert any("opacity" in m.value for m in at.markdown)
        at.text_input(key=key).set_value({"sine.lr": "4e-7", "sine.hidden": "128"}[key]).run()
        assert not at.error and "Showing the last good run" not in " ".join(c.value for c in at.caption)


def test_every_preset_button_says_what_it_changes_and_why():
    """Issue 14, item 12: presets had no explanation (answer, x255-lr2, lr-2e-6, ...)."""
    for case in registry.CASES.values():
        assert set(case.why) == set(case.presets), case.name
    at = open_page("poly")
    poly = registry.get("poly")
    for name in poly.presets:
        help_text = at.button(key=f"poly.load.{name}").proto.help
        assert poly.why[name] in help_text
        if name != "as-posted":
            assert "Changes from as-posted:" in help_text
    assert "lr = 2e-06" in at.button(key="poly.load.lr-2e-6").proto.help
