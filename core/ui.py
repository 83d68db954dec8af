"""The one bridge between core and Streamlit: page setup, the device badge, settings
widgets bound to the registry, the result cache, and progress while a run trains.

Pages call these helpers; nothing else in core imports Streamlit.
"""

from __future__ import annotations

import dataclasses
import inspect
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

RESULTS_MAX_ENTRIES = 64  # finished runs kept per server process (a few MB each at most)
PROGRESS_EVERY_S = 0.25  # how often the bar and the growing curve are redrawn


@st.cache_resource(show_spinner=False)
def results() -> runner.ResultCache:
    """One bounded cache of finished runs for the whole server, keyed by (case, config, device)."""
    return runner.ResultCache(RESULTS_MAX_ENTRIES)


# ------------------------------------------------------------------ page and device


def page(title: str, icon: str = ":material/stethoscope:") -> None:
    """Page config and the sidebar's navigation (Streamlit's own list is turned off in
    .streamlit/config.toml so that the home page is called Home, not app)."""
    from core import registry

    st.set_page_config(page_title=f"{title} · Convergence Clinic", page_icon=icon, layout="wide")
    keep("force_cpu", *(key(c, s.name) for c in registry.CASES.values() for s in c.settings))
    with st.sidebar:
        st.page_link("app.py", label="Home", icon=":material/home:")
        for i, c in enumerate(registry.CASES.values(), start=1):
            st.page_link(c.page, label=f"{i} · {c.short}", icon=c.icon)


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
    """The shortest URL query for `config`: the preset it differs least from and the settings
    in which it differs (`preset=fixed&seed=3`); no preset when that is as-posted. page: the
    presets as the page opens them (`Case.first_view`); False: the presets themselves (the CLI's)."""
    presets = {n: case.page_preset(n) if page else p for n, p in case.presets.items()}

    def differences(base: Any) -> dict[str, str]:
        return {
            f.name: to_text(getattr(config, f.name))
            for f in dataclasses.fields(config)
            if getattr(config, f.name) != getattr(base, f.name) and case.kind(f.name) != "points"  # uploads stay out
        }

    found = {n: differences(p) for n, p in presets.items()}
    name = min(found, key=lambda n: (len(found[n]), n != "as-posted"))  # ties: as-posted, then preset order
    if not found[name] or name != "as-posted":
        return {"preset": name} | found[name]
    return found[name]


def _signature(params: Mapping[str, str]) -> str:
    return "&".join(f"{k}={v}" for k, v in sorted(params.items()))


def from_url(case: Case) -> None:
    """Apply ?preset=NAME&KEY=VALUE... once per new link. Invalid or stale values fall back to
    the preset's (or as-posted's) value, with a notice; never an exception."""
    params = {k: st.query_params[k] for k in st.query_params}
    marker = f"{case.name}._url"
    if not params or st.session_state.get(marker) == _signature(params):
        return
    st.session_state[marker] = _signature(params)
    notices = []
    preset = params.pop("preset", "as-posted")
    if preset not in case.presets:
        notices.append(f"preset={preset!r} is not a preset of this page ({', '.join(case.presets)}): using as-posted")
        preset = "as-posted"
    values = dataclasses.asdict(case.page_preset(preset))
    for name, text in params.items():
        try:
            s = case.setting(name)
            value = parse(s, case.kind(name), text)
            check_value(s, case.kind(name), value)
            values[name] = value
        except SettingError as e:
            notices.append(f"{e}; using {to_text(values[name])}" if name in values else f"ignored {name}={text!r}")
    config = case.config_cls(**values)
    if case.check(config):  # a combination the case refuses: the preset as it is
        notices += [f"{p}; using the preset {preset!r} unchanged" for p in case.check(config)]
        config = case.page_preset(preset)
    load(case, dataclasses.asdict(config))
    st.session_state[f"{case.name}._notices"] = notices


def to_url(case: Case, config: Any) -> None:
    """Write the current settings into the page's URL, so the link reproduces this view."""
    params = url_params(case, config)
    st.session_state[f"{case.name}._url"] = _signature(params)
    if {k: st.query_params[k] for k in st.query_params} != params:
        st.query_params.from_dict(params)
    for notice in st.session_state.pop(f"{case.name}._notices", []):
        st.warning(f"From the link: {notice}", icon=":material/link_off:")


def widget_value(case: Case, name: str, value: Any) -> Any:
    """A config value as its widget holds it: text for text boxes, the value otherwise."""
    return to_text(value) if case.kind(name) in ("float", "widths") else value


def load(case: Case, values: Mapping[str, Any]) -> None:
    """Set widgets to these config values (a preset, or a diagnosis's fix). For callbacks."""
    for name, value in values.items():
        st.session_state[key(case, name)] = widget_value(case, name, value)


def preset_buttons(case: Case) -> None:
    st.caption("Load a preset")
    cols = st.columns(2)
    for i, name in enumerate(case.presets):
        cols[i % 2].button(
            name,
            key=f"{case.name}.load.{name}",
            on_click=load,
            args=(case, dataclasses.asdict(case.presets[name])),
            width="stretch",
        )


def _label(case: Case, name: str) -> dict:
    return {"label": name, "key": key(case, name), "help": case.setting(name).help}


def text_setting(case: Case, name: str) -> str:
    """A free-text setting (numbers over decades, layer widths); checked when the config is built."""
    return st.text_input(**_label(case, name))


def int_setting(case: Case, name: str, step: int = 1) -> int:
    s = case.setting(name)
    return st.number_input(**_label(case, name), min_value=int(s.lo), max_value=int(s.hi), step=step)


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
    return config, case.errors(config)


def build_config(case: Case) -> Any:
    """The config from the widgets, or a clear error per bad setting and a stop (never a traceback)."""
    config, problems = _from_widgets(case)
    if problems:
        for p in problems:
            st.error(f"**{p.split(':', 1)[0]}**: {p.split(':', 1)[1].strip()}", icon=":material/error:")
        st.stop()
    to_url(case, config)
    if any(case.kind(f.name) == "points" and getattr(config, f.name) for f in dataclasses.fields(config)):
        st.caption("Your uploaded points are not part of the page's link.")
    return config


def points_upload(case: Case) -> None:
    """A CSV upload for the case's `points` setting. A bad file is a message and the page goes
    on with the data it had; removing the file returns to the posted data."""
    from core.points import MAX_BYTES, parse_csv

    k, marker = key(case, "points"), f"{case.name}._upload_id"
    up = st.file_uploader(
        "Your own (x, y) points",
        type=["csv", "txt"],
        key=f"{case.name}._upload",
        help=f"CSV: two numeric columns, x and y (a header row is fine), at most {MAX_BYTES // 1_000_000} MB.",
    )
    if up is None:
        if st.session_state.get(marker):  # the file was removed
            st.session_state[k], st.session_state[marker] = (), None
        return
    if st.session_state.get(marker) == up.file_id:
        return
    try:
        pts = parse_csv(up.getvalue())
        current, _ = _from_widgets(case)
        if current is not None:
            bad = [p for p in case.check(dataclasses.replace(current, points=pts)) if p.startswith("points")]
            if bad:
                raise SettingError.of(bad)
    except SettingError as e:
        st.error(f"{up.name}: {e}. Using the data from before.", icon=":material/error:")
        return
    st.session_state[k], st.session_state[marker] = pts, up.file_id


# ------------------------------------------------------------------ running


def run(
    case: Case, config: Any, device: torch.device, label: str = "Training", task: Callable | None = None
) -> RunResult:
    """A finished result from the cache, or train now with a progress bar and a growing loss
    curve. A settings change mid-run interrupts it at the next redraw; nothing is cached then.
    `task`: another function of the case to run with the config (default: its run)."""
    cache = results()
    cache_key = cache.key(case, config, device, task)
    hit = cache.get(cache_key)
    if hit is not None:
        return hit
    box = st.empty()
    with box.container():
        bar = st.progress(0.0, text=f"{label}…")
        curve = st.empty()
    last = [0.0]

    def on_progress(p: Progress) -> None:
        now = time.monotonic()
        if now - last[0] < PROGRESS_EVERY_S:
            return
        last[0] = now
        bar.progress(p.step / p.total, text=f"{label}: step {p.step:,} of {p.total:,}")
        curve.altair_chart(charts.live_loss(p.loss), width="stretch", theme=None)

    try:
        result = runner.execute(case, config, device, on_progress, task=task)
    except SettingError as e:  # validated already; kept as a guard against a bad preset
        box.empty()
        st.error(str(e))
        st.stop()
    box.empty()
    cache.put(cache_key, result)
    return result


# ------------------------------------------------------------------ showing


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


def findings(case: Case, found: list[Finding]) -> None:
    """Diagnosis cards: the measured evidence, and a button that applies the fix."""
    if not found:
        st.success("No known problem left in these settings.", icon=":material/check_circle:")
        return
    cols = st.columns(min(len(found), 2))
    for i, f in enumerate(found):
        with cols[i % len(cols)].container(border=True):
            st.markdown(f"**{f.title}**")
            st.write(f.evidence)
            change = ", ".join(f"{k} = {to_text(v)}" for k, v in f.fix.items())
            st.button(f"Apply: {change}", key=f"{case.name}.fix.{f.key}", on_click=load, args=(case, f.fix))


def show_code(*functions: Callable) -> None:
    with st.expander("The code that ran"):
        for fn in functions:
            st.code(inspect.getsource(fn), language="python")


# ------------------------------------------------------------------ pinned runs


def _pins(case: Case) -> list[dict]:
    return st.session_state.setdefault(f"{case.name}._pins", [])


def _pin(case: Case, config: Any) -> None:
    pins = _pins(case)
    if all(p["config"] != config for p in pins):
        n = max((p["n"] for p in pins), default=0) + 1
        pins.append(
            {
                "n": n,
                "label": f"pin {n}" + (f" ({case.preset_name(config)})" if case.preset_name(config) else ""),
                "config": config,
            }
        )


def _unpin(case: Case, n: int) -> None:
    st.session_state[f"{case.name}._pins"] = [p for p in _pins(case) if p["n"] != n]


def differences(case: Case, config: Any, other: Any) -> str:
    """The settings in which `config` differs from `other`, as text."""
    diff = [f"{f} = {to_text(v) or 'none'}" for f, v in dataclasses.asdict(config).items() if v != getattr(other, f)]
    return ", ".join(diff) or "same settings"


def pins(case: Case, config: Any, device: torch.device) -> dict[str, RunResult]:
    """'Pin this run' and the list of pinned runs (kept for the session, across pages).
    Returns the pinned runs' results by label, to overlay on the charts."""
    runs = {}
    with st.container(border=True):
        left, right = st.columns([1, 4], vertical_alignment="center")
        left.button(
            "Pin this run",
            key=f"{case.name}._pin",
            icon=":material/push_pin:",
            on_click=_pin,
            args=(case, config),
            help="Keep this run on the charts, in its own colour, while you change the settings.",
        )
        pinned = _pins(case)
        if not pinned:
            right.caption(
                "Pinned runs stay on the charts while you change the settings, also after a visit to another page."
            )
        for p in pinned:
            a, b = st.columns([4, 1], vertical_alignment="center")
            a.markdown(f"**{p['label']}**: {differences(case, p['config'], config)}")
            b.button("Remove", key=f"{case.name}._unpin.{p['n']}", on_click=_unpin, args=(case, p["n"]))
            if p["config"] != config:
                runs[p["label"]] = run(case, p["config"], device, label=f"Pinned run {p['label']}")
    return runs


def pinned(case: Case) -> dict[str, Any]:
    """The pinned runs' settings by label: for a page that shows more than one run per setting."""
    return {p["label"]: p["config"] for p in _pins(case)}


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
        cols = st.columns(3)
        cols[0].download_button(
            "PNG", lambda: figures.png(chart), f"{name}-{pick}.png", "image/png",
            key=f"{case.name}._png", on_click="ignore", width="stretch",
        )  # fmt: skip
        cols[1].download_button(
            "SVG", lambda: figures.svg(chart), f"{name}-{pick}.svg", "image/svg+xml",
            key=f"{case.name}._svg", on_click="ignore", width="stretch",
        )  # fmt: skip
        cols[2].download_button(
            "All figures (zip)", lambda: figures.zipped(charts_by_name, name), f"{name}-figures.zip", "application/zip",
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
    """fastai's range test on demand: the loss against an exponentially growing rate, the
    suggested rate marked, one click to use it. `limit`: an analytic stability limit to draw,
    named `limit_label`."""
    flag = f"{case.name}._lr_find"
    with st.expander(
        "Find the learning rate (range test)", icon=":material/search:", expanded=bool(st.session_state.get(flag))
    ):
        st.caption(
            "Train briefly while the learning rate grows exponentially; the loss first falls faster, then explodes. "
            "The suggestion is where it fell fastest (fastai's lr_find)."
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
        suggested = found.metrics["suggested_lr"]
        chart(charts.lr_find_chart(found, current=config.lr, limit=limit, limit_label=limit_label))
        if suggested is None:
            st.info("The loss never fell over the range: no rate to suggest.")
            return
        st.button(
            f"Use lr = {suggested:.3g}",
            key=f"{case.name}._lr_use",
            on_click=load,
            args=(case, {"lr": float(f"{suggested:.3g}")}),
            type="primary",
        )
