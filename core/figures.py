"""Figures for reports: a case's charts as PNG and SVG, from the page or headless.

The charts are the page's own (`Case.figures`), carrying their own look,
so a figure looks like the page. vl-convert renders Vega-Lite without a browser.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import altair as alt

from core.case import Case
from core.train import RunResult

EXPORT_WIDTH = 640  # px; the page stretches charts to its column, a file needs a width
PNG_SCALE = 2  # 2x pixels: sharp in documents


def charts_for(case: Case, runs: Mapping[str, RunResult]) -> dict[str, alt.TopLevelMixin]:
    """The page's charts by name, for these runs ({"current": ..., "as-posted": ..., pins...})."""
    return case.figures(runs)


CAPTION_MAX = 150  # characters of a figure's one-line caption


def sized(chart: alt.TopLevelMixin) -> dict:
    """The chart's Vega-Lite spec with a fixed width for single and layered charts."""
    spec = dict(chart) if isinstance(chart, dict) else chart.to_dict()  # a dict: a spec from the page's cache
    if not any(k in spec for k in ("hconcat", "vconcat", "concat", "facet")):
        spec["width"] = EXPORT_WIDTH
    return spec


def describe(case: Case, config: Any) -> str:
    """A run as a report names it: its preset and the settings in which it differs from it
    ('fixed (seed = 3, steps = 500)'), the shortest such description."""
    from core.export import shortest

    params = shortest(case, config, page=False)
    preset = params.pop("preset", "as-posted")
    return preset + (f" ({', '.join(f'{k} = {v}' for k, v in params.items())})" if params else "")


def report_names(case: Case, configs: Mapping[str, Any]) -> dict[str, str]:
    """The page's run names ('current', 'pin 1') -> names that mean something in a report, one each."""
    out: dict[str, str] = {}
    for name, config in configs.items():
        text = describe(case, config)
        renamed = name not in ("current", *case.presets) and not name.startswith("pin ")
        if renamed or text in out.values():  # the user's own name, or two runs alike but for uploaded points
            text = f"{name}: {text}"
        out[name] = text
    return out


def caption(case: Case, config: Any, result: RunResult) -> str:
    """One line under a figure's title: the case, the current run's settings, its data, device and time."""
    data = []
    points = getattr(config, "points", ())
    if points:
        data.append(f"your {len(points):,} points")
    for field, label in (("dataset", "data"), ("n_points", "points"), ("train_size", "train images")):
        value = result.metrics.get(field, getattr(config, field, None))
        if value is not None and not (field == "n_points" and points):
            data.append(f"{label} {value:,}" if isinstance(value, int) else f"{label}: {value}")
    seed = getattr(config, "seed", None)
    line = f"{case.short}: {describe(case, config)}"
    line += "".join(f" · {d}" for d in data) + (f" · seed {seed}" if seed is not None else "")
    line += f" · {result.device}"
    return line if len(line) <= CAPTION_MAX else line[: CAPTION_MAX - 1] + "…"


def _renamed(node: Any, names: Mapping[str, str]) -> Any:
    """Every string of the spec that is a run's name (or 'fitted: <name>') renamed; the rest as it is."""
    if isinstance(node, dict):
        return {k: _renamed(v, names) for k, v in node.items()}
    if isinstance(node, list):
        return [_renamed(v, names) for v in node]
    if isinstance(node, str):
        if node in names:
            return names[node]
        head, sep, tail = node.rpartition(": ")
        if sep and tail in names:
            return f"{head}: {names[tail]}"
    return node


def for_report(chart: alt.TopLevelMixin, names: Mapping[str, str] | None = None, line: str | None = None) -> dict:
    """The chart's spec for a file: its runs named by `names` (legends, tooltips) and `line` as a
    one-line caption under its title."""
    spec = sized(chart)
    if names:
        spec = _renamed(spec, names)
    if line:
        title = spec.get("title") or ""
        title = dict(title) if isinstance(title, dict) else {"text": title, "anchor": "start"}
        spec["title"] = title | {"subtitle": line, "subtitleFontSize": 11, "subtitleColor": "#4b5563"}
    return spec


def png(chart: alt.TopLevelMixin, names: Mapping[str, str] | None = None, line: str | None = None) -> bytes:
    import vl_convert as vlc

    return vlc.vegalite_to_png(for_report(chart, names, line), scale=PNG_SCALE)


def svg(chart: alt.TopLevelMixin, names: Mapping[str, str] | None = None, line: str | None = None) -> str:
    import vl_convert as vlc

    return vlc.vegalite_to_svg(for_report(chart, names, line))


def write(
    charts: Mapping[str, alt.TopLevelMixin],
    out: Path,
    prefix: str,
    names: Mapping[str, str] | None = None,
    line: str | None = None,
) -> list[Path]:
    """Write every chart as <prefix>-<name>.png and .svg into `out`; return the paths. names, line:
    see `for_report`."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, chart in charts.items():
        p = out / f"{prefix}-{name}.png"
        p.write_bytes(png(chart, names, line))
        s = out / f"{prefix}-{name}.svg"
        s.write_text(svg(chart, names, line))
        paths += [p, s]
    return paths


def zipped(
    charts: Mapping[str, alt.TopLevelMixin],
    prefix: str,
    names: Mapping[str, str] | None = None,
    line: str | None = None,
) -> bytes:
    """Every chart as PNG and SVG in one zip file. names, line: see `for_report`."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, chart in charts.items():
            z.writestr(f"{prefix}-{name}.png", png(chart, names, line))
            z.writestr(f"{prefix}-{name}.svg", svg(chart, names, line))
    return buf.getvalue()
