"""TRANSITION: the case still lives in core/poly.py; this folder becomes its home."""

from core.poly import CASE  # noqa: F401
