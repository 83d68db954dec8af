"""Figures already drawn, kept as Vega-Lite specs: a rerun that draws the same runs reuses them.

Building a page's Altair charts and turning them into Vega-Lite costs about 1.5 s on the 2-core CPU
under load (0.4 s quiet) for six charts, most of it Altair's copies and its JSON-schema validation.
A page reruns on every click; when the runs it draws are the ones drawn before (a cached result, a
pin, a revisit), the specs are the same. The cache key is the builder, the identity of each run
(results come from the result cache, one object per finished run), the run names and the builder's
options; the runs are held by weak references, so the cache never keeps a result alive that the
result cache has let go, and an entry whose result is gone is dropped. Bounded in bytes, thread-safe.

The specs are made with `to_dict(validate=False)`: the chart builders are validated by the tests,
which call `to_dict()` with Altair's default validation on every figure.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Mapping
from typing import Any


def spec_of(chart: Any) -> dict:
    """A chart's Vega-Lite spec, unvalidated (a dict is already one)."""
    return chart if isinstance(chart, dict) else chart.to_dict(validate=False)


class SpecCache:
    def __init__(self, max_bytes: int = 32 << 20):
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, tuple[tuple, dict[str, dict], int]] = OrderedDict()
        self._bytes = 0

    @property
    def bytes(self) -> int:
        return self._bytes

    def __len__(self) -> int:
        return len(self._items)

    def figures(self, build: Callable[..., Mapping[str, Any]], runs: Mapping[str, Any], **options: Any) -> dict:
        """`build(runs, **options)` as {name: Vega-Lite spec}, from the cache when these very runs
        were drawn with these options before."""
        held = list(runs.values())  # the results the specs draw: those of `runs` and of mapping options
        opts = []
        for k, v in sorted(options.items()):
            if isinstance(v, Mapping):  # more runs by name (linreg's single runs beside its sweeps)
                opts.append((k, tuple((n, id(r)) for n, r in v.items())))
                held += list(v.values())
            else:
                opts.append((k, v))
        key = (
            getattr(build, "__module__", ""),
            getattr(build, "__qualname__", repr(build)),
            tuple((name, id(r)) for name, r in runs.items()),
            tuple(opts),
        )
        try:
            hash(key)
        except TypeError:  # an option that is not hashable: build, do not keep
            return {name: spec_of(chart) for name, chart in build(runs, **options).items()}
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                refs, specs, _ = hit
                if all(ref() is r for ref, r in zip(refs, held, strict=True)):
                    self._items.move_to_end(key)
                    return specs
                self._bytes -= self._items.pop(key)[2]  # a run died and its id was reused
        specs = {name: spec_of(chart) for name, chart in build(runs, **options).items()}
        size = len(json.dumps(specs, default=str))
        try:
            refs = tuple(weakref.ref(r) for r in held)
        except TypeError:  # a run that cannot be weakly referenced: not cached
            return specs
        with self._lock:
            if key in self._items:
                self._bytes -= self._items.pop(key)[2]
            if size <= self.max_bytes:
                self._items[key] = (refs, specs, size)
                self._bytes += size
            while self._bytes > self.max_bytes:
                self._bytes -= self._items.popitem(last=False)[1][2]
            self._drop_dead()
        return specs

    def _drop_dead(self) -> None:
        for key in [k for k, (refs, _, _) in self._items.items() if any(ref() is None for ref in refs)]:
            self._bytes -= self._items.pop(key)[2]

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self._bytes = 0
