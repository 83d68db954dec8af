"""TRANSITION: the case still lives in core/linreg.py; this folder becomes its home."""

from core.linreg import CASE  # noqa: F401
