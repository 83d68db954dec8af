"""The one bridge between core and Streamlit: page setup, the device badge, settings
widgets bound to the registry, the result cache, and progress while a run trains.

Pages call these helpers; nothing else in core imports Streamlit.
"""

from __future__ import annotations

import dataclasses
import inspect
import math
import os
import re
import time
from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st
import torch

from core import charts, runner
from core import device as device_
from core.case import Case, Finding
from core.settings import SettingError, check_value, parse, to_text
from core.train import Progress, RunResult

RESULTS_MAX_BYTES = 256 << 20  # finished runs kept per server process, in bytes of their tables
PROGRESS_EVERY_S = 0.25  # how often the bar and the growing curve are redrawn
MAX_RUN_SECONDS_ENV = "CLINIC_MAX_RUN_SECONDS"  # raises (or lowers) the limit on one run's estimated cost
MAX_RUN_SECONDS = 120.0  # the default: about 2 minutes on a 2-core CPU
LINK_CONFIRM_SECONDS = 20.0  # a link whose run is estimated longer than this waits for a Run click


@st.cache_resource(show_spinner=False)
def results() -> runner.ResultCache:
    """One bounded cache of finished runs for the whole server, keyed by (case, config, device)."""
    return runner.ResultCache(RESULTS_MAX_BYTES)


def max_run_seconds() -> float:
    """The server's limit on one run's estimated cost: $CLINIC_MAX_RUN_SECONDS, else 120 s."""
    text = os.environ.get(MAX_RUN_SECONDS_ENV, "").strip()
    try:
        value = float(text) if text else MAX_RUN_SECONDS
    except ValueError:
        value = MAX_RUN_SECONDS
    return value if math.isfinite(value) and value > 0 else MAX_RUN_SECONDS


# ------------------------------------------------------------------ page and device


# nothing truncates from 1024 px wide up: metric labels and deltas wrap, values shrink with the window, and
# buttons may wrap their label rather than cut it
FIT_CSS = """<style>
[data-testid="stMetricLabel"] p, [data-testid="stMetricLabel"] div {white-space: normal !important; overflow: visible;}
[data-testid="stMetricValue"] {font-size: clamp(1.3rem, 2.1vw, 2.25rem);}
[data-testid="stMetricValue"] div {overflow: visible; text-overflow: clip;}
[data-testid="stMetricDelta"] div, [data-testid="stMetricDelta"] p {white-space: normal !important; overflow: visible;}
[data-testid="stBaseButton-secondary"] p, [data-testid="stBaseButton-primary"] p
{white-space: normal; overflow: visible;}
</style>"""


def page(title: str, icon: str = "🩺") -> None:
    """Page config and the sidebar's navigation (Streamlit's own list is turned off in
    .streamlit/config.toml so that the home page is called Home, not app). icon: the tab's icon, an
    emoji (`Case.emoji`): Streamlit draws an emoji favicon itself but fetches a material one online."""
    from core import registry

    st.set_page_config(page_title=f"{title} · Convergence Clinic", page_icon=icon, layout="wide")
    st.markdown(FIT_CSS, unsafe_allow_html=True)
    keep("force_cpu", *(key(c, s.name) for c in registry.CASES.values() for s in c.settings))
    with st.sidebar:
        st.page_link("app.py", label="Home", icon=":material/home:")
        for i, c in enumerate(registry.CASES.values(), start=1):
            st.page_link(c.page, label=f"{i} · {c.short}", icon=c.icon)
        st.page_link(
            "pages/5_Your_run.py", label=f"{len(registry.CASES) + 1} · Your run", icon=":material/troubleshoot:"
        )


def device_sidebar() -> torch.device:
    """The sidebar's device block: a 'force CPU' switch (kept across pages) and the badge."""
    with st.sidebar:
        st.divider()
        gpu = device_.pick("auto").type != "cpu"
        st.toggle(
            "Force CPU",
            key="force_cpu",
            disabled=not gpu,
            help="Train on the CPU even when a GPU is available. The device is part of every cached result.",
        )
        device = device_.pick("cpu" if st.session_state.get("force_cpu") else "auto")
        st.caption(badge(device))
    return device


def badge(device: torch.device) -> str:
    i = device_.info(device)
    return f"**{i['kind']}** · {i['name']} · torch {i['torch']} · {i['cpu_threads']} CPU threads"


def keep(*keys: str) -> None:
    """Keep widget values when the user visits another page and comes back.

    Streamlit drops a widget's state when a run does not draw it; re-assigning the
    value at the top of every page turns it into plain session state, which survives.
    """
    for k in keys:
        if k in st.session_state:
            st.session_state[k] = st.session_state[k]


# ------------------------------------------------------------------ settings widgets


def key(case: Case, name: str) -> str:
    return f"{case.name}.{name}"


def init_settings(case: Case, preset: str = "as-posted") -> None:
    """Give every setting's widget a value: from the URL when it carries settings this
    session has not applied yet, else what the session had, else the preset's."""
    base = case.page_preset(preset)
    for s in case.settings:
        k = key(case, s.name)
        if k not in st.session_state:
            st.session_state[k] = widget_value(case, s.name, getattr(base, s.name))
    from_url(case)


# ------------------------------------------------------------------ settings in the URL


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
    if case.cost(config).seconds > LINK_CONFIRM_SECONDS:  # a link alone never starts a long run
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


def _label(case: Case, name: str) -> dict:
    return {"label": name, "key": key(case, name), "help": case.setting(name).help}


def text_setting(case: Case, name: str) -> str:
    """A free-text setting (numbers over decades, layer widths), with its own problem, if any, right
    under it (the page says it again above the last good run)."""
    text = st.text_input(**_label(case, name))
    try:
        check_value(case.setting(name), case.kind(name), parse(case.setting(name), case.kind(name), text))
    except SettingError as e:
        st.caption(f":red[{str(e).split(':', 1)[1].strip()}]")
    return text


def int_setting(case: Case, name: str, step: int = 1, disabled: bool = False) -> int:
    s = case.setting(name)
    return st.number_input(**_label(case, name), min_value=int(s.lo), max_value=int(s.hi), step=step, disabled=disabled)


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


# ------------------------------------------------------------------ running


def run(
    case: Case, config: Any, device: torch.device, label: str = "Training", task: Callable | None = None
) -> RunResult:
    """A finished result from the cache, or train now with a progress bar, the time left, a
    growing loss curve and a Stop button. A settings change mid-run interrupts it at the next
    redraw; nothing is cached then. A run that came from a link and is estimated over
    LINK_CONFIRM_SECONDS, or that the user stopped, waits for a Run click (the page stops
    there). Heavy runs may wait for a free slot first, with their place in the line shown.
    `task`: another function of the case to run with the config (default: its run)."""
    cache = results()
    cache_key = cache.key(case, config, device, task)
    hit = cache.get(cache_key)
    if hit is not None:
        return hit
    _hold_for_run_click(case, config, cache_key, task)
    box = st.empty()
    with box.container():
        left, right = st.columns([1, 8], vertical_alignment="bottom")  # Stop on the left: clear of the chart's tools
        bar = right.progress(0.0, text=f"{label}…")
        left.button(
            "Stop",
            key=f"{case.name}._stop.{hash(cache_key) & 0xFFFFFFFF:08x}",  # a page may train several runs
            icon=":material/stop_circle:",
            on_click=st.session_state.__setitem__,
            args=(f"{case.name}._stopped", cache_key),
            help="End this run at its next progress check (within a second). Nothing is kept.",
        )
        curve = st.empty()
    last, started = [0.0], time.monotonic()

    def on_wait(position: int) -> None:
        bar.progress(0.0, text=f"{label}: waiting for a free slot, number {position} in line "
                     f"({runner.GATE.slots} long runs at once on this server)")  # fmt: skip

    def on_progress(p: Progress) -> None:
        now = time.monotonic()
        if now - last[0] < PROGRESS_EVERY_S:
            return
        last[0] = now
        left_s = (now - started) / max(p.step, 1) * (p.total - p.step)
        bar.progress(p.step / p.total, text=f"{label}: step {p.step:,} of {p.total:,}, about {left_s:.0f} s left")
        curve.altair_chart(charts.live_loss(p.loss, p.name), width="stretch", theme=None)

    try:
        result = runner.execute(
            case, config, device, on_progress, task=task, max_seconds=max_run_seconds(), on_wait=on_wait
        )
    except SettingError as e:  # over the cost limit (a pin, say), or a bad preset
        box.empty()
        st.error(str(e), icon=":material/error:")
        st.stop()
    box.empty()
    cache.put(cache_key, result)
    return result


def _hold_for_run_click(case: Case, config: Any, cache_key: tuple, task: Callable | None) -> None:
    """Stop the page with a Run button when this run was stopped by the user, or came from a link
    and is long. The button clears the hold and the page runs it."""
    stopped, confirm = f"{case.name}._stopped", f"{case.name}._confirm"
    if st.session_state.get(stopped) == cache_key:
        why = "You stopped this run."
    elif task is None and st.session_state.get(confirm) == config:
        why = (
            f"This link asks for a run of about {case.cost(config).seconds:.0f} s (estimated from its settings): "
            "it starts when you ask."
        )
    else:
        return
    with st.container(border=True):
        st.info(why, icon=":material/pause_circle:")
        st.button(
            "Run",
            key=f"{case.name}._run_click",
            type="primary",
            icon=":material/play_arrow:",
            on_click=lambda: [st.session_state.pop(k, None) for k in (stopped, confirm)],
        )
    st.stop()


# ------------------------------------------------------------------ showing


def number(value: float, digits: int = 4) -> str:
    """A metric's value: fixed-point when readable, scientific when huge or tiny (a diverged loss is
    1.34e+23, not 134084170505826026389504.0000), 'n/a' when not a number."""
    if not math.isfinite(value):
        return "n/a" if math.isnan(value) else "inf"
    if value != 0 and not 1e-3 <= abs(value) < 1e6:
        return f"{value:.{digits - 1}e}"
    return f"{value:.{digits}g}"


def chart(c) -> None:
    st.altair_chart(c, width="stretch", theme=None)


def chart_row(charts_by_name: Mapping[str, Any], *names: str) -> None:
    """These charts side by side, in equal columns."""
    for column, name in zip(st.columns(len(names)), names, strict=True):
        with column:
            chart(charts_by_name[name])


def sharpness(chart_: Any, runs: Mapping[str, RunResult], loss: str = "loss") -> None:
    """The sharpness chart, and beside it the sentence that reads it for each run."""
    from core.charts import sharpness as sharpness_

    left, right = st.columns([3, 2])
    with left:
        chart(chart_)
    with right:
        st.markdown("**Sharpness against the stability line**")
        for i, (name, r) in enumerate(runs.items()):
            line = f"*{name}*: {sharpness_.reading(r, loss)}"
            st.markdown(line) if i == 0 else st.caption(line)
        st.caption(sharpness_.EXPLAIN)


def findings(case: Case, found: list[Finding], config: Any = None) -> None:
    """Diagnosis cards: the measured evidence, and a button that applies the fix. Its label lists the
    values the fix changes (of `config`, the settings on screen); it applies the whole fix."""
    if not found:
        st.success("No known problem left in these settings.", icon=":material/check_circle:")
        return
    cols = st.columns(min(len(found), 2))
    for i, f in enumerate(found):
        with cols[i % len(cols)].container(border=True):
            st.markdown(f"**{f.title}**")
            st.write(f.evidence)
            changed = {k: v for k, v in f.fix.items() if config is None or getattr(config, k) != v} or f.fix
            change = ", ".join(f"{k} = {to_text(v)}" for k, v in changed.items())
            st.button(f"Apply: {change}", key=f"{case.name}.fix.{f.key}", on_click=load, args=(case, f.fix))


def on_demand(key: str, label: str, identity: Any, caption: str = "") -> bool:
    """True once the button `label` was clicked for this `identity` (say, the data and budget a
    table is for); until then the caption and the button. A new identity asks again."""
    if st.session_state.get(key) == identity:
        return True
    if caption:
        st.caption(caption)
    st.button(label, key=f"{key}.go", on_click=st.session_state.__setitem__, args=(key, identity))
    return False


def show_code(*functions: Callable) -> None:
    with st.expander("The code that ran"):
        for fn in functions:
            st.code(inspect.getsource(fn), language="python")


# ------------------------------------------------------------------ the current run, its comparisons, pins

MAX_PINS = 8  # pins per page: each is a run on the charts and a parameter of the link
PIN_NAME_MAX = 40  # characters of a pin's name (it travels in the link)
PIN_NAME = re.compile(r"[\w .,()+\-×/=]+")  # no ';' or ':' (the link's separators), no markup
COINCIDE = 1e-6  # relative: a compared run whose history is the current one's to this is said to coincide


def _pins(case: Case) -> list[dict]:
    return st.session_state.setdefault(f"{case.name}._pins", [])


def pin_label(case: Case, config: Any, n: int) -> str:
    """'pin 1 (fixed)': the number, and the preset (or, on CIFAR's quick view, the recipe) it follows."""
    name = case.preset_name(config) or (case.recipe(config) if case.recipe is not None else None)
    return f"pin {n}" + (f" ({name})" if name else "")


def _pin(case: Case, config: Any) -> None:
    pins = _pins(case)
    if len(pins) < MAX_PINS and all(p["config"] != config for p in pins):
        n = max((p["n"] for p in pins), default=0) + 1
        pins.append({"n": n, "label": pin_label(case, config, n), "config": config})


def _unpin(case: Case, n: int) -> None:
    st.session_state[f"{case.name}._pins"] = [p for p in _pins(case) if p["n"] != n]
    st.session_state.pop(f"{case.name}._pin_name.{n}", None)


def _rename(case: Case, n: int) -> None:
    """A pin's name box changed: take the name when it is one (unique, short, plain), else put the old one back."""
    box = f"{case.name}._pin_name.{n}"
    name = " ".join(str(st.session_state.get(box, "")).split())[:PIN_NAME_MAX]
    pin = next(p for p in _pins(case) if p["n"] == n)
    taken = {"current", "as-posted", *case.presets, *(p["label"] for p in _pins(case) if p["n"] != n)}
    if PIN_NAME.fullmatch(name) and name not in taken:
        pin["label"] = name
    else:
        st.session_state[f"{case.name}._pin_problem"] = (
            f"{name!r} cannot name a pin: it must be new (not current, a preset or another pin) and use "
            "letters, digits, spaces or . , ( ) + - × / ="
        )
    st.session_state[box] = pin["label"]


def differences(case: Case, config: Any, other: Any) -> str:
    """The settings in which `config` differs from `other`, as text."""
    diff = [f"{f} = {to_text(v) or 'none'}" for f, v in dataclasses.asdict(config).items() if v != getattr(other, f)]
    return ", ".join(diff) or "same settings"


def compared(case: Case, config: Any, also: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The configs drawn with the current one, by name, in drawing order: the current run, the as-posted
    run (`Case.comparison`), `also`, then the pins. One name per run: a pin equal to the current run
    or to a compared one is drawn once, under that name."""
    out = {"current": config}
    ref = case.comparison(config)
    for name, c in [*([("as-posted", ref)] if ref is not None else []), *(also or {}).items()]:
        if c not in out.values():
            out[name] = c
    for p in _pins(case):
        if p["config"] not in out.values():
            out[p["label"]] = p["config"]
    return out


def compare(
    case: Case, config: Any, device: torch.device, also: Mapping[str, Any] | None = None
) -> dict[str, RunResult]:
    """The current run and the runs it is compared with (`compared`), by name, current first.

    Current first: only the current run trains before the page draws it. A compared or pinned run
    that is not cached yet trains when the page has drawn the current run's charts
    (`train_the_rest`, the page's last line), and the page then redraws with it. A pin over the
    server's run limit is left out, with a note in the pins' box."""
    st.session_state.pop(f"{case.name}._redraw", None)
    runs = {"current": run(case, config, device)}
    cache, pending = results(), []
    trained_after = st.session_state.setdefault(f"{case.name}._trained_after", set())
    drawn = compared(case, config, also)
    st.session_state[f"{case.name}._pins_drawn"] = {
        n: p["config"] for p in _pins(case) for n, c in drawn.items() if c == p["config"] and n != "current"
    }
    for name, c in list(drawn.items())[1:]:
        if case.errors(c) or runner.over_limit(case, c, max_run_seconds()):
            continue
        k = cache.key(case, c, device)
        hit = cache.get(k)
        if hit is not None:
            runs[name] = hit
        elif k in trained_after:  # trained after a first view, yet not cached (too big for the cache): train here
            runs[name] = run(case, c, device, label=f"Training {name}, for comparison")
        else:
            pending.append((name, c, k))
    slot = st.empty()
    if pending:
        slot.caption(f"The current run is drawn; next: {', '.join(n for n, _, _ in pending)}, for comparison…")
        st.session_state[f"{case.name}._pending"] = (slot, device, pending)
    else:
        st.session_state.pop(f"{case.name}._pending", None)
    return runs


def train_the_rest(case: Case) -> None:
    """The page's last line: train the compared and pinned runs that `compare` left for after the
    current run's charts, then redraw the page with them (from the cache, at once)."""
    pending = st.session_state.pop(f"{case.name}._pending", None)
    if not pending:
        return
    slot, device, jobs = pending
    trained_after = st.session_state.setdefault(f"{case.name}._trained_after", set())
    with slot.container():
        for name, c, k in jobs:
            run(case, c, device, label=f"Training {name}, for comparison (the current run is drawn)")
            trained_after.add(k)
    st.session_state[f"{case.name}._redraw"] = True  # the same view again: one-off messages are shown again
    st.rerun()


def coinciding(runs: Mapping[str, RunResult]) -> list[str]:
    """The compared runs whose history is the current run's to COINCIDE (relative): their lines lie under it."""
    import numpy as np

    first = runs["current"].history
    out = []
    for name, r in list(runs.items())[1:]:
        h = r.history
        if list(h.columns) != list(first.columns) or len(h) != len(first):
            continue
        a, b = first.select_dtypes("number").to_numpy(float), h.select_dtypes("number").to_numpy(float)
        if a.shape == b.shape and np.allclose(a, b, rtol=COINCIDE, atol=0, equal_nan=True):
            out.append(name)
    return out


def metrics_table(case: Case, config: Any, runs: Mapping[str, RunResult], also: Mapping[str, Any] | None = None):
    """Every run's metrics side by side: one column per run, one row per numeric metric, the first
    row the settings in which the run differs from the current one."""
    import pandas as pd

    configs = compared(case, config, also)
    rows: dict[str, dict[str, str]] = {"settings": {}}
    for name, r in runs.items():
        rows["settings"][name] = "current" if name == "current" else differences(case, configs[name], config)
        for k, v in r.metrics.items():
            v = v.item() if hasattr(v, "item") else v  # numpy scalars
            if isinstance(v, (bool, str)) or not isinstance(v, (int, float)):
                continue
            value = float(v)
            whole = math.isfinite(value) and value == int(value) and abs(value) < 1e6
            rows.setdefault(k, {})[name] = f"{value:,.0f}" if whole else number(value)
    return pd.DataFrame(rows).T.rename_axis("metric").reset_index()


def pins(case: Case, config: Any, runs: Mapping[str, RunResult], also: Mapping[str, Any] | None = None) -> None:
    """The comparison's box: 'Pin this run', the pinned runs (each renamable and removable), every run's
    metrics side by side, one CSV with every run's history, and 'Copy link' (pins travel in the link)."""
    from core import export

    with st.container(border=True):
        left, middle, right = st.columns([2, 2, 3], vertical_alignment="center")
        left.button(
            "Pin this run",
            key=f"{case.name}._pin",
            icon=":material/push_pin:",
            on_click=_pin,
            args=(case, config),
            disabled=len(_pins(case)) >= MAX_PINS,
            help=f"Keep this run on the charts, in its own colour, while you change the settings (at most {MAX_PINS}).",
        )
        with middle:
            copy_link()
        pinned = _pins(case)
        right.caption(
            "Pinned runs stay on the charts while you change the settings, after a visit to another page, "
            "and in the page's link."
        )
        problem = st.session_state.pop(f"{case.name}._pin_problem", None)
        if problem:
            st.warning(problem, icon=":material/edit_off:")
        drawn = compared(case, config, also)
        for p in pinned:
            box = f"{case.name}._pin_name.{p['n']}"
            st.session_state.setdefault(box, p["label"])
            a, b, c = st.columns([3, 6, 2], vertical_alignment="center")
            a.text_input(
                "Name", key=box, max_chars=PIN_NAME_MAX, label_visibility="collapsed",
                on_change=_rename, args=(case, p["n"]), help="Rename this pin: the charts and the link use the name.",
            )  # fmt: skip
            same = next((n for n, c_ in drawn.items() if c_ == p["config"]), None)
            where = "" if same in (None, p["label"]) else f" · drawn as **{same}** (the same run)"
            skipped = runner.over_limit(case, p["config"], max_run_seconds())
            left_out = f" · :red[not drawn: {skipped}]" if skipped else ""
            b.markdown(differences(case, p["config"], config) + where + left_out)
            c.button("Remove", key=f"{case.name}._unpin.{p['n']}", on_click=_unpin, args=(case, p["n"]))
        for name in coinciding(runs):
            st.caption(
                f"current = {name} to {COINCIDE:g}: the two runs' histories agree, so the {name} line lies under "
                "the current one."
            )
        if len(runs) > 1:
            st.dataframe(metrics_table(case, config, runs, also), hide_index=True, width="stretch")
            st.download_button(
                "History of every run (CSV)", export.histories_csv(runs), f"{case.file_stem(config)}-all-runs.csv",
                "text/csv", key=f"{case.name}._csv_all", on_click="ignore", icon=":material/table:",
            )  # fmt: skip


def copy_link() -> None:
    """A 'Copy link' button: the page's URL (its settings and pins) to the clipboard. The page's own
    address is only known in the browser, so the button is a few lines of HTML in a component frame."""
    st.iframe(COPY_LINK_HTML, height=42)


LINK_ICON = (  # drawn inline: no emoji or icon font needed offline
    '<svg width="16" height="16" viewBox="0 0 24 24" fill="currentColor" style="vertical-align:-3px"><path '
    'd="M3.9 12a3.1 3.1 0 0 1 3.1-3.1h4V7H7a5 5 0 0 0 0 10h4v-1.9H7A3.1 3.1 0 0 1 3.9 12zM8 13h8v-2H8v2zm9-6h-4v1.9h4'
    'a3.1 3.1 0 0 1 0 6.2h-4V17h4a5 5 0 0 0 0-10z"/></svg>'
)
COPY_LINK_HTML = f"""<button id="copy" title="Copy this page's link: its settings and pins">
{LINK_ICON} <span>Copy link</span></button>
<style>#copy{{font:400 14px 'Source Sans Pro',sans-serif;padding:6px 12px;border:1px solid #d1d5db;border-radius:8px;
background:white;color:#31333f;cursor:pointer;white-space:nowrap}}#copy:hover{{border-color:#ea580c;color:#ea580c}}</style>
<script>
const b = document.getElementById("copy");
b.onclick = async () => {{
  const url = window.parent.location.href;
  const label = b.querySelector("span");
  try {{ await navigator.clipboard.writeText(url); label.textContent = "Link copied"; }}
  catch (e) {{ window.prompt("Copy this link", url); }}
  setTimeout(() => {{ label.textContent = "Copy link"; }}, 2000);
}};
</script>"""


def pinned(case: Case) -> dict[str, Any]:
    """The pinned runs' settings by the name they are drawn under (a pin equal to a compared run is drawn
    as that run): for a page that shows more than one run per setting. Call after `compare`."""
    return dict(st.session_state.get(f"{case.name}._pins_drawn", {}))


# ------------------------------------------------------------------ export


def downloads(case: Case, config: Any, result: RunResult, charts_by_name: Mapping[str, Any]) -> None:
    """Download the run (CSV history, JSON record), a standalone script, and the figures."""
    from core import export, figures

    name = case.file_stem(config)
    with st.expander("Export: data, a standalone script, figures for reports", icon=":material/download:"):
        cols = st.columns(3)
        cols[0].download_button(
            "History (CSV)", export.history_csv(result), f"{name}-history.csv", "text/csv",
            key=f"{case.name}._csv", on_click="ignore", width="stretch",
        )  # fmt: skip
        cols[1].download_button(
            "Run record (JSON)", export.record_json(case, config, result), f"{name}.json", "application/json",
            key=f"{case.name}._json", on_click="ignore", width="stretch",
        )  # fmt: skip
        cols[2].download_button(
            "Standalone script (.py)", export.script(case, config), f"{name}.py", "text/x-python",
            key=f"{case.name}._script", on_click="ignore", width="stretch",
            help="Plain PyTorch, nothing from this app: it reproduces this run and prints the same metrics.",
        )  # fmt: skip
        st.caption(f"The same from a terminal: `python -m core script {case.name} {_cli_args(case, config)}`")
        pick = st.selectbox("Figure", list(charts_by_name), key=f"{case.name}._figure")
        chart = charts_by_name[pick]
        # a file leaves the app: its legend names each run by its preset and settings, its caption the data
        names, line = figures.report_names(case, compared(case, config)), figures.caption(case, config, result)
        st.caption(f"In the files, the legend reads {', '.join(names.values())}; the caption: *{line}*")
        cols = st.columns(3)
        cols[0].download_button(
            "PNG", lambda: figures.png(chart, names, line), f"{name}-{pick}.png", "image/png",
            key=f"{case.name}._png", on_click="ignore", width="stretch",
        )  # fmt: skip
        cols[1].download_button(
            "SVG", lambda: figures.svg(chart, names, line), f"{name}-{pick}.svg", "image/svg+xml",
            key=f"{case.name}._svg", on_click="ignore", width="stretch",
        )  # fmt: skip
        cols[2].download_button(
            "All figures (zip)", lambda: figures.zipped(charts_by_name, name, names, line), f"{name}-figures.zip",
            "application/zip",
            key=f"{case.name}._zip", on_click="ignore", width="stretch",
        )  # fmt: skip
        st.caption(f"Headless: `python -m core figures {case.name} {_cli_args(case, config)} --out figures/`")


def _cli_args(case: Case, config: Any) -> str:
    params = url_params(case, config, page=False)
    args = [f"--preset {params.pop('preset')}"] if "preset" in params else []
    return " ".join(args + [f"--set {k}={v}" for k, v in params.items()])


# ------------------------------------------------------------------ learning-rate range test


def lr_finder(
    case: Case,
    config: Any,
    device: torch.device,
    task: Callable,
    limit: float | None = None,
    limit_label: str = "2/λmax",
) -> None:
    """fastai's range test on demand: the loss against an exponentially growing rate, with fastai's
    four rules' rates marked; each rate then trains on the case's short budget (`Case.trial`), and
    only the one that ended lowest, and lower than the current rate, is offered. `limit`: an
    analytic stability limit to draw, named `limit_label`."""
    from core import lrfind

    flag = f"{case.name}._lr_find"
    with st.expander(
        "Find the learning rate (range test)", icon=":material/search:", expanded=bool(st.session_state.get(flag))
    ):
        st.caption(
            "Train briefly while the learning rate grows exponentially; the loss first falls, then explodes. "
            "fastai's four rules read a rate off that curve (valley, its default; slide; minimum; steep). A rule "
            "reads the curve, not your run: each rate is then tried on a short run, and only one that ends lower "
            "than the current lr is offered."
        )
        if not st.session_state.get(flag):
            st.button(
                "Run the range test",
                key=f"{case.name}._lr_find_go",
                on_click=st.session_state.__setitem__,
                args=(flag, True),
            )
            return
        found = run(case, config, device, label="Learning-rate range test", task=task)
        chart(charts.lr_find_chart(found, current=config.lr, limit=limit, limit_label=limit_label))
        proposed = lrfind.candidates(found.metrics, config.lr)
        if not proposed:
            st.info("The loss never fell over the range: no rule gives a rate.")
            return
        short = case.trial(config, config.lr)
        column, now = lrfind.end_loss(run(case, short, device, label=f"Short run at the current lr {config.lr:.3g}"))
        what = "MSE" if column == "mse" else column
        measured, rows = {}, []
        for lr, names in proposed.items():
            trial = case.trial(config, lr)
            problems = case.errors(trial)
            if problems:
                ended = None
            else:
                _, ended = lrfind.end_loss(run(case, trial, device, label=f"Short run at lr {lr:.3g} ({names[0]})"))
                measured[lr] = ended
            rows.append(_candidate_row(", ".join(names), lr, ended, now, what, limit, limit_label, problems))
        rows.append(_candidate_row("current", config.lr, now, now, what, limit, limit_label, []))
        st.dataframe(rows, hide_index=True, width="stretch")
        budget = "the page's own budget" if short == config else f"a short budget: {differences(case, short, config)}"
        st.caption(
            f"Each rate trained on {budget}, from the same initial weights; {what} averaged over its last tenth."
        )
        if limit:
            ratios = [lr / limit for lr in proposed]
            st.caption(
                f"Against the stability limit {limit_label} = {limit:.3g}: the current lr is "
                f"{config.lr / limit:.3g}× it, the rules' rates {min(ratios):.3g}× to {max(ratios):.3g}×. Above 1× "
                "the steepest direction diverges; far below it, the flat directions crawl."
            )
        offered = lrfind.best(measured, now)
        if offered is None:
            st.info(
                f"None of the rules' rates ended lower than the current lr {config.lr:.3g} on the short run: "
                "no rate to offer. The curve's rules are shown above for reference.",
                icon=":material/block:",
            )
            return
        gain = 1 - measured[offered] / now
        st.button(
            f"Use lr = {offered:.3g}",
            key=f"{case.name}._lr_use",
            on_click=load,
            args=(case, {"lr": offered}),
            type="primary",
            help=f"{', '.join(proposed[offered])}: ended {gain:.0%} lower than the current lr on the short run.",
        )
        relation = f", {offered / limit:.3g} × {limit_label} = {limit:.3g}" if limit else ""
        st.caption(f"Ends {gain:.0%} lower than lr {config.lr:.3g} on the short run{relation}.")


def _fmt(value: float | None) -> str:
    if value is None:
        return "not run"
    return "diverged" if not math.isfinite(value) else f"{value:.4g}"


def _candidate_row(rule, lr, ended, now, what, limit, limit_label, problems) -> dict[str, str]:
    if ended is not None and math.isfinite(ended) and math.isfinite(now) and now > 0:
        versus = "—" if rule == "current" else f"{ended / now:.3g}×"
    else:
        versus = "; ".join(problems) if problems else "—"
    row = {"rule": rule, "lr": f"{lr:.3g}"}
    if limit:
        row[f"lr / {limit_label}"] = f"{lr / limit:.3g}"
    return row | {f"{what} after the run": _fmt(ended), "vs current": versus}
