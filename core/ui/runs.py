"""Running and showing: a run with its live panel, Stop and the wait for a slot; charts, findings and
the code that ran."""

from __future__ import annotations

import inspect
import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st
import torch

from core import charts, runner
from core.case import Case, Finding
from core.charts.specs import SpecCache
from core.settings import SettingError, to_text
from core.train import Progress, RunResult
from core.ui.base import PROGRESS_EVERY_S, max_run_seconds, results
from core.ui.settings import load

# ------------------------------------------------------------------ running

# what a run trained after the page is drawn says in its bar (and what the interaction benchmark looks for)
AFTER_DRAWN = "the current run is drawn"


def run(
    case: Case,
    config: Any,
    device: torch.device,
    label: str = "Training",
    task: Callable | None = None,
    curve: bool = True,
) -> RunResult:
    """A finished result from the cache, or train now with a progress bar, the time left, a
    growing loss curve and a Stop button. A settings change mid-run interrupts it at the next
    redraw; nothing is cached then. A run that came from a link and is estimated over
    LINK_CONFIRM_SECONDS, or that the user stopped, waits for a Run click (the page stops
    there). Heavy runs may wait for a free slot first, with their place in the line shown.
    `task`: another function of the case to run with the config (default: its run). `curve=False`: the
    bar and Stop only, for a run trained after the page is drawn (a comparison, a seed), so that the
    page below it moves by a bar's height, not a chart's; its bar says so (AFTER_DRAWN)."""
    # the panel's place, also when the result is cached: the page's later elements keep their places between a
    # pass that trains and one that does not (else a shifted block shows the last pass's elements in the wrong place)
    box = st.empty()
    cache = results()
    cache_key = cache.key(case, config, device, task)
    hit = cache.get(cache_key)
    if hit is not None:
        return hit
    _hold_for_run_click(case, config, cache_key, task)
    if not curve:
        label = f"{label} ({AFTER_DRAWN})"
    # with its curve, the panel lies over the last view's greyed metrics and charts rather than pushing them
    # down (base.LIVE_CSS): they are replaced in place when the run ends
    with box.container(key=f"clinic-live-{hash(cache_key) & 0xFFFFFFFF:08x}" if curve else None):
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
        plot = st.empty()
        if curve:  # the chart's place from the start: the page below does not jump when the curve appears
            plot.html(f'<div style="height:{charts.HEIGHT}px"></div>')
    last, started, live = [0.0], time.monotonic(), {}

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
        if curve:  # one spec for the run, built once: each redraw sends only the new rows (`live_loss_spec`)
            spec = live.get(p.name) or live.setdefault(p.name, charts.live_loss_spec(p.name, p.total))
            plot.vega_lite_chart(charts.live_frame(p.loss), spec, width="stretch", theme=None)

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


@st.cache_resource(show_spinner=False)
def _figure_cache() -> SpecCache:
    return SpecCache()  # one per server process, shared by its sessions (thread-safe, bounded in bytes)


def figures(build: Callable[..., Mapping[str, Any]], runs: Mapping[str, RunResult], **options: Any) -> dict:
    """`build(runs, **options)`'s charts as Vega-Lite specs, reused while these very runs are drawn
    again: a rerun with cached results draws without building its charts (core/charts/specs.py)."""
    return _figure_cache().figures(build, runs, **options)


def chart(c) -> None:
    """An Altair chart, or a Vega-Lite spec from `figures`."""
    if isinstance(c, dict):
        st.vega_lite_chart(spec=c, width="stretch", theme=None)
    else:
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
