"""TRANSITION: the case still lives in core/sine.py; this folder becomes its home."""

from core.sine import CASE  # noqa: F401
