"""Page setup and the session's basics: the result cache, the run limit, the page's look, the device
badge, widget keys and the settings a page starts from."""

from __future__ import annotations

import importlib
import math
import os
import threading

import streamlit as st
import torch

from core import device as device_
from core import runner
from core.case import Case

RESULTS_MAX_BYTES = 256 << 20  # finished runs kept per server process, in bytes of their tables
PROGRESS_EVERY_S = 0.25  # how often the bar and the growing curve are redrawn
MAX_RUN_SECONDS_ENV = "CLINIC_MAX_RUN_SECONDS"  # raises (or lowers) the limit on one run's estimated cost
MAX_RUN_SECONDS = 120.0  # the default: about 2 minutes on a 2-core CPU
LINK_CONFIRM_SECONDS = 20.0  # a link whose run is estimated longer than this waits for a Run click


@st.cache_resource(show_spinner=False)
def results() -> runner.ResultCache:
    """One bounded cache of finished runs for the whole server, keyed by (case, config, device)."""
    return runner.ResultCache(RESULTS_MAX_BYTES)


@st.cache_resource(show_spinner=False)
def warm_up() -> threading.Thread:
    """Once per server process, in the background: the import the first run would otherwise wait for
    (torch.optim imports torch._dynamo on its first step: ~1 s on the 2-core CPU, paid by the first page
    that trains). Called at the end of the home page, so that it runs while the person reads it, not
    while the page draws; a run that starts before it is done waits on Python's import lock, never twice."""
    thread = threading.Thread(target=importlib.import_module, args=("torch._dynamo",), name="warm-up", daemon=True)
    thread.start()
    return thread


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
# buttons may wrap their label rather than cut it; below 1280 px the side margins shrink, so that a chart
# in half of the page is over 300 px wide at 1024 px
FIT_CSS = """<style>
[data-testid="stMetricLabel"] p, [data-testid="stMetricLabel"] div {white-space: normal !important; overflow: visible;}
[data-testid="stMetricValue"] {font-size: clamp(1.3rem, 2.1vw, 2.25rem);}
[data-testid="stMetricValue"] div {overflow: visible; text-overflow: clip;}
[data-testid="stMetricDelta"] div, [data-testid="stMetricDelta"] p {white-space: normal !important; overflow: visible;}
[data-testid="stBaseButton-secondary"] p, [data-testid="stBaseButton-primary"] p
{white-space: normal; overflow: visible;}
@media (max-width: 1280px) {[data-testid="stMainBlockContainer"] {padding-left: 1.5rem; padding-right: 1.5rem;}}
</style>"""
# A training run's live panel (core/ui/runs.py: the bar and Stop, then the curve) takes the place of what it becomes:
# laid over the last view's greyed metrics and charts (out of the flow, its gap taken back), it does not push them
# down, and when the run ends they are replaced where they stand. Measured at 1440 px: in the flow, the panel
# pushed them down 352 px (itself and its gap); with a negative margin its height varied with its content.
LIVE_CSS = """<style>
div:has(> [class*="st-key-clinic-live"]) {position: relative; margin-bottom: -1rem;}
[class*="st-key-clinic-live"] {position: absolute; top: 0; left: 0; right: 0; z-index: 3; background: white;}
</style>"""


def page(title: str, icon: str = "🩺") -> None:
    """Page config and the sidebar's navigation (Streamlit's own list is turned off in
    .streamlit/config.toml so that the home page is called Home, not app). icon: the tab's icon, an
    emoji (`Case.emoji`): Streamlit draws an emoji favicon itself but fetches a material one online."""
    from core import registry

    st.set_page_config(page_title=f"{title} · Convergence Clinic", page_icon=icon, layout="wide")
    st.markdown(FIT_CSS + LIVE_CSS, unsafe_allow_html=True)
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
