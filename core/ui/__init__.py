"""The one bridge between core and Streamlit: pages call these helpers; nothing else in core
imports Streamlit. Split by concern, each module importing only those above it:

    base.py      the result cache, the run limit, the page's look, the device badge, widget keys
    settings.py  widgets bound to a case's settings, the link that carries them (and the pins), presets, uploads
    runs.py      a run with its live panel, Stop and the wait for a slot; charts, findings, the code that ran
    seeds.py     the seed set: the current settings over a few seeds, their spread, a button per seed
    compare.py   the current run first, then the as-posted run and the pins, each drawn once under one name
    panels.py    the export panel and the learning-rate range test
"""

from core.ui.base import (
    LINK_CONFIRM_SECONDS,
    MAX_RUN_SECONDS,
    badge,
    device_sidebar,
    keep,
    key,
    max_run_seconds,
    page,
    results,
    warm_up,
)
from core.ui.compare import coinciding, compare, compared, pinned, pins, train_the_rest
from core.ui.panels import downloads, lr_finder
from core.ui.runs import chart, chart_row, figures, findings, number, on_demand, run, sharpness, show_code
from core.ui.seeds import seeds
from core.ui.settings import (
    bool_setting,
    build_config,
    choice_setting,
    differences,
    from_url,
    init_settings,
    int_setting,
    load,
    log_slider,
    pin_label,
    points_upload,
    preset_buttons,
    text_setting,
    to_url,
    url_params,
    widget_value,
)
from core.ui.view import loss_view

__all__ = [
    "LINK_CONFIRM_SECONDS", "MAX_RUN_SECONDS", "badge", "bool_setting", "build_config", "chart", "chart_row",
    "choice_setting", "coinciding", "compare", "compared", "device_sidebar", "differences", "downloads", "figures",
    "findings", "from_url", "init_settings", "int_setting", "keep", "key", "load", "log_slider", "loss_view",
    "lr_finder", "max_run_seconds", "number", "on_demand", "page", "pin_label", "pinned", "pins", "points_upload",
    "preset_buttons", "results", "run", "seeds", "sharpness", "show_code", "text_setting", "to_url",
    "train_the_rest", "url_params", "warm_up", "widget_value",
]  # fmt: skip
