"""Your own (x, y) points: a CSV file checked before use.

Rules: at most MAX_BYTES and MAX_ROWS; exactly two numeric columns (one header row is
allowed); every value finite; any line ending (\n, \r\n or \r). Cases add their own
minimum of distinct x values. Every failure is a SettingError naming the `points` setting,
with the line at fault (the header is line 1).
"""

from __future__ import annotations

import csv
import math
import re

from core import paths
from core.settings import SettingError

MAX_BYTES = 1_000_000
MAX_ROWS = 100_000
NAME = "points"

Points = tuple[tuple[float, float], ...]


def parse_csv(data: bytes | str) -> Points:
    """Points from CSV text. Never raises anything but SettingError; a row is named by its line
    in the file as a person counts lines (the header is line 1)."""
    raw = data.encode() if isinstance(data, str) else data
    if len(raw) > MAX_BYTES:
        raise SettingError(NAME, f"the file is {len(raw) / 1e6:.1f} MB; at most {MAX_BYTES / 1e6:.0f} MB")
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise SettingError(NAME, "the file is not UTF-8 text: expected a CSV file with two numeric columns") from None
    if "\0" in text:
        raise SettingError(NAME, "the file holds NUL bytes: expected a CSV text file with two numeric columns")
    lines = text.splitlines()  # \n, \r\n and a lone \r (old Mac files) all end a line
    reader = csv.reader(lines, strict=True)  # strict: an unclosed quote is an error, not one long field
    rows = []  # (line number, fields) of the non-blank lines
    while True:
        start = reader.line_num + 1  # the line this record starts on (a quoted field may span lines)
        try:
            fields = next(reader)
        except StopIteration:
            break
        except csv.Error as e:  # a field over the csv module's limit, an unclosed quote, …
            raise SettingError(NAME, f"line {start} is not valid CSV ({e})") from None
        if fields and any(c.strip() for c in fields):
            rows.append((start, fields))
            if len(rows) > MAX_ROWS + 1:  # + a header
                raise SettingError(NAME, f"more than {MAX_ROWS:,} rows; at most {MAX_ROWS:,}")
    if rows and not _numeric(rows[0][1]):
        rows = rows[1:]  # a header
    if not rows:
        raise SettingError(NAME, "no data rows: expected two numeric columns, x and y")
    if len(rows) > MAX_ROWS:
        raise SettingError(NAME, f"{len(rows):,} rows; at most {MAX_ROWS:,}")
    points = []
    for line, row in rows:
        if len(row) != 2:
            raise SettingError(NAME, f"line {line} has {len(row)} columns; expected exactly 2 (x, y)")
        try:
            x, y = _number(row[0]), _number(row[1])
        except ValueError:
            raise SettingError(NAME, f"line {line} is not two numbers: {_shown(row)}") from None
        if not (math.isfinite(x) and math.isfinite(y)):
            raise SettingError(NAME, f"line {line} has a value that is not finite: {_shown(row)}")
        points.append((x, y))
    return tuple(points)


def parse_file(path: str) -> Points:
    """The CLI's form: --set points=path/to/file.csv (empty: no points). The path must lie inside
    an allowed folder (core/paths.py) and the file's size is checked before it is read."""
    if not path.strip():
        return ()
    return parse_csv(paths.read_limited(paths.allowed(path, NAME), MAX_BYTES, NAME))


def check_value(value: object) -> None:
    """A points value as a config holds it: a tuple of at most MAX_ROWS finite (x, y) pairs."""

    def pair(p: object) -> bool:
        return isinstance(p, (tuple, list)) and len(p) == 2 and all(isinstance(v, (int, float)) for v in p)

    ok = isinstance(value, tuple) and all(pair(p) and all(math.isfinite(v) for v in p) for p in value)
    if not ok or len(value) > MAX_ROWS:
        raise SettingError(NAME, f"must be at most {MAX_ROWS:,} (x, y) pairs of finite numbers")


# what a `points` knob says besides its default and help (core/settings.py): a link never carries it
RULES = {
    "kind": "points",
    "in_url": False,
    "parser": parse_file,
    "checker": check_value,
    "described": "a CSV file: two numeric columns x, y (empty: the posted data)",
}


def x_range(points: Points, default: tuple[float, float]) -> tuple[float, float]:
    """The smallest and largest x of the points; `default` (the posted range) without points."""
    if not points:
        return default
    xs = [x for x, _ in points]
    return min(xs), max(xs)


def check(points: Points, min_distinct: int) -> list[str]:
    """Cross-setting rule for a case: enough distinct x values."""
    distinct = len({x for x, _ in points})
    if points and distinct < min_distinct:
        return [f"{NAME}: {distinct} distinct x values; at least {min_distinct} are needed"]
    return []


def _number(text: str) -> float:
    """A decimal number in ASCII (float() alone would also take '١٢' and '1_000')."""
    t = text.strip()
    if not _NUMBER.fullmatch(t):
        raise ValueError(t)
    return float(t)


_NUMBER = re.compile(r"[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[+-]?(?:inf|nan)", re.ASCII | re.IGNORECASE)


def _shown(row: list[str]) -> str:
    return repr(",".join(row)[:40])


def _numeric(row: list[str]) -> bool:
    try:
        [_number(c) for c in row]
    except ValueError:
        return False
    return True
