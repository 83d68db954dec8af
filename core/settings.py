"""Settings: what each knob of a case is, how text becomes a value, and what is allowed.

A case's config is a frozen dataclass whose fields are declared once, with `knob`:

    n_points: int = knob(4000, "training points", lo=10, hi=100_000)

The field gives the setting's name, type and default; the knob adds what the dataclass
cannot say: the allowed range or choices and one line of help. `settings_of(Config)` reads
them back as `Setting`s, and pages, the CLI, links, validation and the exported script all
use those, so a bad value gets the same message everywhere: the setting's name and what is
allowed.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


class SettingError(ValueError):
    """A value that a setting does not allow. `str()` names the setting and the range."""

    def __init__(self, name: str, message: str):
        self.name = name
        self.problems = [f"{name}: {message}"]
        super().__init__(self.problems[0])

    @classmethod
    def of(cls, problems: list[str]) -> SettingError:
        """One error for several problems (each already 'name: message'), joined by '; '."""
        err = cls(problems[0].split(":", 1)[0], "")
        err.problems = list(problems)
        err.args = ("; ".join(problems),)
        return err

    def __str__(self) -> str:
        return "; ".join(self.problems)


@dataclass(frozen=True)
class Setting:
    name: str
    help: str
    lo: float | None = None  # smallest allowed value (numbers; for width lists, each width)
    hi: float | None = None  # largest allowed value
    lo_open: bool = False  # True: the value must be strictly greater than lo (a learning rate > 0)
    choices: tuple[str, ...] = ()  # allowed strings, for a choice
    max_len: int | None = None  # for width lists: most entries
    kind: str = ""  # the type, where the default's type does not say it ("points": (x, y) pairs)
    in_url: bool = True  # False for a server path or an upload: a link never carries it (core/paths.py)
    # for a kind of value that is not text or a number (points): text -> value, and value -> raise SettingError
    parser: Callable[[str], Any] | None = None
    checker: Callable[[Any], None] | None = None
    described: str = ""  # what `allowed` says, for such a kind

    def allowed(self, kind: str = "") -> str:
        """The allowed values in words, for messages and `core list`."""
        if self.described:
            return self.described
        if self.choices:
            return "one of " + ", ".join(self.choices)
        if kind == "bool":
            return "true or false"
        if self.lo is None and self.hi is None:
            return "any value"
        lo = f"> {_fmt(self.lo)}" if self.lo_open else f">= {_fmt(self.lo)}"
        if self.hi is None:
            return lo
        if self.lo is None:
            return f"<= {_fmt(self.hi)}"
        sep = " and "
        return f"{lo}{sep}<= {_fmt(self.hi)}"


def _fmt(v: float | None) -> str:
    if v is None:
        return ""
    if float(v).is_integer() and abs(v) < 1e12:
        return str(int(v))
    return f"{v:g}"


def knob(default: Any, help: str, **rules: Any) -> Any:
    """A config field declared once: its default, one line of help and its rules (`Setting`'s
    other fields: lo, hi, lo_open, choices, max_len, kind, in_url, parser, checker, described)."""
    return dataclasses.field(default=default, metadata={"help": help, **rules})


def settings_of(config_cls: type) -> tuple[Setting, ...]:
    """The `Setting` of every field of a config dataclass, in field order, from its `knob`s."""
    out = []
    for f in dataclasses.fields(config_cls):
        if "help" not in f.metadata:
            raise TypeError(f"{config_cls.__name__}.{f.name} is not declared with knob(default, help, ...)")
        out.append(Setting(f.name, **f.metadata))
    return tuple(out)


def kind_of(default: Any, choices: tuple[str, ...] = ()) -> str:
    """The setting's type, read off its default: bool, int, float, choice (a string with choices),
    text (a string without) or widths."""
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, float):
        return "float"
    if isinstance(default, str):
        return "choice" if choices else "text"
    if isinstance(default, tuple):
        return "widths"
    raise TypeError(f"unsupported setting type {type(default).__name__}")


def defaults(config_cls: type) -> dict[str, Any]:
    return {f.name: f.default for f in dataclasses.fields(config_cls)}


def to_text(value: Any) -> str:
    """A value as the user would type it (the inverse of `parse`)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        if value and isinstance(value[0], tuple):  # points: not text; say how many
            return f"<{len(value)} points>"
        return ",".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def log_grid(lo: float, hi: float) -> list[float]:
    """The stops of a log slider: 1, 2 and 5 per decade from lo to hi (both > 0), each the float of
    its decimal (2e-07, not 2 * 10**-7), so a stop written into a text box reads back the same."""
    return [
        v
        for e in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1)
        for v in (float(f"{m}e{e}") for m in (1, 2, 5))
        if lo <= v <= hi
    ]


_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off"}


def parse(setting: Setting, kind: str, text: str) -> Any:
    """Text (from the CLI, a URL or a text box) to a value of the setting's type.

    Raises SettingError naming the setting. Range checks happen in `check_value`.
    """
    s = str(text).strip()
    name = setting.name
    if kind == "bool":
        if s.lower() in _TRUE:
            return True
        if s.lower() in _FALSE:
            return False
        raise SettingError(name, f"expected true or false, got {s!r}")
    if kind == "int":
        if not _INT.fullmatch(s) or not float(s).is_integer():
            raise SettingError(name, f"expected a whole number in ASCII digits such as 3000 or 3e3, got {_short(s)}")
        return int(float(s)) if "e" in s.lower() else int(s.split(".")[0])
    if kind == "float":
        if not _FLOAT.fullmatch(s):
            raise SettingError(name, f"expected a number such as 0.001 or 1e-3, got {_short(s)}")
        return float(s)
    if kind in ("choice", "text"):
        return s
    if setting.parser is not None:
        return setting.parser(s)
    if kind == "widths":
        parts = [p.strip() for p in s.split(",")]
        if not s or len(parts) > 64 or any(not _WIDTH.fullmatch(p) for p in parts):
            raise SettingError(name, f"expected comma-separated whole numbers such as 32,128,32, got {_short(s)}")
        return tuple(int(p) for p in parts)
    raise TypeError(kind)


# What typed numbers may look like: ASCII only (str.isdigit() and float() also take '²' and '١٢'),
# and short (int() refuses over 4,300 digits with a ValueError of its own).
_INT = re.compile(r"[+-]?[0-9]{1,18}(?:\.[0-9]{0,18})?(?:[eE]\+?[0-9])?", re.ASCII)  # 3000, -1, 3000.0, 3e3
_FLOAT = re.compile(r"[+-]?(?:[0-9]{1,40}\.?[0-9]{0,40}|\.[0-9]{1,40})(?:[eE][+-]?[0-9]{1,4})?", re.ASCII)
_WIDTH = re.compile(r"[+-]?[0-9]{1,9}", re.ASCII)


def _short(text: str) -> str:
    """A bad value as a message shows it: quoted, and cut after 40 characters."""
    return repr(text[:40] + "…" if len(text) > 40 else text)


def check_value(setting: Setting, kind: str, value: Any) -> None:
    """Raise SettingError if `value` is outside what the setting allows."""
    name = setting.name
    if kind == "choice":
        if value not in setting.choices:
            raise SettingError(name, f"must be {setting.allowed()} (got {value!r})")
        return
    if kind == "bool":
        if not isinstance(value, bool):
            raise SettingError(name, f"must be true or false (got {value!r})")
        return
    if kind == "text":
        if not isinstance(value, str) or len(value) > 4096 or "\0" in value:
            raise SettingError(name, f"must be text of at most 4096 characters (got {_short(str(value))})")
        return
    if setting.checker is not None:
        setting.checker(value)
        return
    if kind == "widths":
        if not isinstance(value, tuple) or not value:
            raise SettingError(name, "needs at least one layer width")
        if setting.max_len is not None and len(value) > setting.max_len:
            raise SettingError(name, f"at most {setting.max_len} hidden layers (got {len(value)})")
        for w in value:
            _check_number(setting, w, what="each width ")
        return
    if kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
        raise SettingError(name, f"must be a whole number (got {value!r})")
    if kind == "float" and not isinstance(value, (int, float)):
        raise SettingError(name, f"must be a number (got {value!r})")
    _check_number(setting, value)


def _check_number(setting: Setting, v: float, what: str = "") -> None:
    if isinstance(v, float) and not math.isfinite(v):
        raise SettingError(setting.name, f"{what}must be a finite number {setting.allowed()} (got {v})")
    too_low = setting.lo is not None and (v <= setting.lo if setting.lo_open else v < setting.lo)
    too_high = setting.hi is not None and v > setting.hi
    if too_low or too_high:
        raise SettingError(setting.name, f"{what}must be {setting.allowed()} (got {to_text(v)})")
