"""Your own (x, y) points: a CSV file checked before use.

Rules: at most MAX_BYTES and MAX_ROWS; exactly two numeric columns (one header row is
allowed); every value finite. Cases add their own minimum of distinct x values. Every
failure is a SettingError naming the `points` setting, with the line at fault (the header is line 1).
"""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from core.settings import SettingError

MAX_BYTES = 1_000_000
MAX_ROWS = 100_000
NAME = "points"

Points = tuple[tuple[float, float], ...]


def parse_csv(data: bytes | str) -> Points:
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_BYTES:
        raise SettingError(NAME, f"the file is {len(raw) / 1e6:.1f} MB; at most {MAX_BYTES / 1e6:.0f} MB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SettingError(NAME, "the file is not UTF-8 text: expected a CSV file with two numeric columns") from None
    reader = csv.reader(io.StringIO(text))
    numbered = [(reader.line_num, r) for r in reader if r and any(c.strip() for c in r)]  # lines count from 1
    lines, rows = [n for n, _ in numbered], [r for _, r in numbered]
    if rows and not _numeric(rows[0]):
        lines, rows = lines[1:], rows[1:]  # a header
    if not rows:
        raise SettingError(NAME, "no data rows: expected two numeric columns, x and y")
    if len(rows) > MAX_ROWS:
        raise SettingError(NAME, f"{len(rows):,} rows; at most {MAX_ROWS:,}")
    points = []
    for i, row in zip(lines, rows, strict=True):  # i: the line in the file, as an editor numbers it
        if len(row) != 2:
            raise SettingError(NAME, f"line {i} has {len(row)} columns; expected exactly 2 (x, y)")
        try:
            x, y = float(row[0]), float(row[1])
        except ValueError:
            raise SettingError(NAME, f"line {i} is not two numbers: {','.join(row)[:40]!r}") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise SettingError(NAME, f"line {i} has a value that is not finite: {','.join(row)[:40]!r}")
        points.append((x, y))
    return tuple(points)


def parse_file(path: str) -> Points:
    """The CLI's form: --set points=path/to/file.csv (empty: no points)."""
    if not path.strip():
        return ()
    p = Path(path).expanduser()
    if not p.is_file():
        raise SettingError(NAME, f"expected a CSV file path, but {path!r} is not a file")
    return parse_csv(p.read_bytes())


def check(points: Points, min_distinct: int) -> list[str]:
    """Cross-setting rule for a case: enough distinct x values."""
    distinct = len({x for x, _ in points})
    if points and distinct < min_distinct:
        return [f"{NAME}: {distinct} distinct x values; at least {min_distinct} are needed"]
    return []


def _numeric(row: list[str]) -> bool:
    try:
        [float(c) for c in row]
    except ValueError:
        return False
    return True
