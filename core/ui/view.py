"""How the loss charts are drawn, as TensorBoard users expect: EMA smoothing with the raw curve
faint, and a log or linear scale. A view of the results, not a setting of a run: it is not in
the config, the run cache or the link; each page keeps its own (`core.charts.loss_layers` draws it)."""

from __future__ import annotations

from typing import Any, Literal

import streamlit as st

from core.case import Case
from core.ui.base import key

SMOOTHING_HELP = "TensorBoard-style exponential moving average; the raw curve stays faint"


def loss_view(case: Case, side: Literal["left", "right"] = "left") -> dict[str, Any]:
    """A compact row above the loss chart (in the left or right half, where the loss chart is): the
    smoothing slider and the log-scale toggle. Returns the options for `ui.figures` (`smoothing`,
    `log_scale`). The values are kept in plain session state too, so a visit to another page, which
    drops the widgets' own state, does not reset them."""
    kept = key(case, "_loss_view")  # {"smoothing": ..., "log_scale": ...}
    before = st.session_state.get(kept, {"smoothing": 0.0, "log_scale": True})
    half = st.columns(2)[0 if side == "left" else 1]
    with half:
        slider, toggle = st.columns([3, 2], vertical_alignment="bottom")
        smoothing = slider.slider(
            "Loss smoothing (EMA)",
            min_value=0.0,
            max_value=0.99,
            value=float(before["smoothing"]),
            step=0.01,
            key=key(case, "_smoothing"),
            help=SMOOTHING_HELP,
        )
        log_scale = toggle.toggle(
            "Log scale",
            value=bool(before["log_scale"]),
            key=key(case, "_log_scale"),
            help="The loss axis: log or linear.",
        )
    options = {"smoothing": float(smoothing), "log_scale": bool(log_scale)}
    st.session_state[kept] = options
    return options
