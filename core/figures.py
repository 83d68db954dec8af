"""Figures for reports: a case's charts as PNG and SVG, from the page or headless.

The charts are the page's own (`Case.figures`), carrying their own look,
so a figure looks like the page. vl-convert renders Vega-Lite without a browser.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import altair as alt

from core.case import Case
from core.train import RunResult

EXPORT_WIDTH = 640  # px; the page stretches charts to its column, a file needs a width
PNG_SCALE = 2  # 2x pixels: sharp in documents


def charts_for(case: Case, runs: Mapping[str, RunResult]) -> dict[str, alt.TopLevelMixin]:
    """The page's charts by name, for these runs ({"current": ..., "as-posted": ..., pins...})."""
    return case.figures(runs)


def sized(chart: alt.TopLevelMixin) -> dict:
    """The chart's Vega-Lite spec with a fixed width for single and layered charts."""
    spec = chart.to_dict()
    if not any(k in spec for k in ("hconcat", "vconcat", "concat", "facet")):
        spec["width"] = EXPORT_WIDTH
    return spec


def png(chart: alt.TopLevelMixin) -> bytes:
    import vl_convert as vlc

    return vlc.vegalite_to_png(sized(chart), scale=PNG_SCALE)


def svg(chart: alt.TopLevelMixin) -> str:
    import vl_convert as vlc

    return vlc.vegalite_to_svg(sized(chart))


def write(charts: Mapping[str, alt.TopLevelMixin], out: Path, prefix: str) -> list[Path]:
    """Write every chart as <prefix>-<name>.png and .svg into `out`; return the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, chart in charts.items():
        p = out / f"{prefix}-{name}.png"
        p.write_bytes(png(chart))
        s = out / f"{prefix}-{name}.svg"
        s.write_text(svg(chart))
        paths += [p, s]
    return paths


def zipped(charts: Mapping[str, alt.TopLevelMixin], prefix: str) -> bytes:
    """Every chart as PNG and SVG in one zip file."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, chart in charts.items():
            z.writestr(f"{prefix}-{name}.png", png(chart))
            z.writestr(f"{prefix}-{name}.svg", svg(chart))
    return buf.getvalue()
