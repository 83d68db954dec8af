"""Settings: parsing text, range checks and the messages a user sees."""

import dataclasses

import pytest

from core import registry
from core.settings import Setting, SettingError, check_value, parse, to_text

SINE = registry.get("sine")


@pytest.mark.parametrize(
    ("kind", "text", "value"),
    [
        ("int", "4000", 4000),
        ("int", "1e3", 1000),
        ("float", "4e-7", 4e-7),
        ("bool", "true", True),
        ("bool", "Off", False),
        ("widths", "32, 128,32", (32, 128, 32)),
        ("choice", " adam ", "adam"),
    ],
)
def test_parse_roundtrip(kind, text, value):
    s = Setting("x", "help")
    assert parse(s, kind, text) == value
    assert parse(s, kind, to_text(value)) == value


@pytest.mark.parametrize(
    ("kind", "text", "fragment"),
    [
        ("int", "1.5", "whole number"),
        ("int", "abc", "whole number"),
        ("float", "abc", "a number"),
        ("bool", "maybe", "true or false"),
        ("widths", "128,abc", "comma-separated whole numbers"),
        ("widths", "", "comma-separated whole numbers"),
    ],
)
def test_parse_rejects_nonsense_naming_the_setting(kind, text, fragment):
    with pytest.raises(SettingError) as e:
        parse(Setting("knob", "help"), kind, text)
    assert str(e.value).startswith("knob: ")
    assert fragment in str(e.value)


def test_range_message_names_setting_and_range():
    lr = Setting("lr", "learning rate", lo=0, hi=10, lo_open=True)
    check_value(lr, "float", 1e-3)
    for bad in (0.0, -1.0, 11.0, float("nan"), float("inf")):
        with pytest.raises(SettingError, match=r"^lr: .*> 0 and <= 10"):
            check_value(lr, "float", bad)


def test_widths_limits():
    hidden = SINE.setting("hidden")
    check_value(hidden, "widths", (32, 128, 32))
    for bad in ((0,), (128, 2000), (8,) * 7, ()):
        with pytest.raises(SettingError, match=r"^hidden: "):
            check_value(hidden, "widths", bad)


def test_configure_applies_text_overrides_to_a_preset():
    config = SINE.configure("fixed", {"lr": "3e-3", "hidden": "16,16", "bias": "false"})
    assert config == dataclasses.replace(SINE.presets["fixed"], lr=3e-3, hidden=(16, 16), bias=False)


def test_configure_reports_every_problem_in_one_error():
    with pytest.raises(SettingError) as e:
        SINE.configure("as-posted", {"lr": "0", "steps": "-5"})
    text = str(e.value)
    assert "lr: must be > 0" in text and "steps: must be >= 1" in text
    assert e.value.problems == text.split("; ")


def test_unknown_setting_and_preset_and_case():
    with pytest.raises(SettingError, match=r"^foo: unknown setting for case sine; settings are: n_points"):
        SINE.configure("as-posted", {"foo": "1"})
    with pytest.raises(SettingError, match=r"^preset: must be one of as-posted"):
        SINE.configure("nope")
    with pytest.raises(SettingError, match=r"^case: must be one of sine"):
        registry.get("sines")


def test_every_case_describes_every_config_field_and_its_presets_validate():
    for case in registry.CASES.values():
        fields = [f.name for f in dataclasses.fields(case.config_cls)]
        assert [row["name"] for row in case.describe()] == fields
        assert {"as-posted", "fixed"} <= set(case.presets)
        for name, preset in case.presets.items():
            assert case.errors(preset) == [], (case.name, name)
        assert case.preset_name(case.presets["as-posted"]) == "as-posted"
        # defaults are the posted code
        assert case.config_cls() == case.presets["as-posted"]


def test_files_are_named_after_the_preset_the_quick_view_or_custom():
    cifar = registry.get("cifar")
    assert cifar.first_view  # the page opens presets on a lighter budget
    assert cifar.file_stem(cifar.presets["x255"]) == "cifar-x255"
    assert cifar.file_stem(cifar.page_preset("x255")) == "cifar-x255-quick"
    # named as the page labels the settings: by the recipe, whatever the data source and seed
    stand_in = dataclasses.replace(cifar.page_preset("x255"), dataset="synthetic", seed=3)
    assert cifar.file_stem(stand_in) == "cifar-x255-quick"
    assert cifar.file_stem(dataclasses.replace(stand_in, epochs=1)) == "cifar-x255"
    assert cifar.file_stem(dataclasses.replace(stand_in, lr=0.5)) == "cifar-custom"
    assert SINE.file_stem(SINE.presets["fixed"]) == "sine-fixed"
    assert SINE.file_stem(dataclasses.replace(SINE.presets["fixed"], seed=3)) == "sine-custom"
