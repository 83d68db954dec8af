"""The figure cache (core/charts/specs.py): reuse only for the very same runs and options, never
keep a run alive, stay within its bytes."""

import gc
import json

import altair as alt
import pandas as pd

from core.charts.specs import SpecCache


class Run:  # a stand-in result: what the cache sees of one is its identity
    def __init__(self, values):
        self.frame = pd.DataFrame({"step": range(len(values)), "loss": values})


def build_counting(calls):
    def build(runs, scale="linear"):
        calls.append(scale)
        frames = [r.frame.assign(run=name) for name, r in runs.items()]
        chart = alt.Chart(pd.concat(frames)).mark_line().encode(x="step", y=alt.Y("loss", scale=alt.Scale(type=scale)))
        return {"loss": chart}

    return build


def test_the_same_runs_reuse_their_specs_and_new_ones_build():
    cache, calls = SpecCache(), []
    build = build_counting(calls)
    a, b = Run([3, 2, 1]), Run([5, 4, 3])
    first = cache.figures(build, {"current": a})
    assert cache.figures(build, {"current": a}) is first and len(calls) == 1
    assert first["loss"] == build({"current": a})["loss"].to_dict()  # the unvalidated spec is Altair's own
    calls.clear()
    cache.figures(build, {"current": a, "pin 1": b})  # another run drawn: built
    cache.figures(build, {"pin 1": a})  # the same run under another name: built
    cache.figures(build, {"current": a}, scale="log")  # other options: built
    assert calls == ["linear", "linear", "log"]


def test_a_run_let_go_is_not_kept_alive_and_its_entry_goes():
    cache, calls = SpecCache(), []
    build = build_counting(calls)
    a = Run([3, 2, 1])
    cache.figures(build, {"current": a})
    del a
    gc.collect()
    cache.figures(build, {"current": Run([1, 1, 1])})  # a new entry: the dead one is dropped
    assert len(cache) == 1


def test_bounded_in_bytes():
    calls = []
    build = build_counting(calls)
    one = SpecCache().figures(build, {"current": Run(list(range(200)))})

    size = len(json.dumps(one))
    cache = SpecCache(max_bytes=int(size * 2.5))
    runs = [Run(list(range(200))) for _ in range(5)]
    for r in runs:
        cache.figures(build, {"current": r})
    assert len(cache) == 2 and cache.bytes <= cache.max_bytes
