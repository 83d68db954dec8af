"""TRANSITION: the case still lives in core/cifar.py; this folder becomes its home."""

from core.cifar import CASE  # noqa: F401
