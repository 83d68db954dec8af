"""Opening a run record for the 'Your run' page: an upload or a file of ./runs.

A record is untrusted input: its size is checked before it is read, it is parsed as JSON
only (never pickle, never code), and every problem becomes one message (RecordError).
Files come only from directly inside the runs folder, by a name the folder listing gave.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

FORMAT = "convergence-clinic/examine-record"  # as core/examine/report.py writes it
MAX_BYTES = 1_000_000  # the server's upload limit (.streamlit/config.toml)
RUNS = Path("runs")

# the record's column tables: each a dict of equally long lists
TABLES = {
    "series": ("step", "loss", "lr"),
    "layers": ("step", "layer", "grad_norm", "update_ratio"),
    "activations": ("step", "site", "kind", "dead", "saturated"),
}
TEXT_COLUMNS = ("layer", "site", "kind")


class RecordError(ValueError):
    """What is wrong with a record, in one sentence for the page."""


def parse(data: bytes, name: str = "the file") -> dict:
    """bytes -> the record, checked; RecordError otherwise."""
    if len(data) > MAX_BYTES:
        raise RecordError(f"{name} is {len(data):,} bytes; a run record of at most {MAX_BYTES:,} bytes is expected")
    try:
        rec = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise RecordError(f"{name} is not UTF-8 text: is it a run record (.json) from `--out`?") from None
    except json.JSONDecodeError as e:
        raise RecordError(f"{name} is not valid JSON (line {e.lineno}, column {e.colno}: {e.msg})") from None
    if not isinstance(rec, dict) or rec.get("format") != FORMAT:
        raise RecordError(f"{name} is JSON but not a run record: `python -m core examine SCRIPT --out DIR` makes one")
    if rec.get("version") != 1:
        raise RecordError(f"{name}: record version {rec.get('version')!r} is not one this app reads (1)")
    for table, columns in TABLES.items():
        _check_table(rec.get(table), table, columns, name)
    findings = rec.get("findings")
    if not isinstance(findings, list) or not all(_is_finding(f) for f in findings):
        raise RecordError(f"{name}: 'findings' must be a list of {{key, title, evidence, fix, step}}")
    if (
        not isinstance(rec.get("script"), str)
        or not isinstance(rec.get("steps"), int)
        or not _is_number(rec.get("seconds"))
    ):
        raise RecordError(f"{name}: 'script' (text), 'steps' (a whole number) or 'seconds' is missing")
    return rec


def _check_table(t, table: str, columns: tuple[str, ...], name: str) -> None:
    if not isinstance(t, dict) or not all(isinstance(t.get(c), list) for c in columns):
        raise RecordError(f"{name}: '{table}' must hold the lists {', '.join(columns)}")
    if len({len(t[c]) for c in columns}) > 1:
        raise RecordError(f"{name}: the lists of '{table}' differ in length")
    for c in columns:
        ok = (lambda v: isinstance(v, str)) if c in TEXT_COLUMNS else _is_number
        if not all(ok(v) for v in t[c]):
            what = "text" if c in TEXT_COLUMNS else "number"
            raise RecordError(f"{name}: '{table}.{c}' holds a value that is not a {what}")


def _is_number(v) -> bool:
    return v is None or (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v))


def _is_finding(f) -> bool:
    return (
        isinstance(f, dict)
        and all(isinstance(f.get(k), str) for k in ("key", "title", "evidence", "fix"))
        and isinstance(f.get("step"), int)
    )


def listing(folder: Path = RUNS) -> list[str]:
    """The .json files directly inside the runs folder (no subfolders, no links out of it)."""
    if not folder.is_dir():
        return []
    root = folder.resolve()
    return sorted(
        p.name for p in folder.iterdir() if p.suffix == ".json" and p.is_file() and p.resolve().parent == root
    )


def read_from(name: str, folder: Path = RUNS) -> dict:
    """A record from the runs folder, by a name its listing gave; RecordError otherwise."""
    if name not in listing(folder):
        raise RecordError(f"{name!r} is not a run record in {folder}/")
    path = (folder / name).resolve()
    if path.parent != folder.resolve():
        raise RecordError(f"{name!r} is not directly inside {folder}/")
    size = path.stat().st_size
    if size > MAX_BYTES:
        raise RecordError(f"{name} is {size:,} bytes; a run record of at most {MAX_BYTES:,} bytes is expected")
    return parse(path.read_bytes(), name)
