"""Running a case: validation, the cost limit, the line for heavy runs, Stop, the CPU thread
policy, timing, and a result cache bounded in bytes.

Both front ends go through `execute`: the CLI directly, the app through `core.ui`,
which adds the cache and the progress display.
"""

from __future__ import annotations

import contextlib
import dataclasses
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import pandas as pd
import torch

from core import device as device_
from core.case import Case, Task
from core.settings import SettingError
from core.threads import POLICY, Gate, Stopped, flush_denormals, keep_freed_memory, release_freed_memory
from core.train import Progress, ProgressFn, RunResult

HEAVY_RUN_SECONDS = 5.0  # runs estimated longer than this take one of the server's heavy-run slots
GATE = Gate()  # the process-wide line for heavy runs: at most one per core at once


def over_limit(case: Case, config: Any, max_seconds: float | None, task: Task | None = None) -> str | None:
    """Why `config` may not run (or run `task`) under this time limit ('setting: …'), or None when it may."""
    if max_seconds is None:
        return None
    cost = (task or case).cost(config)
    if cost.seconds <= max_seconds:
        return None
    return (
        f"{cost.lower}: this run would take about {_duration(cost.seconds)} here (estimated from its settings), "
        f"over the {_duration(max_seconds)} a run may take on this server; {cost.advice or 'lower ' + cost.lower}"
    )


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def execute(
    case: Case,
    config: Any,
    device: torch.device,
    on_progress: ProgressFn | None = None,
    task: Task | Callable[..., RunResult] | None = None,
    *,
    max_seconds: float | None = None,
    stop: threading.Event | None = None,
    on_wait: Callable[[int], None] | None = None,
) -> RunResult:
    """Validate `config`, train, and return the result with its wall time and device.

    `task` is what to run with the config (default: the case's run): one of its `Task`s, checked
    and limited as the run is, or a plain function (its learning-rate range test), which is not.
    Raises SettingError for a bad config or one whose estimated cost is over `max_seconds`, before
    any work. A heavy run (estimated over HEAVY_RUN_SECONDS) first waits for one of the server's
    slots, calling `on_wait(position)` while it waits. `stop`: once
    set, the run ends with `Stopped` at its next progress check (at least once a second).
    `on_progress` may raise to interrupt the run too (the app does when a setting changes).
    """
    case.validate(config)
    job = task if isinstance(task, Task) else None
    problems = job.check(config) if job is not None else []  # what the task refuses beyond the case's rules
    if problems:
        raise SettingError.of(problems)
    limited = task is None or job is not None
    problem = over_limit(case, config, max_seconds, job) if limited else None
    if problem is not None:
        raise SettingError.of([problem])
    heavy = device.type == "cpu" and case.heavy(config)
    keep_freed_memory()
    import torch._dynamo  # noqa: F401  torch.optim imports it on first use (~1 s): not training time

    def progress(p: Progress) -> None:
        if stop is not None and stop.is_set():
            raise Stopped(f"stopped at step {p.step:,} of {p.total:,}")
        POLICY.apply(heavy)  # a run started or ended elsewhere: re-share the cores
        if on_progress is not None:
            on_progress(p)

    gated = limited and (job or case).cost(config).seconds > HEAVY_RUN_SECONDS
    run = case.run if task is None else job.run if job is not None else task
    try:
        with (
            GATE.slot(on_wait) if gated else contextlib.nullcontext(),
            POLICY.share(heavy, serial=case.serial(config)),
            flush_denormals(),
        ):
            start = time.perf_counter()
            result = run(config, device, on_progress=progress)
            device_.synchronize(device)
            seconds = time.perf_counter() - start
    finally:
        release_freed_memory()  # an idle server goes back to its baseline
    return dataclasses.replace(result, seconds=seconds, device=str(device))


def result_bytes(result: RunResult) -> int:
    """What a result holds in memory: its tables (deep: strings included) and a little for the rest."""
    frames = [result.history, *result.frames.values()]
    return 4096 + sum(int(f.memory_usage(deep=True).sum()) for f in frames if isinstance(f, pd.DataFrame))


class ResultCache:
    """Finished results by (case, config, device), least recently used first out, bounded by the
    bytes they hold (not by their count: one 10-million-step history is ~240 MB).

    Thread-safe: the app's sessions share one. Only finished runs are put in; a run
    interrupted by an exception never reaches `put`. A result bigger than the whole bound is
    not kept.
    """

    def __init__(self, max_bytes: int = 256 << 20):
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, tuple[RunResult, int]] = OrderedDict()
        self._bytes = 0

    @staticmethod
    def key(case: Case, config: Any, device: torch.device, task: Task | Callable | None = None) -> tuple:
        run = task.run if isinstance(task, Task) else task
        return (case.name, run.__name__ if run else "run", config, str(device))

    @property
    def bytes(self) -> int:
        return self._bytes

    def get(self, key: Hashable) -> RunResult | None:
        with self._lock:
            if key not in self._items:
                return None
            self._items.move_to_end(key)
            return self._items[key][0]

    def put(self, key: Hashable, result: RunResult) -> None:
        size = result_bytes(result)
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[1]
            if size > self.max_bytes:
                return
            self._items[key] = (result, size)
            self._bytes += size
            while self._bytes > self.max_bytes:
                self._bytes -= self._items.popitem(last=False)[1][1]

    def __len__(self) -> int:
        return len(self._items)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
