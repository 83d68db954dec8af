"""Case 2's loaded image sets, kept once per process, and the view one run trains on.

Whatever the source, a loaded set is held once as uint8 on the device, shared by the app's
sessions, the CLI and the benchmark (a bounded cache, one copy per source, folder and device);
a run takes views of it (`prepare`), never copies.
"""

from __future__ import annotations

import functools
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

import torch

from core import paths
from core.cases.cifar.config import CifarConfig
from core.cases.cifar.data import (
    SOURCES,
    Images,
    ProgressFn,
    cifar10_root,
    download_cifar10,
    read_cifar10,
    read_folder,
)
from core.cases.cifar.synthetic import make_synthetic
from core.settings import SettingError


def images_bytes(images: Images) -> int:
    return sum(t.nbytes for t in (images.train_x, images.train_y, images.test_x, images.test_y))


class DataCache:
    """Values by key (loaded image sets; the s² rule's sweeps), least recently used first out,
    bounded by the bytes they hold (`size`; CIFAR-10 and the stand-in: 184 MB each); one load per
    key at a time. A value bigger than the whole bound is returned but not kept.

    Thread-safe: sessions asking for the same value while it loads wait for that one load
    instead of making it again.
    """

    def __init__(self, max_bytes: int = 400 << 20, size: Callable[[Any], int] = images_bytes):
        self.max_bytes = max_bytes
        self.size = size
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, Any] = OrderedDict()
        self._loading: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
            loading = self._loading.setdefault(key, threading.Lock())
        with loading:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            try:
                value = make()
            finally:
                with self._lock:
                    self._loading.pop(key, None)
            with self._lock:
                if self.size(value) <= self.max_bytes:
                    self._items[key] = value
                while sum(self.size(v) for v in self._items.values()) > self.max_bytes:
                    self._items.popitem(last=False)
            return value

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


CACHE = DataCache()


def load(source: str, data_root: str, device: torch.device, on_download: ProgressFn | None = None) -> Images:
    """The image set for this source on this device, loaded (and downloaded) at most once per process."""
    if source == "synthetic":
        key: tuple = (source, "", str(device))
    elif source == "cifar10":
        key = (source, str(cifar10_root(data_root).resolve()), str(device))
    elif source == "folder":
        key = (source, str(paths.allowed(data_root, "data_root")) if data_root.strip() else "", str(device))
    else:
        raise SettingError("dataset", f"must be one of {', '.join(SOURCES)} (got {source!r})")

    def make() -> Images:
        if source == "synthetic":
            images = make_synthetic()
        elif source == "cifar10":
            download_cifar10(data_root, on_download)
            images = read_cifar10(data_root)
        else:
            images = read_folder(data_root)
        return on_device(images, device)

    return CACHE.get(key, make)


def on_device(images: Images, device: torch.device) -> Images:
    if device.type == "cpu":
        return images
    move = [t.to(device) for t in (images.train_x, images.train_y, images.test_x, images.test_y)]
    return Images(*move, images.classes, images.source, images.root)


# ---------------------------------------------------------------------------- one run's view


def pixel_stats(x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """(2, 3, 1) float64: per-channel mean and std of uint8 images (N, 3072), in pixel units.
    Exact integer sums chunk by chunk: no float copy of the whole set."""
    total = torch.zeros(2, 3, dtype=torch.int64, device=x.device)
    for start in range(0, len(x), chunk):
        c = x[start : start + chunk].view(-1, 3, 1024).to(torch.int32)
        total[0] += c.sum(dim=(0, 2), dtype=torch.int64)
        total[1] += c.square().sum(dim=(0, 2), dtype=torch.int64)
    count = max(1, len(x)) * 1024
    mean = total[0].double() / count
    std = (total[1].double() / count - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)
    return torch.stack([mean, std]).unsqueeze(-1)


@dataclass(frozen=True)
class Data:
    """The images one run trains on: views into the shared uint8 set, never copies."""

    train_x: torch.Tensor  # (n, 3072) uint8
    train_y: torch.Tensor  # (n,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    images: Images

    @functools.cached_property
    def pixels(self) -> torch.Tensor:
        """(2, 3, 1) per-channel mean and std of train_x in pixel units (for `standardize`)."""
        return pixel_stats(self.train_x)


def prepare(config: CifarConfig, device: torch.device) -> Data:
    """The run's training subset and the test set (loading the image set once per process)."""
    images = load(config.dataset, config.data_root, device)
    if config.train_size > len(images.train_y):
        raise SettingError(
            "train_size", f"must be <= {len(images.train_y):,}, the training images of {images.source} (or 0 = all)"
        )
    if config.test_size > len(images.test_y):
        raise SettingError(
            "test_size", f"must be <= {len(images.test_y):,}, the test images of {images.source} (or 0 = all)"
        )
    n, m = config.train_size or len(images.train_y), config.test_size or len(images.test_y)
    return Data(images.train_x[:n], images.train_y[:n], images.test_x[:m], images.test_y[:m], images)
