"""Device detection, in one place: CUDA, then Apple MPS, then the CPU.

The device a run used is part of its cache key and of its report, so results from a
GPU are never shown as if they came from the CPU (or the other way round).
"""

from __future__ import annotations

import os

import torch

from core.settings import SettingError

DEVICE_CHOICES = ("auto", "cpu", "cuda", "mps")


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return bool(mps and mps.is_available())


def pick(prefer: str = "auto") -> torch.device:
    """The device to train on. `prefer` is auto (best available), cpu, cuda or mps."""
    if prefer not in DEVICE_CHOICES:
        raise SettingError("device", f"must be one of {', '.join(DEVICE_CHOICES)} (got {prefer!r})")
    if prefer == "cuda" and not torch.cuda.is_available():
        raise SettingError("device", "cuda was asked for, but no CUDA GPU is available here")
    if prefer == "mps" and not _mps_available():
        raise SettingError("device", "mps was asked for, but Apple's MPS is not available here")
    if prefer == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    return torch.device(prefer)


def info(device: torch.device) -> dict[str, str | int]:
    """What the device badge shows: kind, name, torch version, CPU threads."""
    kind = device.type
    if kind == "cuda":
        name = torch.cuda.get_device_name(device)
    elif kind == "mps":
        name = "Apple GPU (MPS)"
    else:
        name = f"{os.cpu_count() or 1}-core CPU"
    return {
        "kind": kind.upper() if kind != "mps" else "MPS",
        "name": name,
        "torch": torch.__version__,
        "cpu_threads": os.cpu_count() or 1,
    }


def synchronize(device: torch.device) -> None:
    """Wait for queued GPU work, so that timings mean what they say."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
