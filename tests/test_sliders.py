"""Log sliders over the settings a person explores (issue 14, 'Expected and missing'): the box keeps the
exact value and stays the config's source; the slider follows it and writes its stop into it."""

import itertools
import math
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core import registry
from core.settings import log_grid, parse, to_text

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _no_downloads(monkeypatch, tmp_path):
    """No download: the CIFAR page finds no CIFAR-10 here and runs on its synthetic stand-in."""
    monkeypatch.setenv("CLINIC_DATA_DIR", str(tmp_path / "no-cifar"))
    monkeypatch.setenv("CLINIC_OFFLINE", "1")


def test_log_grid_is_one_two_five_per_decade_within_the_range():
    grid = log_grid(1e-8, 10)
    assert grid[:4] == [1e-8, 2e-8, 5e-8, 1e-7] and grid[-2:] == [5.0, 10.0] and len(grid) == 28
    assert all(math.isclose(b / a, 2) or math.isclose(b / a, 2.5) for a, b in itertools.pairwise(grid))
    assert log_grid(2, 20_000) == [2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000]
    assert log_grid(3, 4) == []  # no stop inside
    assert log_grid(1e-3, 1e6)[0] == 1e-3 and log_grid(1e-3, 1e6)[-1] == 1e6
    # a stop written into a text box reads back as the same float (2e-07, not 2.0000000000000002e-07)
    assert all(parse(registry.get("sine").setting("lr"), "float", to_text(v)) == v for v in grid)


def test_slider_stops_read_as_a_person_types_them():
    from core.ui.settings import _slider_label

    labels = [_slider_label(v) for v in (4e-7, 1e-10, 1e-3, 0.12, 1.0, 255.0, 1e6, 20_000)]
    assert labels == ["4e-7", "1e-10", "0.001", "0.12", "1", "255", "1e6", "20000"]


def page(case_name: str, query: dict | None = None) -> AppTest:
    """The page opened, with a link's settings where given."""
    at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=300)
    at.switch_page(registry.get(case_name).page)
    if query:
        at.query_params.update(query)
    return at.run()


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_moving_the_lr_slider_writes_the_box_and_reruns_with_it():
    at = page("poly")
    slider, box = at.select_slider(key="poly.lr_slider"), at.text_input(key="poly.lr")
    assert slider.value == 1e-6 and box.value == "1e-06" and slider.label == "lr"
    assert slider.proto.options[0] == "1e-7" and slider.proto.options[-1] == "100"  # 9 decades under the top
    before = [m.value for m in at.metric]
    at.select_slider(key="poly.lr_slider").set_value(1e-5).run()
    assert not at.exception and not at.error
    assert at.text_input(key="poly.lr").value == "1e-05"
    assert at.query_params["lr"] == "1e-05"  # the config the page ran: its link
    assert [m.value for m in at.metric] != before  # the run follows the slider


def test_a_typed_lr_stays_exact_and_the_slider_sits_on_it_between_its_neighbours():
    at = page("poly")
    at.text_input(key="poly.lr").set_value("3.3e-6").run()
    assert not at.exception and not at.error
    assert at.text_input(key="poly.lr").value == "3.3e-6" and at.query_params["lr"] == "3.3e-06"  # not rounded
    slider = at.select_slider(key="poly.lr_slider")
    assert slider.value == 3.3e-6
    options = list(slider.proto.options)
    assert options[options.index("3.3e-6") - 1 : options.index("3.3e-6") + 2] == ["2e-6", "3.3e-6", "5e-6"]
    slider.set_value(2e-6).run()  # one notch left
    assert at.text_input(key="poly.lr").value == "2e-06"
    assert "3.3e-6" not in at.select_slider(key="poly.lr_slider").proto.options  # the typed stop is gone


def test_presets_and_links_set_the_box_and_the_slider_follows():
    at = page("poly")
    at.button(key="poly.load.lr-2e-6").click().run()
    assert at.select_slider(key="poly.lr_slider").value == 2e-6
    at.button(key="poly.load.standardized").click().run()  # an lr off the grid, and 10000 epochs
    assert at.text_input(key="poly.lr").value == "0.038" and at.select_slider(key="poly.lr_slider").value == 0.038
    assert at.number_input(key="poly.epochs").value == at.select_slider(key="poly.epochs_slider").value
    at = page("poly", query={"lr": "7e-7", "epochs": "300"})
    assert not at.exception and not at.warning
    assert at.select_slider(key="poly.lr_slider").value == 7e-7
    assert at.select_slider(key="poly.epochs_slider").value == 300


def test_a_bad_lr_is_the_usual_error_and_the_slider_stays_then_repairs_it():
    at = page("poly")
    at.select_slider(key="poly.lr_slider").set_value(5e-6).run()
    at.text_input(key="poly.lr").set_value("abc").run()
    assert not at.exception
    assert len(at.error) == 1 and "expected a number" in at.error[0].value
    assert "Showing the last good run, greyed" in " ".join(c.value for c in at.caption)
    assert at.select_slider(key="poly.lr_slider").value == 5e-6  # where it was
    at.text_input(key="poly.lr").set_value("1000").run()  # parses, out of range
    assert not at.exception and "must be > 0 and <= 100" in at.error[0].value
    assert at.select_slider(key="poly.lr_slider").value == 5e-6
    at.select_slider(key="poly.lr_slider").set_value(1e-6).run()  # the slider writes a good value back
    assert not at.exception and not at.error and at.text_input(key="poly.lr").value == "1e-06"


def test_an_int_slider_and_its_box_follow_each_other():
    at = page("poly")
    slider = at.select_slider(key="poly.epochs_slider")
    assert slider.value == 1000 and slider.label == "epochs"
    assert list(slider.proto.options)[:4] == ["1", "2", "5", "10"] and slider.proto.options[-1] == "50000"
    before = metric(at, at.metric[0].label)
    slider.set_value(200).run()
    assert not at.exception and not at.error
    assert at.number_input(key="poly.epochs").value == 200 and at.query_params["epochs"] == "200"
    assert metric(at, at.metric[0].label) != before
    at.number_input(key="poly.epochs").set_value(333).run()  # an exact number between the stops
    slider = at.select_slider(key="poly.epochs_slider")
    assert slider.value == 333 and at.query_params["epochs"] == "333"
    options = list(slider.proto.options)
    assert options[options.index("333") - 1 : options.index("333") + 2] == ["200", "333", "500"]


@pytest.mark.parametrize(
    ("case_name", "names", "query"),
    [
        ("sine", ["n_points", "lr", "steps"], {"steps": "300"}),
        ("cifar", ["epochs", "input_scale", "hidden", "lr", "batch_size"], {"train_size": "500", "test_size": "200"}),
        ("linreg", ["epochs", "steps", "batch_size", "lr", "n_points"], {"epochs": "20", "n_points": "200"}),
    ],
)
def test_every_page_has_its_sliders_on_its_boxes_values(case_name, names, query):
    case = registry.get(case_name)
    at = page(case_name, query)  # a small budget
    assert not at.exception and not at.error
    assert [s.label for s in at.select_slider] == names
    for name in names:
        box = at.session_state[f"{case_name}.{name}"]
        value = parse(case.setting(name), case.kind(name), box) if isinstance(box, str) else box
        assert math.isclose(at.select_slider(key=f"{case_name}.{name}_slider").value, value)
