"""The result cache, the device key, and the thread policy."""

import dataclasses

import pytest
import torch

from core import device as device_
from core import registry, runner
from core.settings import SettingError
from core.threads import ThreadPolicy
from core.train import RunResult

SINE = registry.get("sine")


def result(tag):
    import pandas as pd

    return RunResult(metrics={"tag": tag}, history=pd.DataFrame({"step": [1], "loss": [1.0]}))


def test_cache_is_bounded_and_least_recently_used_goes_first():
    cache = runner.ResultCache(max_bytes=3 * runner.result_bytes(result(0)))  # room for three
    for i in range(3):
        cache.put(("k", i), result(i))
    assert cache.get(("k", 0)).metrics["tag"] == 0  # touch 0: now 1 is the oldest
    cache.put(("k", 3), result(3))
    assert len(cache) == 3
    assert cache.get(("k", 1)) is None
    assert [cache.get(("k", i)).metrics["tag"] for i in (0, 2, 3)] == [0, 2, 3]


def test_cache_keys_differ_by_device_and_config():
    config = SINE.presets["as-posted"]
    cpu, gpu = torch.device("cpu"), torch.device("cuda")
    cache = runner.ResultCache()
    cache.put(cache.key(SINE, config, cpu), result("cpu"))
    assert cache.get(cache.key(SINE, config, gpu)) is None
    cache.put(cache.key(SINE, config, gpu), result("gpu"))
    assert cache.get(cache.key(SINE, config, cpu)).metrics["tag"] == "cpu"
    assert cache.get(cache.key(SINE, config, gpu)).metrics["tag"] == "gpu"
    other = dataclasses.replace(config, seed=1)
    assert cache.get(cache.key(SINE, other, cpu)) is None
    assert cache.key(SINE, config, cpu) == cache.key(SINE, dataclasses.replace(other, seed=0), cpu)


def test_execute_validates_before_any_work(cpu):
    with pytest.raises(SettingError, match="lr: must be > 0"):
        runner.execute(SINE, dataclasses.replace(SINE.presets["as-posted"], lr=-1.0), cpu)


def test_device_detection_order_and_errors():
    assert device_.pick("cpu").type == "cpu"
    auto = device_.pick("auto").type
    if torch.cuda.is_available():
        assert auto == "cuda"
    else:
        assert auto in ("mps", "cpu")
        with pytest.raises(SettingError, match=r"^device: cuda was asked for"):
            device_.pick("cuda")
    with pytest.raises(SettingError, match=r"^device: must be one of auto, cpu, cuda, mps"):
        device_.pick("tpu")
    info = device_.info(torch.device("cpu"))
    assert info["kind"] == "CPU" and info["torch"] == torch.__version__ and info["cpu_threads"] >= 1


def test_thread_policy_shares_cores_between_heavy_runs():
    policy = ThreadPolicy(cores=4)
    assert policy.threads_for(heavy=False) == 1
    with policy.share(heavy=True):
        assert policy.threads_for(heavy=True) == 4
        with policy.share(heavy=True):
            assert policy.threads_for(heavy=True) == 2
            with policy.share(heavy=False):
                assert policy.threads_for(heavy=True) == 1
                assert policy.threads_for(heavy=False) == 1
        assert policy.threads_for(heavy=True) == 4
    assert policy.in_flight == 0


def test_interpreter_bound_runs_queue_and_others_do_not():
    """Two serial runs never overlap; a serial and a non-serial one do."""
    import threading
    import time

    policy = ThreadPolicy(cores=2)

    def overlap(first: bool, second: bool) -> bool:
        spans = []
        barrier = threading.Barrier(2)

        def run(serial):
            barrier.wait()
            with policy.share(heavy=False, serial=serial):
                start = time.perf_counter()
                time.sleep(0.2)
                spans.append((start, time.perf_counter()))

        threads = [threading.Thread(target=run, args=(s,)) for s in (first, second)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        (_, first_ends), (second_starts, _) = sorted(spans)
        return second_starts < first_ends

    assert not overlap(True, True)
    assert overlap(True, False) and overlap(False, False)
    assert policy.in_flight == 0


def test_thread_policy_releases_on_error():
    policy = ThreadPolicy(cores=2)
    with pytest.raises(RuntimeError), policy.share(heavy=True):
        raise RuntimeError("interrupted")
    assert policy.in_flight == 0


def test_a_light_run_trains_on_one_thread(cpu):
    seen = []
    runner.execute(
        SINE,
        dataclasses.replace(SINE.presets["as-posted"], steps=60, n_points=200),
        cpu,
        on_progress=lambda p: seen.append(torch.get_num_threads()),
    )
    assert seen and set(seen) == {1}
