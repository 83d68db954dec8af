"""The panels under the charts: exports (data, script, figures) and the learning-rate range test."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import streamlit as st
import torch

from core import charts
from core.case import Case
from core.train import RunResult
from core.ui.compare import compared
from core.ui.runs import chart, run
from core.ui.settings import differences, load, url_params

# ------------------------------------------------------------------ export


def downloads(case: Case, config: Any, result: RunResult, charts_by_name: Mapping[str, Any]) -> None:
    """Download the run (CSV history, JSON record), a standalone script, and the figures."""
    from core import export, figures

    name = case.file_stem(config)
    with st.expander("Export: data, a standalone script, figures for reports", icon=":material/download:"):
        cols = st.columns(3)
        cols[0].download_button(
            "History (CSV)", lambda: export.history_csv(result), f"{name}-history.csv", "text/csv",
            key=f"{case.name}._csv", on_click="ignore", width="stretch",
        )  # fmt: skip
        cols[1].download_button(
            "Run record (JSON)", lambda: export.record_json(case, config, result), f"{name}.json", "application/json",
            key=f"{case.name}._json", on_click="ignore", width="stretch",
        )  # fmt: skip
        cols[2].download_button(
            "Standalone script (.py)", lambda: export.script(case, config), f"{name}.py", "text/x-python",
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
        st.table(rows, hide_index=True)
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
