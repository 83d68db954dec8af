"""Comparing runs: the current run first, then the as-posted run and the pins (named, renamed, in the
link, in a table with their metrics), drawn once each under one name and colour."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import streamlit as st
import torch

from core import runner
from core.case import Case
from core.train import RunResult
from core.ui.base import max_run_seconds, results
from core.ui.runs import number, run
from core.ui.seeds import train_seeds
from core.ui.settings import MAX_PINS, PIN_NAME, PIN_NAME_MAX, _pins, differences, pin_label

# ------------------------------------------------------------------ the current run, its comparisons, pins

COINCIDE = 1e-6  # relative: a compared run whose history is the current one's to this is said to coincide


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
    current run's charts, then redraw the page with them (from the cache, at once). With none left,
    the seed set's runs (`seeds`), then the same redraw."""
    pending = st.session_state.pop(f"{case.name}._pending", None)
    if not pending:
        if train_seeds(case):
            st.session_state[f"{case.name}._redraw"] = True
            st.rerun()
        return
    slot, device, jobs = pending
    trained_after = st.session_state.setdefault(f"{case.name}._trained_after", set())
    with slot.container():
        for name, c, k in jobs:
            run(case, c, device, label=f"Training {name}, for comparison", curve=False)
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
        # drawn already while the compared runs train (their columns join it then): the charts below keep their place
        if len(runs) > 1 or st.session_state.get(f"{case.name}._pending"):
            st.table(metrics_table(case, config, runs, also), hide_index=True)
            st.download_button(
                "History of every run (CSV)", lambda: export.histories_csv(runs),
                f"{case.file_stem(config)}-all-runs.csv", "text/csv",
                key=f"{case.name}._csv_all", on_click="ignore", icon=":material/table:",
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
