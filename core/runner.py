"""Running a case: validation, the CPU thread policy, timing, and a bounded result cache.

Both front ends go through `execute`: the CLI directly, the app through `core.ui`,
which adds the cache and the progress display.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import torch

from core import device as device_
from core.case import Case
from core.threads import POLICY, flush_denormals, keep_freed_memory
from core.train import Progress, ProgressFn, RunResult


def execute(
    case: Case,
    config: Any,
    device: torch.device,
    on_progress: ProgressFn | None = None,
    task: Callable[..., RunResult] | None = None,
) -> RunResult:
    """Validate `config`, train, and return the result with its wall time and device.

    `task` is what to run with the config (default: the case's run; e.g. its learning-rate
    range test). Raises SettingError for a bad config, before any work. `on_progress` may
    raise to interrupt the run (the app does when the user changes a setting mid-run).
    """
    case.validate(config)
    heavy = device.type == "cpu" and case.heavy(config)
    keep_freed_memory()
    import torch._dynamo  # noqa: F401  torch.optim imports it on first use (~1 s): not training time

    def progress(p: Progress) -> None:
        POLICY.apply(heavy)  # a run started or ended elsewhere: re-share the cores
        if on_progress is not None:
            on_progress(p)

    with POLICY.share(heavy, serial=case.serial(config)), flush_denormals():
        start = time.perf_counter()
        result = (task or case.run)(config, device, on_progress=progress)
        device_.synchronize(device)
        seconds = time.perf_counter() - start
    return dataclasses.replace(result, seconds=seconds, device=str(device))


class ResultCache:
    """Finished results by (case, config, device), least recently used first out.

    Thread-safe: the app's sessions share one. Only finished runs are put in; a run
    interrupted by an exception never reaches `put`.
    """

    def __init__(self, max_entries: int = 64):
        self.max_entries = max_entries
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, RunResult] = OrderedDict()

    @staticmethod
    def key(case: Case, config: Any, device: torch.device, task: Callable | None = None) -> tuple:
        return (case.name, task.__name__ if task else "run", config, str(device))

    def get(self, key: Hashable) -> RunResult | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key]

    def put(self, key: Hashable, result: RunResult) -> None:
        with self._lock:
            self._items[key] = result
            self._items.move_to_end(key)
            while len(self._items) > self.max_entries:
                self._items.popitem(last=False)

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
