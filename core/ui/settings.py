"""Settings widgets and links: a page's widgets bound to its case's settings, the URL that carries
them (never a path), the preset buttons, uploads, and the config the widgets make."""

from __future__ import annotations

import contextlib
import dataclasses
import re
from collections.abc import Mapping
from typing import Any

import streamlit as st

import core.ui.base as _base
from core import runner
from core.case import Case
from core.settings import SettingError, check_value, log_grid, parse, to_text
from core.ui.base import key, max_run_seconds

# ------------------------------------------------------------------ settings in the URL


MAX_PINS = 8  # pins per page: each is a run on the charts and a parameter of the link
PIN_NAME_MAX = 40  # characters of a pin's name (it travels in the link)
PIN_NAME = re.compile(r"[\w .,()+\-×/=]+")  # no ';' or ':' (the link's separators), no markup


def url_params(case: Case, config: Any, page: bool = True) -> dict[str, str]:
    """The shortest URL query for `config` (`export.shortest`): `preset=fixed&seed=3`."""
    from core.export import shortest

    return shortest(case, config, page)


def _signature(params: Mapping[str, str]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()))


PIN_PARAM = re.compile(r"pin(\d{1,3})")  # pin1=preset:fixed;seed:3 (and name:… when renamed)
PIN_PARAM_MAX = 2000  # characters of one pin's parameter: more is not read


def _config_from(case: Case, params: Mapping[str, str]) -> tuple[Any, list[str]]:
    """(config, notices) from a link's settings: invalid or stale values fall back to the
    preset's (or as-posted's) value, a clash the case resolves is resolved, each with a notice."""
    params = dict(params)
    notices = []
    preset = params.pop("preset", "as-posted")
    if preset not in case.presets:
        notices.append(f"preset={preset!r} is not a preset of this page ({', '.join(case.presets)}): using as-posted")
        preset = "as-posted"
    values = dataclasses.asdict(case.page_preset(preset))
    for name, text in params.items():
        if name in case.retired:  # a setting the case had: an old link still opens
            notices.append(f"ignored {name}={text[:40]!r}: {case.retired[name]}")
            continue
        try:
            s = case.setting(name)
            if not s.in_url:  # a server path or an upload: nothing is opened, whatever the value
                notices.append(f"{name} is never taken from a link (it names a file or folder on the server): ignored")
                continue
            value = parse(s, case.kind(name), text)
            check_value(s, case.kind(name), value)
            values[name] = value
        except SettingError as e:
            notices.append(f"{e}; using {to_text(values[name])}" if name in values else f"ignored {name}={text[:40]!r}")
    config = case.config_cls(**values)
    if case.check(config) and case.settle is not None:  # a clash the case knows how to resolve
        config, notes = case.settle(config)
        notices += notes
    if case.check(config):  # a combination the case refuses: the preset as it is
        notices += [f"{p}; using the preset {preset!r} unchanged" for p in case.check(config)]
        config = case.page_preset(preset)
    return config, notices


def _pins_from(case: Case, params: Mapping[str, str]) -> tuple[list[dict], list[str]]:
    """The pins a link carries (pin1=preset:fixed;seed:3;name:baseline), each read as a link's settings."""
    found, notices = [], []
    for k, text in sorted(params.items(), key=lambda kv: int(PIN_PARAM.fullmatch(kv[0])[1])):
        n = int(PIN_PARAM.fullmatch(k)[1])
        if len(found) >= MAX_PINS or len(text) > PIN_PARAM_MAX:
            notices.append(f"{k} ignored: a link carries at most {MAX_PINS} pins of {PIN_PARAM_MAX} characters")
            continue
        fields = dict(part.split(":", 1) for part in text.split(";") if ":" in part)
        name = " ".join(fields.pop("name", "").split())
        config, notes = _config_from(case, fields)
        notices += [f"{k}: {note}" for note in notes]
        if any(p["config"] == config for p in found):
            continue
        ok = PIN_NAME.fullmatch(name) and len(name) <= PIN_NAME_MAX and name not in {"current", *case.presets}
        found.append({"n": n, "label": name if ok else pin_label(case, config, n), "config": config})
    return found, notices


def _pin_params(case: Case) -> dict[str, str]:
    """The session's pins as link parameters; a pin on uploaded points cannot travel and is left out."""
    out = {}
    for p in _pins(case):
        config = p["config"]
        if any(case.kind(f.name) == "points" and getattr(config, f.name) for f in dataclasses.fields(config)):
            continue
        fields = url_params(case, config)
        if p["label"] != pin_label(case, config, p["n"]):
            fields["name"] = p["label"]
        out[f"pin{p['n']}"] = ";".join(f"{k}:{v}" for k, v in fields.items())
    return out


def from_url(case: Case) -> None:
    """Apply ?preset=NAME&KEY=VALUE...&pin1=... once per new link. Invalid or stale values fall back to
    the preset's (or as-posted's) value, with a notice; never an exception. A link's pins replace the
    session's."""
    params = {k: st.query_params[k] for k in st.query_params}
    marker = f"{case.name}._url"
    if not params or st.session_state.get(marker) == _signature(params):
        return
    st.session_state[marker] = _signature(params)
    pin_params = {k: params.pop(k) for k in list(params) if PIN_PARAM.fullmatch(k)}
    config, notices = _config_from(case, params)
    if pin_params:
        found, notes = _pins_from(case, pin_params)
        st.session_state[f"{case.name}._pins"] = found
        for p in found:
            st.session_state.pop(f"{case.name}._pin_name.{p['n']}", None)
        notices += notes
    load(case, dataclasses.asdict(config))
    st.session_state[f"{case.name}._notices"] = notices
    if case.cost(config).seconds > _base.LINK_CONFIRM_SECONDS:  # a link alone never starts a long run
        st.session_state[f"{case.name}._confirm"] = config


def to_url(case: Case, config: Any) -> None:
    """Write the current settings and the pins into the page's URL, so the link reproduces this view."""
    params = url_params(case, config) | _pin_params(case)
    st.session_state[f"{case.name}._url"] = _signature(params)
    if {k: st.query_params[k] for k in st.query_params} != params:
        st.query_params.from_dict(params)
    # the link's notices, once; again in the redraw that adds the compared runs (`train_the_rest`)
    notices = st.session_state.pop(f"{case.name}._notices", None)
    if notices is not None:
        st.session_state[f"{case.name}._notices_shown"] = notices
    elif st.session_state.get(f"{case.name}._redraw"):
        notices = st.session_state.get(f"{case.name}._notices_shown", [])
    for notice in notices or []:
        st.warning(f"From the link: {notice}", icon=":material/link_off:")


def widget_value(case: Case, name: str, value: Any) -> Any:
    """A config value as its widget holds it: text for text boxes, the value otherwise."""
    return to_text(value) if case.kind(name) in ("float", "widths") else value


def load(case: Case, values: Mapping[str, Any]) -> None:
    """Set widgets to these config values (a preset, or a diagnosis's fix). For callbacks."""
    for name, value in values.items():
        st.session_state[key(case, name)] = widget_value(case, name, value)


def preset_buttons(case: Case, keep: tuple[str, ...] = (), stay: str = "") -> None:
    """A button per preset; its tooltip says why the preset exists and what it changes from as-posted.
    keep: settings a button leaves as they are (CIFAR's data and budget), which `stay` names in words."""
    st.caption("Load a preset (hover for what each changes and why)" + (f"; {stay} stay" if stay else ""))
    cols = st.columns(2)
    base = case.page_preset("as-posted")
    for i, name in enumerate(case.presets):
        changes = differences(case, case.page_preset(name), base).replace("_", "\\_")  # not markdown italics
        values = {k: v for k, v in dataclasses.asdict(case.presets[name]).items() if k not in keep}
        cols[i % 2].button(
            name,
            key=f"{case.name}.load.{name}",
            on_click=load,
            args=(case, values),
            width="stretch",
            help=case.why.get(name, "") + ("" if name == "as-posted" else f"\n\nChanges from as-posted: {changes}."),
        )


def _label(case: Case, name: str, collapsed: bool = False) -> dict:
    """The widget's label, key and help; collapsed under a slider, which carries the name and the help."""
    if collapsed:
        return {"label": name, "key": key(case, name), "label_visibility": "collapsed"}
    return {"label": name, "key": key(case, name), "help": case.setting(name).help}


SLIDER_DECADES = 9  # a log slider without a positive lower bound spans this many decades under the top (lr: 1e-8..10)


def _slider_label(v: float) -> str:
    """A slider stop as a person reads it: 4e-7, 0.001, 255, 1e6 (no exponent padding)."""
    return re.sub(r"e\+?(-?)0*(\d)", r"e\1\2", f"{v:g}")


def _valid(case: Case, name: str, raw: Any) -> Any:
    """The widget's value as the config would take it, or None where it does not parse or is not allowed."""
    s, kind = case.setting(name), case.kind(name)
    try:
        value = parse(s, kind, raw) if isinstance(raw, str) else raw
        check_value(s, kind, value)
    except SettingError:
        return None
    return value


def log_slider(case: Case, name: str, disabled: bool = False) -> None:
    """A log slider (1, 2, 5 per decade) for a number setting, drawn above its box. The box stays the
    source of truth: the slider follows it on every rerun (an off-grid value, typed or from a preset,
    a link, a fix or a pin, is inserted among the stops, so nothing is rounded), and moving the slider
    writes its stop into the box. While the box holds a bad value the slider stays where it was."""
    s, kind = case.setting(name), case.kind(name)
    hi = s.hi if s.hi is not None else 10.0
    lo = s.lo if s.lo is not None and s.lo > 0 else hi / 10**SLIDER_DECADES
    grid = [int(v) for v in log_grid(max(lo, 1), hi)] if kind == "int" else log_grid(lo, hi)
    k = key(case, name) + "_slider"
    value = _valid(case, name, st.session_state[key(case, name)])
    if value is None:  # a bad box: keep the slider's stop (or, before it has one, the page's default)
        value = st.session_state.get(k, getattr(case.page_preset("as-posted"), name))
    st.session_state[k] = value  # never value= as well: the state alone places the slider
    st.select_slider(
        name,
        options=sorted({*grid, value}),
        key=k,
        format_func=_slider_label,
        on_change=_slider_moved,
        args=(case, name),
        help=s.help,
        disabled=disabled,
    )


def _slider_moved(case: Case, name: str) -> None:
    """The slider's callback: its stop becomes the box's value (as text in a text box)."""
    st.session_state[key(case, name)] = widget_value(case, name, st.session_state[key(case, name) + "_slider"])


def _pair(slider: bool) -> Any:
    """A slider and its box, drawn close together so they read as one setting."""
    return st.container(gap="xxsmall") if slider else contextlib.nullcontext()


def text_setting(case: Case, name: str, slider: bool = False) -> str:
    """A free-text setting (numbers over decades, layer widths), with its own problem, if any, right
    under it (the page says it again above the last good run). slider: a log slider above the box
    (`log_slider`), which then carries the name; the box keeps the exact value."""
    with _pair(slider):
        if slider:
            log_slider(case, name)
        text = st.text_input(**_label(case, name, collapsed=slider))
        try:
            check_value(case.setting(name), case.kind(name), parse(case.setting(name), case.kind(name), text))
        except SettingError as e:
            st.caption(f":red[{str(e).split(':', 1)[1].strip()}]")
    return text


def int_setting(case: Case, name: str, step: int = 1, disabled: bool = False, slider: bool = False) -> int:
    """A whole number; slider: a log slider above the box (`log_slider`), the box keeps the exact value."""
    s = case.setting(name)
    with _pair(slider):
        if slider:
            log_slider(case, name, disabled=disabled)
        return st.number_input(
            **_label(case, name, collapsed=slider),
            min_value=int(s.lo),
            max_value=int(s.hi),
            step=step,
            disabled=disabled,
        )


def choice_setting(case: Case, name: str, horizontal: bool = True) -> str:
    return st.radio(**_label(case, name), options=case.setting(name).choices, horizontal=horizontal)


def bool_setting(case: Case, name: str) -> bool:
    return st.toggle(**_label(case, name))


def _from_widgets(case: Case) -> tuple[Any, list[str]]:
    """(config, problems) from the widgets' values; config is None when a value does not parse."""
    values, problems = {}, []
    for s in case.settings:
        raw = st.session_state[key(case, s.name)]
        try:
            values[s.name] = parse(s, case.kind(s.name), raw) if isinstance(raw, str) else raw
        except SettingError as e:
            problems.append(str(e))
    if problems:
        return None, problems
    config = case.config_cls(**values)
    problems = case.errors(config)
    limit = runner.over_limit(case, config, max_run_seconds()) if not problems else None
    return config, problems + ([limit] if limit else [])


# what a page greys while it shows the last good run: its results, not the messages about the settings
STALE_CSS = """<style>
[data-testid="stMain"] [data-testid="stMetric"], [data-testid="stMain"] [data-testid="stVegaLiteChart"],
[data-testid="stMain"] [data-testid="stDataFrame"], [data-testid="stMain"] [data-testid="stImage"],
[data-testid="stMain"] [data-testid="stTable"]
{opacity: 0.4; filter: grayscale(1);}
</style>"""


def build_config(case: Case) -> Any:
    """The config from the widgets. With a bad setting: a clear error per problem (never a traceback)
    and the last good config, whose results the page then shows greyed; a stop only when there is none."""
    config, problems = _from_widgets(case)
    last_good = f"{case.name}._last_good"
    if problems:
        for p in problems:
            st.error(f"**{p.split(':', 1)[0]}**: {p.split(':', 1)[1].strip()}", icon=":material/error:")
        if st.session_state.get(last_good) is None:
            st.stop()
        st.caption("Showing the last good run, greyed, until the settings are valid again.")
        st.markdown(STALE_CSS, unsafe_allow_html=True)
        return st.session_state[last_good]
    st.session_state[last_good] = config
    to_url(case, config)
    if any(case.kind(f.name) == "points" and getattr(config, f.name) for f in dataclasses.fields(config)):
        st.caption("Your uploaded points are not part of the page's link.")
    return config


def points_upload(case: Case) -> None:
    """A CSV upload for the case's `points` setting. An upload is taken when the user changes the
    file (a callback), so the points stay for the session, also after a visit to another page (which
    empties the uploader). A bad file is a message and the page keeps the data it had. Only the button
    returns to the posted data: a browser empties the uploader before it takes a replacing file, so
    an empty uploader cannot tell 'removed' from 'replaced'."""
    from core.points import MAX_BYTES

    st.file_uploader(
        "Your own (x, y) points",
        type=["csv", "txt"],
        key=f"{case.name}._upload",
        help=f"CSV: two numeric columns, x and y (a header row is fine), at most {MAX_BYTES // 1_000_000} MB.",
        on_change=_take_upload,
        args=(case,),
    )
    error = st.session_state.pop(f"{case.name}._upload_error", None)
    if error:
        st.error(error, icon=":material/error:")
    pts = st.session_state.get(key(case, "points"))
    if pts:
        name = st.session_state.get(f"{case.name}._upload_name") or "your file"
        st.caption(f"Using **{name}**: {len(pts):,} points, kept for this session.")
        st.button("Back to the posted data", key=f"{case.name}._upload_drop", on_click=_drop_upload, args=(case,))


def _drop_upload(case: Case) -> None:
    st.session_state[key(case, "points")], st.session_state[f"{case.name}._upload_name"] = (), None


def _take_upload(case: Case) -> None:
    """The uploader's callback: the user added, replaced or removed the file."""
    from core.points import parse_csv

    up = st.session_state.get(f"{case.name}._upload")
    if up is None:  # removed, or about to be replaced (the browser empties the uploader first): keep the points
        return
    try:
        pts = parse_csv(up.getvalue())
        current, _ = _from_widgets(case)
        if current is not None:
            bad = [p for p in case.check(dataclasses.replace(current, points=pts)) if p.startswith("points")]
            if bad:
                raise SettingError.of(bad)
    except SettingError as e:
        before = st.session_state.get(f"{case.name}._upload_name")
        kept = f"still using {before}" if st.session_state.get(key(case, "points")) else "still using the posted data"
        st.session_state[f"{case.name}._upload_error"] = f"{up.name}: {e}. Nothing changed: {kept}."
        return
    st.session_state[key(case, "points")], st.session_state[f"{case.name}._upload_name"] = pts, up.name


def init_settings(case: Case, preset: str = "as-posted") -> None:
    """Give every setting's widget a value: from the URL when it carries settings this
    session has not applied yet, else what the session had, else the preset's."""
    base = case.page_preset(preset)
    for s in case.settings:
        k = key(case, s.name)
        if k not in st.session_state:
            st.session_state[k] = widget_value(case, s.name, getattr(base, s.name))
    from_url(case)


def _pins(case: Case) -> list[dict]:
    return st.session_state.setdefault(f"{case.name}._pins", [])


def pin_label(case: Case, config: Any, n: int) -> str:
    """'pin 1 (fixed)': the number, and the preset (or, on CIFAR's quick view, the recipe) it follows."""
    name = case.preset_name(config) or (case.recipe(config) if case.recipe is not None else None)
    return f"pin {n}" + (f" ({name})" if name else "")


def differences(case: Case, config: Any, other: Any) -> str:
    """The settings in which `config` differs from `other`, as text."""
    diff = [f"{f} = {to_text(v) or 'none'}" for f, v in dataclasses.asdict(config).items() if v != getattr(other, f)]
    return ", ".join(diff) or "same settings"
