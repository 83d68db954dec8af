"""Compare, share, export on the pages (AppTest): pinned runs, settings in the URL, downloads."""

import json
from pathlib import Path

import pytest
from streamlit import dataframe_util
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


# what every page's export offers
DOWNLOADS = ["History (CSV)", "Run record (JSON)", "Standalone script (.py)", "PNG", "SVG", "All figures (zip)"]


def caption_text(at: AppTest) -> str:
    return " ".join(c.value for c in at.caption)


def test_a_link_with_a_preset_and_settings_reproduces_the_view():
    at = page(query={"preset": "fixed", "seed": "2", "steps": "300"})
    assert not at.exception and not at.error
    assert at.number_input(key="sine.seed").value == 2
    assert at.radio(key="sine.optimizer").value == "adam"
    # the URL now says what is on screen: settings that differ from as-posted
    assert at.query_params == {"preset": "fixed", "seed": "2", "steps": "300"}  # the preset, and what differs


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
    assert [b.proto.label for b in at.get("download_button")] == DOWNLOADS


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


# ---------------------------------------------------------------------------- case 3 (poly)


def chart_specs(at: AppTest) -> dict[str, dict]:
    return {
        json.loads(c.proto.spec).get("title", {}).get("text"): json.loads(c.proto.spec)
        for c in at.get("vega_lite_chart")
    }


def test_poly_link_reproduces_the_view_and_bad_values_fall_back():
    at = page("poly", query={"preset": "fixed", "seed": "2", "epochs": "300"})
    assert not at.exception and not at.error
    assert at.number_input(key="poly.seed").value == 2 and at.radio(key="poly.basis").value == "legendre"
    assert at.query_params == {"preset": "fixed", "seed": "2", "epochs": "300"}
    assert page("poly", query={"preset": "lr-2e-6"}).query_params == {"preset": "lr-2e-6"}

    at = page("poly", query={"preset": "nope", "lr": "abc", "degree": "99", "colour": "blue", "seed": "3"})
    assert not at.exception and not at.error
    notices = " ".join(w.value for w in at.warning)
    assert "preset='nope'" in notices and "lr: expected a number" in notices
    assert "degree: must be >= 1 and <= 20" in notices and "colour" in notices
    assert at.text_input(key="poly.lr").value == "1e-06" and at.number_input(key="poly.seed").value == 3
    # each value fine on its own, refused together: the preset as it is
    at = page("poly", query={"preset": "centered", "x_min": "9"})
    assert not at.exception and not at.error
    assert "x_max: must be greater than x_min" in at.warning[0].value
    assert at.text_input(key="poly.x_min").value == "2" and at.radio(key="poly.basis").value == "centered"


def test_poly_pins_overlay_and_survive_a_visit_to_another_page():
    poly_page = registry.get("poly").page
    at = page("poly", query={"preset": "fixed", "epochs": "300"})
    at.button(key="poly._pin").click().run()
    at.number_input(key="poly.seed").set_value(1).run()
    assert not at.exception
    specs = chart_specs(at)
    for title in ("Data, sin(x) and the fitted polynomial", "Loss per epoch (dashed: the least-squares optimum)"):
        assert '"pin 1"' in json.dumps(specs[title]), title
    assert any("seed = 0" in m.value for m in at.markdown)
    at.switch_page("app.py").run()
    at.switch_page(poly_page).run()
    assert "pin 1" in series(at)
    at.button(key="poly._unpin.1").click().run()
    assert "pin 1" not in series(at)


def test_poly_downloads_are_offered():
    at = page("poly", query={"epochs": "100"})
    assert [b.proto.label for b in at.get("download_button")] == DOWNLOADS
    assert at.selectbox(key="poly._figure").options == [
        "fit",
        "loss",
        "sharpness",
        "scan",
        "eigenvalues",
        "coefficients",
    ]


# ---------------------------------------------------------------- case 4 (linreg): sweeps, and one run in detail

LINREG = registry.get("linreg")
SMALL_SWEEP = {"batch_sizes_count": "5", "epochs": "10"}  # batch sizes 10, 257, 505, 752, 1000; 1000 steps at most
SWEEP_CHARTS = (
    "Final slope",
    "Final intercept",
    "Final training loss (the last batch)",
    "Optimizer steps each batch size takes",
)


def series_by_chart(at: AppTest) -> dict[str, set[str]]:
    """Chart title -> the names in its colour scales."""
    out = {}
    for chart in at.get("vega_lite_chart"):
        spec = json.loads(chart.proto.spec)
        title = spec.get("title", {}).get("text")
        names = set()
        for layer in spec.get("layer", [spec]):
            names.update(layer.get("encoding", {}).get("color", {}).get("scale", {}).get("domain", []))
        out[title if isinstance(title, str) else title[0]] = names
    return out


def test_linreg_pins_overlay_the_sweeps_and_the_detail_and_survive_a_page_visit():
    at = page("linreg")  # as posted
    at.button(key="linreg._pin").click().run()
    at.button(key="linreg.load.fixed-shape").click().run()
    assert not at.exception and not at.error
    by_chart = series_by_chart(at)
    for title in SWEEP_CHARTS:  # the as-posted sweep is pinned: drawn once, as its pin
        assert {"fixed-shape", "fixed", "pin 1 (as-posted)"} <= by_chart[title] and "as-posted" not in by_chart[title]
    assert {"fixed-shape", "pin 1 (as-posted)"} <= by_chart["One run: loss per step"]
    assert {"fitted: fixed-shape", "fitted: pin 1 (as-posted)"} <= by_chart[
        "The data, the last batch and the fitted line"
    ]
    assert any("target_shape = as-posted" in m.value for m in at.markdown)  # what differs from the current run
    at.switch_page("app.py").run()
    at.switch_page(LINREG.page).run()
    assert "pin 1 (as-posted)" in series_by_chart(at)["Final slope"]
    at.button(key="linreg._unpin.1").click().run()
    assert not at.exception
    by_chart = series_by_chart(at)
    assert all("pin 1 (as-posted)" not in names for names in by_chart.values())
    assert "as-posted" in by_chart["Final slope"]  # the comparison is back


def test_a_linreg_link_reproduces_the_view_and_a_preset_link_is_the_preset():
    at = page("linreg", {"preset": "fixed-shape", "seed": "2", **SMALL_SWEEP})
    assert not at.exception and not at.error and not at.warning
    assert at.radio(key="linreg.target_shape").value == "fixed"
    assert at.number_input(key="linreg.seed").value == 2 and at.number_input(key="linreg.epochs").value == 10
    assert at.query_params == {"preset": "fixed-shape", "seed": "2", **SMALL_SWEEP}
    assert list(series_by_chart(at))[:4] == list(SWEEP_CHARTS)
    at.button(key="linreg.load.fixed").click().run()
    assert at.query_params == {"preset": "fixed"}
    assert "Settings: **fixed**" in caption_text(at)


def test_bad_linreg_link_values_fall_back_with_a_notice():
    at = page("linreg", {"shuffle": "sometimes", "batch_size": "0", "lr": "fast", "colour": "red", **SMALL_SWEEP})
    assert not at.exception and not at.error
    notices = " ".join(w.value for w in at.warning)
    assert "shuffle: must be one of true, false, both" in notices and "batch_size: must be >= 1" in notices
    assert "lr: expected a number" in notices and "colour" in notices
    assert at.radio(key="linreg.shuffle").value == "both" and at.number_input(key="linreg.epochs").value == 10
    at.run()
    assert not at.warning  # once
    # a combination the case refuses falls back to the preset as it is
    at = page("linreg", {"batch_sizes_to": "5000", "batch_sizes_count": "5"})
    assert not at.exception and not at.error
    assert "batch_sizes_to: must be at most n_points (1000)" in " ".join(w.value for w in at.warning)
    assert at.number_input(key="linreg.batch_sizes_count").value == 100
    # the CLI's mode=single: this page trains the sweep and shows that run in detail
    at = page("linreg", {"mode": "single", "shuffle": "true", **SMALL_SWEEP})
    assert not at.exception and not at.error
    assert any("mode=single" in i.value for i in at.info)
    assert "mode" not in at.query_params and at.query_params["shuffle"] == "true"
    assert list(series_by_chart(at))[:4] == list(SWEEP_CHARTS)


def test_linreg_downloads_are_offered_with_every_figure():
    at = page("linreg", SMALL_SWEEP)
    assert [b.proto.label for b in at.get("download_button")] == DOWNLOADS
    figures = at.selectbox(key="linreg._figure").options
    assert figures == ["slope", "intercept", "final_loss", "steps", "fit", "loss", "sharpness", "pairs", "meant"]


def test_poly_range_test_explodes_at_the_drawn_limit_and_applies_its_suggestion():
    at = page("poly")
    at.button(key="poly._lr_find_go").click().run()
    assert not at.exception
    spec = chart_specs(at)["Learning-rate range test"]
    assert "2/λmax: 1.62e-06" in json.dumps(spec, ensure_ascii=False)  # the analytic limit on the same axes
    chart = next(
        c for c in at.get("vega_lite_chart") if json.loads(c.proto.spec)["title"]["text"] == spec["title"]["text"]
    )
    frames = [dataframe_util.convert_arrow_bytes_to_pandas_df(d.data.data) for d in chart.proto.datasets]
    tested = next(f for f in frames if "curve" in f)["lr"]
    assert 1.62e-6 < tested.max() < 1.4 * 1.62e-6  # the curve ends where the loss exploded: just past the limit
    use = at.button(key="poly._lr_use")
    suggested = float(use.proto.label.removeprefix("Use lr = "))
    assert suggested < 1.62e-6  # where the loss fell fastest, below the edge
    use.click().run()
    assert float(at.text_input(key="poly.lr").value) == pytest.approx(suggested, rel=1e-2)
    assert not at.exception and not at.error

    at = page("poly", query={"optimizer": "momentum", "epochs": "100"})
    at.button(key="poly._lr_find_go").click().run()
    assert "2(1+β)/λmax: 3.08e-06" in json.dumps(chart_specs(at)["Learning-rate range test"], ensure_ascii=False)
    at = page("poly", query={"preset": "lbfgs"})
    assert not at.exception
    assert "does not apply to L-BFGS" in caption_text(at)
    assert not [b for b in at.button if b.key == "poly._lr_find_go"]


# ---------------------------------------------------------------------------- case 2 (cifar)

CIFAR = registry.get("cifar")
CIFAR_SMALL = {"train_size": "1000", "test_size": "500", "epochs": "2"}  # seconds, not the quick view's ~5 s


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No CIFAR-10 on disk and no downloads: the page uses the synthetic stand-in, as on a machine
    without network (and no test touches the network)."""
    monkeypatch.setenv("CLINIC_DATA_DIR", str(tmp_path / "no-cifar"))
    monkeypatch.setenv("CLINIC_OFFLINE", "1")


def test_cifar_link_pins_and_downloads(offline):
    at = page("cifar", query={"preset": "fixed", "seed": "2", **CIFAR_SMALL})
    assert not at.exception and not at.error
    assert at.radio(key="cifar.normalize").value == "standardize" and at.number_input(key="cifar.seed").value == 2
    assert at.query_params == {"preset": "fixed", "seed": "2", **CIFAR_SMALL, "dataset": "synthetic"}
    assert at.radio(key="cifar.dataset").value == "synthetic"  # the stand-in, said so on the page
    # pins overlay the run-by-run charts and survive a visit to another page
    at.button(key="cifar._pin").click().run()
    at.number_input(key="cifar.seed").set_value(1).run()
    assert not at.exception
    specs = chart_specs(at)
    for title in (
        "Training loss per step",
        "Test accuracy per epoch",
        "Gradient norm per layer",
        "Dead ReLUs over training",
    ):
        assert '"pin 1"' in json.dumps(specs[title]), title
    assert any("seed = 2" in m.value for m in at.markdown)  # what differs from the current run
    at.switch_page("app.py").run()
    at.switch_page(CIFAR.page).run()
    assert "pin 1" in series(at)
    # every figure of the page is offered, with the run's data and script
    assert [b.proto.label for b in at.get("download_button")] == DOWNLOADS
    assert at.selectbox(key="cifar._figure").options == [
        "loss", "sharpness", "accuracy", "grad_norm", "update_ratio", "dead", "images", "rule"
    ]  # fmt: skip
    at.button(key="cifar._unpin.1").click().run()
    assert "pin 1" not in series(at)


def test_bad_cifar_link_values_fall_back_with_a_notice(offline):
    at = page("cifar", query={"preset": "nope", "lr": "abc", "hidden": "0", "colour": "blue", "seed": "3"})
    assert not at.exception and not at.error
    notices = " ".join(w.value for w in at.warning)
    assert "preset='nope'" in notices and "lr: expected a number" in notices
    assert "hidden: must be >= 1" in notices and "colour" in notices
    assert at.text_input(key="cifar.lr").value == "0.02" and at.number_input(key="cifar.seed").value == 3
    # links are relative to the quick view the page opens on: a preset link is the preset on that budget,
    # the posted budget is spelled out
    at = page("cifar", query={"preset": "x255"})
    assert at.number_input(key="cifar.train_size").value == 5000 and "Settings: **x255**" in caption_text(at)
    assert at.query_params == {"preset": "x255", "dataset": "synthetic"}  # x255 on the stand-in, said so
    from core import ui

    assert ui.url_params(CIFAR, CIFAR.presets["as-posted"]) == {"train_size": "0", "test_size": "0"}
    assert ui.url_params(CIFAR, CIFAR.presets["as-posted"], page=False) == {"preset": "as-posted"}  # the CLI's


def test_cifar_range_test_finds_the_scaled_rate_and_applies_it(offline):
    """The range test on as-posted suggests a rate near the posted 0.02; with inputs × 255 it
    suggests one hundreds of times smaller (the s² rule's point, found by measurement)."""
    suggested = {}
    for preset in ("as-posted", "x255"):
        at = page("cifar", query={"preset": preset, **CIFAR_SMALL})
        at.button(key="cifar._lr_find_go").click().run()
        assert not at.exception and "Learning-rate range test" in chart_specs(at)
        use = at.button(key="cifar._lr_use")
        suggested[preset] = float(use.proto.label.removeprefix("Use lr = "))
        use.click().run()
        assert not at.exception and not at.error
        assert float(at.text_input(key="cifar.lr").value) == pytest.approx(suggested[preset], rel=1e-2)
    assert 2e-3 < suggested["as-posted"] < 0.5
    assert suggested["x255"] < suggested["as-posted"] / 100
