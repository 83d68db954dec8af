"""Exports of a run: its history as CSV, its record as JSON, and a standalone script.

The script is the case's own (`Case.script`: core/cases/<case>/script.py) with its settings
block replaced by the run's settings: a complete program that needs only torch and numpy.
"""

from __future__ import annotations

import dataclasses
import json
import math
import platform
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from core.case import Case
from core.settings import to_text
from core.train import RunResult

BEGIN, END = "# --- settings: written by Convergence Clinic's export\n", "# --- end of settings\n"


def jsonable(value: Any) -> Any:
    """Plain JSON values: tuples to lists, NaN and inf to null (they are not valid JSON)."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):  # numpy scalars
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def versions() -> dict[str, str]:
    import altair
    import numpy
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__, "numpy": numpy.__version__}
    out["altair"] = altair.__version__
    try:
        import streamlit

        out["streamlit"] = streamlit.__version__
    except ImportError:
        pass
    return out


def shortest(case: Case, config: Any, page: bool = True) -> dict[str, str]:
    """The shortest URL query for `config`: the preset it differs least from and the settings
    in which it differs (`preset=fixed&seed=3`); no preset when that is as-posted. page: the
    presets as the page opens them (`Case.first_view`); False: the presets themselves (the CLI's)."""
    presets = {n: case.page_preset(n) if page else p for n, p in case.presets.items()}

    def differences(base: Any) -> dict[str, str]:
        return {
            f.name: to_text(getattr(config, f.name))
            for f in dataclasses.fields(config)
            if getattr(config, f.name) != getattr(base, f.name) and case.setting(f.name).in_url  # no paths, no uploads
        }

    found = {n: differences(p) for n, p in presets.items()}
    name = min(found, key=lambda n: (len(found[n]), n != "as-posted"))  # ties: as-posted, then preset order
    if not found[name] or name != "as-posted":
        return {"preset": name} | found[name]
    return found[name]


def history_csv(result: RunResult) -> str:
    return result.history.to_csv(index=False)


def record(case: Case, config: Any, result: RunResult) -> dict:
    """Everything needed to cite or redo the run: settings, metrics, device, versions."""
    return jsonable(
        {
            "case": case.name,
            "preset": case.preset_name(config),
            "config": dataclasses.asdict(config),
            "device": result.device,
            "seconds": round(result.seconds, 4),
            "metrics": dict(result.metrics),
            "versions": versions(),
        }
    )


def record_json(case: Case, config: Any, result: RunResult) -> str:
    return json.dumps(record(case, config, result), indent=2, allow_nan=False)


def script(case: Case, config: Any) -> str:
    """The standalone script of `case` with `config`'s settings written in."""
    case.validate(config)
    text = Path(case.script.__file__).read_text()
    head, rest = text.split(BEGIN, 1)
    _, tail = rest.split(END, 1)
    lines = [
        f"    {json.dumps(k)}: {json.dumps(v) if isinstance(v, str) else repr(v)},"
        for k, v in dataclasses.asdict(config).items()
    ]
    settings = "CONFIG = {\n" + "\n".join(lines) + "\n}\n"
    return head + BEGIN + settings + END + tail


def histories_csv(runs: Mapping[str, RunResult]) -> str:
    """Every run's history in one table, a `run` column first (current, compared, pinned)."""
    import pandas as pd

    frames = [r.history.assign(run=name)[["run", *r.history.columns]] for name, r in runs.items()]
    return pd.concat(frames, ignore_index=True).to_csv(index=False)
