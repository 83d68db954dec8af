"""The case registry, in case order: one line per case. Importing it imports torch and every case."""

from __future__ import annotations

import types
from collections.abc import Mapping

from core.case import Case
from core.cases import cifar, linreg, poly, sine
from core.settings import SettingError

CASES: Mapping[str, Case] = types.MappingProxyType(
    {c.name: c for c in (sine.CASE, cifar.CASE, poly.CASE, linreg.CASE)}  # read-only, in case order
)


def get(name: str) -> Case:
    if name not in CASES:
        raise SettingError("case", f"must be one of {', '.join(CASES)} (got {name!r})")
    return CASES[name]
