"""The seed set (`Case.spread`): the current settings over a few seeds, trained after the page has drawn
the current run and its comparisons, then the spread of one metric (median, range, how many seeds fail)
and a button per seed that draws it."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import streamlit as st
import torch

from core import runner
from core.case import Case
from core.seeds import fails, seeds_text, summarize
from core.train import RunResult
from core.ui.base import max_run_seconds, results
from core.ui.runs import number, on_demand, run
from core.ui.settings import load

SEED_SET_SECONDS = 30.0  # a seed set estimated longer (its uncached runs together) waits for a click
SEED_METRICS_KEPT = 64  # a session's seed metrics kept beside the cache (a result too big for the cache)


def seeds(case: Case, config: Any, device: torch.device, result: RunResult) -> None:
    """The spread panel: over `case.spread.seeds`, the metric's median and range and the seeds that
    fail, and a button per seed (the drawn one marked). The seeds not cached yet train at the page's
    end (`train_the_rest`, after the comparisons), and the page then redraws with them; until then the
    panel says they are coming. Nothing for a case without a spread, or settings over the run limit."""
    st.session_state.pop(f"{case.name}._seeds_pending", None)
    spread = case.spread
    if spread is None or not spread.applies(config) or runner.over_limit(case, config, max_run_seconds()):
        return
    cache, known = results(), st.session_state.setdefault(f"{case.name}._seed_metrics", {})
    values: dict[int, float] = {}
    pending = []
    for s in spread.seeds:
        if s == config.seed:
            values[s] = result.metrics.get(spread.metric, math.nan)
            continue
        c = dataclasses.replace(config, seed=s)
        k = cache.key(case, c, device)
        hit = cache.get(k)
        if hit is not None:
            values[s] = hit.metrics.get(spread.metric, math.nan)
        elif k in known:
            values[s] = known[k]
        else:
            pending.append((s, c, k))
    with st.container(border=True):
        slot = st.empty()
        over = f"Over seeds {seeds_text(spread.seeds)}"
        seconds = sum(case.cost(c).seconds for _, c, _ in pending)
        if pending and seconds > SEED_SET_SECONDS and not on_demand(
            f"{case.name}._seed_set", f"Train seeds {seeds_text(spread.seeds)}", config,
            f"{over}: the spread needs {len(pending)} more runs of these settings, about {seconds:.0f} s together "
            "(estimated).",
        ):  # fmt: skip
            pending = []
        elif pending:
            waiting = ", ".join(str(s) for s, _, _ in pending)
            slot.caption(f"{over}: training seed{'s' * (len(pending) > 1)} {waiting} for the spread…")
            st.session_state[f"{case.name}._seeds_pending"] = (slot, device, pending)
        elif len(values) == len(spread.seeds):
            slot.markdown(f"**{over}**: {spread_text(case, values)}")
        for column, s in zip(st.columns(len(spread.seeds)), spread.seeds, strict=True):
            value = values.get(s)
            state = "" if value is None else f"{spread.label} {number(value)}"
            if value is not None and fails(spread, value):
                state += f": {spread.failed}"
            column.button(
                f"seed {s}",
                key=f"{case.name}.draw_seed.{s}",
                type="primary" if s == config.seed else "secondary",
                on_click=load,
                args=(case, {"seed": s}),
                width="stretch",
                help=("Drawn now. " if s == config.seed else f"Draw seed {s}. ") + state,
            )


def spread_text(case: Case, values: dict[int, float]) -> str:
    """'RMSE median 0.1179 (0.0986–1.122); 1 of 5 seeds stay stuck (RMSE > 0.3): seed 1'."""
    spread = case.spread
    s = summarize(spread, values)
    which = f": seed{'s' * (len(s.failed) > 1)} {', '.join(map(str, s.failed))}" if 0 < len(s.failed) < s.n else ""
    return (
        f"{spread.label} median {number(s.median)} ({number(s.lo)}–{number(s.hi)}); "
        f"{len(s.failed)} of {s.n} seeds {spread.failed} ({spread.label} > {spread.threshold:g}){which}"
    )


def train_seeds(case: Case) -> bool:
    """Train the seeds `seeds` left for the page's end, in its panel; True when any trained (the page
    should redraw)."""
    pending = st.session_state.pop(f"{case.name}._seeds_pending", None)
    if not pending:
        return False
    slot, device, jobs = pending
    known = st.session_state.setdefault(f"{case.name}._seed_metrics", {})
    with slot.container():
        for s, c, k in jobs:
            r = run(case, c, device, label=f"Training seed {s} for the spread", curve=False)
            known[k] = r.metrics.get(case.spread.metric, math.nan)
            while len(known) > SEED_METRICS_KEPT:
                known.pop(next(iter(known)))
    return True
