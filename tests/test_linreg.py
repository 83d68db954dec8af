"""Case 4 against its oracles: the standalone script (the posted Dataset, its batches and the
training step in plain PyTorch: F.mse_loss with the posted shapes, torch.optim.Adam), the single run's
plain PyTorch loop (`plain_single`: autograd, torch.optim, core.train's loop, curvature.Probe), autograd
for the closed-form loss, PyTorch's own warning, and the post's figures on reduced sweeps."""

import dataclasses
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, RandomSampler

from core import curvature, runner
from core.cases.linreg import CASE, data, script, single
from core.cases.linreg import config as cfg
from core.cases.linreg.config import FIXED_REACHES
from core.cases.linreg.single import SINGLE
from core.settings import SettingError
from core.train import train

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")


def plain_run(config, batch_size, shuffle, dtype=torch.float32):
    """The standalone script's run (the oracle): the posted Dataset's tensors in `dtype`, each epoch's
    batches cut from the run's permutation, nn.Linear(1, 1) from the run's initial line,
    F.mse_loss(preds, y), torch.optim."""
    c = dataclasses.asdict(config)
    x, y = script.make_data(c)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        slope, intercept, losses = script.fit(x.to(dtype), y.to(dtype), c, batch_size, shuffle, stop_at_nan=False)
    return slope, intercept, np.array(losses)


def run_single(config, device=CPU):
    """The case's task "single": one run of the sweep at batch_size."""
    return runner.execute(CASE, config, device, task=SINGLE)


SMALL = dataclasses.replace(
    cfg.AS_POSTED, n_points=120, epochs=4, batch_sizes_from=7, batch_sizes_to=120, batch_sizes_count=5
)  # batch sizes 7, 35, 63, 91, 120: partial last batches, and one batch of everything


def test_data_is_the_posted_dataset():
    """The app's tensors and the script's are the items of the post's Dataset (the script's LineFunction)."""
    for shape, target in (("as-posted", (5, 1, 1)), ("fixed", (5, 1))):
        config = dataclasses.replace(cfg.AS_POSTED, target_shape=shape)
        x, y = data.make_data(config)
        posted = script.posted_dataset(dataclasses.asdict(config))
        xb, yb = next(iter(DataLoader(posted, batch_size=5)))
        assert xb.shape == (5, 1) and yb.shape == target
        assert torch.equal(x[:5], xb) and torch.equal(y[:5], yb)
        assert torch.equal(y.reshape(-1), torch.stack([posted[i][1].reshape(()) for i in range(1000)]))
        xs, ys = script.make_data(dataclasses.asdict(config))
        assert torch.equal(xs, x) and torch.equal(ys, y)
    noise = (y[:, 0] - (-4 * x[:, 0])).numpy()
    assert abs(noise.std() - 0.05) < 0.005 and abs(noise.mean()) < 0.005


def test_epoch_orders_are_random_samplers_permutations():
    """Each epoch is a fresh randperm from the run's generator, the first one exactly what
    RandomSampler(generator=g) (DataLoader's shuffle) visits first; the stream continues across calls."""
    n, bs = 50, 8
    first = torch.tensor(list(RandomSampler(range(n), generator=data.shuffle_generator(3, bs))))
    g = data.shuffle_generator(3, bs)
    got = torch.cat([data.epoch_orders(n, 2, True, g), data.epoch_orders(n, 1, True, g)]).long()
    assert torch.equal(got[0], first)
    ref = data.shuffle_generator(3, bs)
    assert torch.equal(got, torch.stack([torch.randperm(n, generator=ref) for _ in range(3)]))
    assert torch.equal(data.epoch_orders(n, 2, False, g).long(), torch.arange(n).expand(2, n))
    # each batch size has its own stream, whatever else the sweep holds
    assert not torch.equal(data.epoch_orders(n, 1, True, data.shuffle_generator(3, 9)).long(), first)


@pytest.mark.parametrize("n", [1, 2, 7, 1000, 4001])
def test_the_compiled_shuffle_draws_torchs_permutations_and_sums_their_batches(n):
    """shuffle.shuffled_sums against torch itself: the same permutations as randperm on the same
    generator (across calls, across the Mersenne Twister's 624-number refills, from a generator that
    has drawn before), the generator left where torch would leave it, and each batch's sums those of
    its rows (float64, to rounding: the compiled sums add in the permutation's order)."""
    from core.cases.linreg import shuffle

    assert shuffle.available()  # numba is a requirement: without it this test would check nothing
    table = np.random.default_rng(n).normal(size=(n, 5))
    for bs in sorted({1, 3, max(1, n // 2), n}):
        ours, ref = torch.Generator().manual_seed(7 + bs), torch.Generator().manual_seed(7 + bs)
        torch.randperm(5, generator=ours), torch.randperm(5, generator=ref)  # mid-state, not fresh
        for epochs in (1, 3):
            sums, last = shuffle.shuffled_sums(table, bs, epochs, ours)
            orders = torch.stack([torch.randperm(n, generator=ref) for _ in range(epochs)]).numpy()
            assert np.array_equal(last, orders[-1])
            starts = np.arange(0, n, bs)
            want = np.stack([np.add.reduceat(table[o], starts, axis=0) for o in orders])
            np.testing.assert_allclose(sums, want, rtol=0, atol=1e-12 * n)
        assert torch.equal(torch.randperm(n, generator=ours), torch.randperm(n, generator=ref))
        assert torch.equal(torch.rand(3, generator=ours), torch.rand(3, generator=ref))


def test_batch_means_are_the_same_compiled_or_not_and_in_threads(monkeypatch):
    """The sweep's streams give the same means through the compiled shuffle as through epoch_orders and
    numpy, and the same sweep whether its streams are drawn in a thread pool or one after another."""
    from concurrent.futures import ThreadPoolExecutor

    from core.cases.linreg import shuffle, sweep

    x, y = (t.reshape(-1).double().numpy() for t in data.make_data(cfg.AS_POSTED))

    def means(bs):
        stream = sweep.BatchMeans(x, y, bs, True, data.shuffle_generator(0, bs))
        return np.concatenate([stream.take(k) for k in (1, 250, 2048)]), stream.order

    compiled = {bs: means(bs) for bs in (10, 333, 1000)}
    monkeypatch.setattr(shuffle, "available", lambda: False)
    for bs, (got, order) in compiled.items():
        want, want_order = means(bs)
        assert np.array_equal(order, want_order)
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    monkeypatch.undo()

    config = dataclasses.replace(cfg.PRESETS["fixed"], steps=300, batch_sizes_count=12)
    x_t, y_t = data.make_data(config)
    xs, ys = x_t[:, 0].double().numpy(), y_t.reshape(-1).double().numpy()
    runs = [(bs, sh) for sh in data.shuffles(config) for bs in data.sweep_sizes(config)]
    lengths = np.array([data.steps_for(config, bs) for bs, _ in runs])

    def fit(draw):
        streams = [sweep.BatchMeans(xs, ys, bs, sh, data.shuffle_generator(config.seed, bs)) for bs, sh in runs]
        return sweep.fit_batched(streams, lengths, data.init_line(config.seed), config, draw=draw)

    (p1, l1), (p2, l2) = fit(map), (None, None)
    with ThreadPoolExecutor(2) as pool:
        p2, l2 = fit(pool.map)
    assert np.array_equal(p1, p2) and all(np.array_equal(a, b) for a, b in zip(l1, l2, strict=True))


@pytest.mark.parametrize("broadcast", [True, False])
def test_quadratic_is_the_loss_and_its_gradient(broadcast):
    """The closed form (loss and gradient from five batch means) against F.mse_loss and autograd, float64."""
    g = torch.Generator().manual_seed(1)
    for bs in (1, 2, 7, 40):
        x = torch.rand(bs, 1, generator=g, dtype=torch.float64)
        y = -4 * x + 0.3 * torch.randn(bs, 1, generator=g, dtype=torch.float64)
        w = torch.randn(1, 1, generator=g, dtype=torch.float64, requires_grad=True)
        b = torch.randn(1, generator=g, dtype=torch.float64, requires_grad=True)
        target = y.unsqueeze(1) if broadcast else y  # (B, 1, 1) or (B, 1)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            loss = F.mse_loss(F.linear(x, w, b), target)
        loss.backward()
        xs, ys = x[:, 0].numpy(), y[:, 0].numpy()
        means = np.array([xs.mean(), (xs * xs).mean(), ys.mean(), (xs * ys).mean(), (ys * ys).mean()])
        a, xm, c, ym, d = data.quadratic(means, broadcast)
        wv, bv = w.item(), b.item()
        assert wv * wv * a + 2 * wv * bv * xm + bv * bv - 2 * wv * c - 2 * bv * ym + d == pytest.approx(loss.item())
        assert 2 * (wv * a + bv * xm - c) == pytest.approx(w.grad.item())
        assert 2 * (wv * xm + bv - ym) == pytest.approx(b.grad.item())


@pytest.mark.parametrize(
    ("target_shape", "optimizer", "lr", "budget"),
    [("as-posted", "adam", 1e-2, "epochs"), ("fixed", "adam", 1e-2, "steps"), ("as-posted", "sgd", 0.3, "epochs")],
)
def test_the_batched_sweep_equals_separate_plain_runs(target_shape, optimizer, lr, budget):
    """Float64 plain runs (the posted step: DataLoader, F.mse_loss with the posted shapes, torch.optim)
    against the batched sweep, run by run and step by step."""
    config = dataclasses.replace(SMALL, target_shape=target_shape, optimizer=optimizer, lr=lr, budget=budget, steps=23)
    result = runner.execute(CASE, config, CPU)
    rows = result.frames["sweep"]
    assert len(rows) == 10 and rows["batch_size"].tolist() == [7, 35, 63, 91, 120] * 2
    for row in rows.itertuples():
        slope, intercept, losses = plain_run(config, row.batch_size, row.shuffle, torch.float64)
        assert row.steps == len(losses)
        assert row.slope == pytest.approx(slope, rel=1e-9, abs=1e-12)
        assert row.intercept == pytest.approx(intercept, rel=1e-9, abs=1e-12)
        history = result.history[
            (result.history["batch_size"] == row.batch_size) & (result.history["shuffle"] == row.shuffle)
        ]
        np.testing.assert_allclose(history["loss"], losses[history["step"] - 1], rtol=1e-9)
        assert row.final_loss == pytest.approx(losses[-1], rel=1e-9)


def test_the_posted_sweep_equals_float32_plain_runs_within_float_tolerance():
    """The posted dtype (float32) and data, 30 epochs (3000 steps at batch size 10), a few of the post's batch sizes."""
    config = dataclasses.replace(cfg.AS_POSTED, epochs=30)
    sweep = runner.execute(CASE, config, CPU).frames["sweep"]
    for bs, shuffle in [(10, True), (30, False), (190, True), (1000, False)]:
        slope, intercept, losses = plain_run(config, bs, shuffle)
        row = sweep[(sweep["batch_size"] == bs) & (sweep["shuffle"] == shuffle)].iloc[0]
        assert row["steps"] == len(losses)
        assert row["slope"] == pytest.approx(slope, abs=2e-4)
        assert row["intercept"] == pytest.approx(intercept, abs=2e-4)


@pytest.mark.parametrize(("shuffle", "bs"), [("true", 7), ("false", 35), ("true", 120)])
def test_a_single_run_is_its_sweep_entry(shuffle, bs):
    """The same batches and the same steps (the sweep's engine on one run): the same numbers."""
    detail = run_single(dataclasses.replace(SMALL, shuffle=shuffle, batch_size=bs))
    result = runner.execute(CASE, SMALL, CPU)
    sweep = result.frames["sweep"]
    row = sweep[(sweep["batch_size"] == bs) & (sweep["shuffle"] == (shuffle == "true"))].iloc[0]
    m = detail.metrics
    assert m["steps_run"] == row["steps"] == detail.history["step"].iloc[-1]
    assert m["slope"] == pytest.approx(row["slope"], rel=1e-9)
    assert m["intercept"] == pytest.approx(row["intercept"], rel=1e-9)
    assert m["final_loss"] == pytest.approx(row["final_loss"], rel=1e-9)
    thinned = result.history[(result.history["batch_size"] == bs) & (result.history["shuffle"] == (shuffle == "true"))]
    losses = detail.history["loss"].to_numpy()[thinned["step"].to_numpy() - 1]
    np.testing.assert_allclose(losses, thinned["loss"], rtol=1e-9)


def plain_single(config, dtype=torch.float32):
    """The oracle of the single run: the plain PyTorch loop, on the standalone script's data, starting line
    and shuffling streams. nn.Linear(1, 1)'s weight and bias in `dtype` (float32 as posted), F.mse_loss(preds, y)
    on each epoch's batches cut from RandomSampler's permutation, torch.optim.Adam or SGD, core.train's loop
    (which stops at its first check after a NaN or inf loss) and a curvature.Probe measuring the batch
    sharpness by power iteration on the run's measurement batches. -> RunResult, as the single run builds it."""
    c = dataclasses.asdict(config)
    n, bs = config.n_points, config.batch_size
    x32, y32 = script.make_data(c)
    x, y = x32.to(dtype), y32.to(dtype)
    w0, b0 = script.start_line(config.seed)
    w = torch.tensor([[w0]], dtype=dtype, requires_grad=True)  # nn.Linear(1, 1).weight
    b = torch.tensor([b0], dtype=dtype, requires_grad=True)
    adam = config.optimizer == "adam"
    optimizer = torch.optim.Adam([w, b], lr=config.lr) if adam else torch.optim.SGD([w, b], lr=config.lr)
    steps, nb = data.steps_for(config, bs), data.n_batches(n, bs)
    g, shuffle = script.shuffle_generator(config.seed, bs), config.shuffle != "false"
    batches, shapes, caught = {}, {}, []

    def loss_fn(step):
        j = step % nb
        if j == 0:  # a new epoch
            batches["order"] = torch.randperm(n, generator=g) if shuffle else torch.arange(n)
        idx = batches["order"][j * bs : (j + 1) * bs]
        if len(idx) == bs:
            batches["last"] = idx
        preds, target = F.linear(x[idx], w, b), y[idx]
        if len(idx) not in shapes:  # the first batch of each length: its shapes and PyTorch's warning
            shapes[len(idx)] = (tuple(preds.shape), tuple(target.shape))
            return data.mse_loss_recording(preds, target, caught)
        return F.mse_loss(*torch.broadcast_tensors(preds, target))  # what mse_loss does, without the warning

    def on(idx):
        return lambda: F.mse_loss(*torch.broadcast_tensors(F.linear(x[idx], w, b), y[idx]))

    every = curvature.every_for(steps, single.SHARPNESS_MEASUREMENTS)
    losses = [on(idx) for idx in single.measurement_batches(config)]
    probe = curvature.Probe(losses, [w, b], optimizer, every=every, steps=steps, seed=config.seed)
    history = train({"weight": w, "bias": b}, optimizer, loss_fn, steps, check_every=500, sharpness=probe)
    fit = (float(w.detach()), float(b.detach()))
    last = (batches["last"], batches["order"])
    sharp = probe.frame(history.steps_run)
    return single._single_result(config, history, fit, (w0, b0), shapes, caught, (x32, y32), last, sharp)


FAST_AND_PLAIN = {
    "as-posted, a partial last batch": {"shuffle": "true", "batch_size": 7},
    "fixed, unshuffled": {"shuffle": "false", "batch_size": 35, "target_shape": "fixed"},
    "sgd": {"shuffle": "true", "batch_size": 10, "optimizer": "sgd", "lr": 0.3},
    "sgd diverging": {"shuffle": "true", "optimizer": "sgd", "lr": 10.0, "epochs": 40},
    "fixed diverging, batch size 1": {"shuffle": "false", "optimizer": "sgd", "lr": 10.0, "target_shape": "fixed",
                                      "batch_size": 1, "epochs": 400},
    # past the stability line by little: the loss grows ~1.5x a step, so that where it leaves float32's range
    # depends on mse_loss summing B² numbers before it divides
    "slowly diverging, the full batch": {"shuffle": "true", "batch_size": 120, "optimizer": "sgd", "lr": 0.9,
                                         "epochs": 400},
    "batch size 1": {"shuffle": "true", "batch_size": 1},
    "the full data, reshuffled": {"shuffle": "true", "batch_size": 120, "epochs": 30},
    "steps over several checks": {"shuffle": "both", "batch_size": 13, "budget": "steps", "steps": 1700,
                                  "target_shape": "fixed", "lr": 0.05},
}  # fmt: skip


@pytest.mark.parametrize("overrides", FAST_AND_PLAIN.values(), ids=FAST_AND_PLAIN.keys())
def test_the_single_run_is_the_plain_pytorch_loop(overrides):
    """The single run (batch means, closed-form sharpness) against `plain_single`, in float32 as posted
    (where it stops, rounding aside the same numbers) and in float64 (the same numbers to 1e-8, up to
    where float32 stopped): every step's loss, the final line, the sharpness the Probe measured, the
    shapes, PyTorch's warning, the last batch and the last epoch's losses."""
    config = dataclasses.replace(SMALL, **overrides)
    fast, plain, exact = run_single(config), plain_single(config), plain_single(config, torch.float64)
    m, p = fast.metrics, plain.metrics
    for key in ("steps_run", "diverged", "warning", "broadcast_warning", "shuffle", "initial_slope", "crossed_at"):
        assert m[key] == p[key], key
    n = m["steps_run"]
    assert n == len(fast.history) and (n < data.steps_for(config, config.batch_size)) == m["diverged"]
    np.testing.assert_allclose(fast.history["loss"], plain.history["loss"], rtol=2e-3, atol=1e-7)
    np.testing.assert_allclose(fast.history["loss"], exact.history["loss"][:n], rtol=1e-8)
    line, plain_line = [m["slope"], m["intercept"]], [p["slope"], p["intercept"]]
    np.testing.assert_allclose(line, plain_line, rtol=1e-4, atol=1e-6)  # NaN where both diverged
    if not m["diverged"]:
        np.testing.assert_allclose(line, [exact.metrics["slope"], exact.metrics["intercept"]], rtol=1e-8)
    # the batch sharpness: the same steps, the Probe's power iterations against the exact eigenvalue
    sharp, probed = fast.frames["sharpness"], plain.frames["sharpness"]
    assert len(sharp) > 0 and sharp["step"].tolist() == probed["step"].tolist()
    columns = ["limit", "lr", "variant", "settled"]
    pd.testing.assert_frame_equal(sharp[columns], probed[columns])
    np.testing.assert_allclose(sharp["sharpness"], probed["sharpness"], rtol=1e-4)
    np.testing.assert_allclose(fast.history["sharpness"], plain.history["sharpness"], rtol=1e-4)
    assert m["sharpness_max"] == pytest.approx(p["sharpness_max"], rel=1e-4, nan_ok=True)
    # the shapes and the samples exactly; what depends on the final line within float32's rounding
    for name in ("shapes", "batch", "pairs", "epoch_losses", "line"):
        pd.testing.assert_frame_equal(fast.frames[name], plain.frames[name], rtol=1e-4, atol=1e-6, obj=name)
    for column in ("i", "x", "y"):
        assert fast.frames["batch"][column].equals(plain.frames["batch"][column])


# ---------------------------------------------------------------- the post, reproduced


@pytest.fixture(scope="module")
def sweeps():
    """The full posted sweep (100 batch sizes, shuffle on and off) for as-posted and fixed-shape,
    and a reduced one (34 batch sizes: 10, 40, ..., 1000) for fixed."""
    reduced = dict(batch_sizes_count=34)
    return {
        "as-posted": runner.execute(CASE, cfg.AS_POSTED, CPU).frames["sweep"],
        "fixed-shape": runner.execute(CASE, CASE.presets["fixed-shape"], CPU).frames["sweep"],
        "fixed": runner.execute(CASE, dataclasses.replace(CASE.presets["fixed"], **reduced), CPU).frames["sweep"],
    }


def _slopes(frame, shuffle):
    rows = frame[frame["shuffle"] == shuffle]
    return rows.set_index("batch_size")["slope"]


def test_as_posted_with_shuffling_no_batch_size_reaches_the_slope(sweeps):
    slopes = _slopes(sweeps["as-posted"], True)
    assert len(slopes) == 100 and slopes.index[0] == 10 and slopes.index[-1] == 1000
    assert (slopes > -1).all()  # nowhere near -4: the broadcast loss pulls the slope to 0


def test_as_posted_without_shuffling_only_the_smallest_batches_do(sweeps):
    slopes = _slopes(sweeps["as-posted"], False)
    assert (abs(slopes[[10, 20, 30]] + 4) < 0.1).all()
    assert (slopes[slopes.index >= 60] > -3.5).all()


def test_fixed_shape_makes_shuffling_irrelevant_for_small_batches(sweeps):
    on, off = _slopes(sweeps["fixed-shape"], True), _slopes(sweeps["fixed-shape"], False)
    for bs in (10, 20):
        assert abs(on[bs] + 4) < 0.1 and abs(off[bs] + 4) < 0.1
    assert (_slopes(sweeps["as-posted"], True)[[10, 20]] > -1).all()  # what shuffling did with the posted shapes
    # the second cause remains: 100 steps at batch size 1000 cannot carry the slope to -4
    assert on[1000] > -2 and off[1000] > -2


def test_fixed_reaches_the_line_for_every_batch_size_and_both_shuffles(sweeps):
    fixed = sweeps["fixed"]
    assert len(fixed) == 68 and (fixed["steps"] == cfg.AS_POSTED.steps).all()
    assert ((fixed["slope"] + 4).abs() < 0.1).all(), fixed
    assert (fixed["intercept"].abs() < 0.05).all(), fixed


def test_steps_shrink_with_the_batch_size_under_an_epoch_budget(sweeps):
    rows = sweeps["as-posted"]
    steps = rows[rows["shuffle"]].set_index("batch_size")["steps"]
    assert steps[10] == 10_000 and steps[990] == 200 and steps[1000] == 100
    assert data.steps_needed(cfg.AS_POSTED, data.init_line(0)[0]) > 100


# ---------------------------------------------------------------- one run in detail


def test_the_warning_is_pytorchs_own_verbatim():
    config = dataclasses.replace(SMALL, shuffle="true", batch_size=35)
    m = run_single(config).metrics
    with warnings.catch_warnings(record=True) as records:
        warnings.simplefilter("always")
        F.mse_loss(torch.zeros(35, 1), torch.zeros(35, 1, 1))
    assert m["broadcast_warning"] is True and m["warning"] == str(records[0].message)
    assert "Using a target size (torch.Size([35, 1, 1]))" in m["warning"]
    fixed = run_single(dataclasses.replace(config, target_shape="fixed")).metrics
    assert fixed["broadcast_warning"] is False and fixed["warning"] is None


def test_the_single_run_shows_shapes_and_the_pairs_the_loss_averages():
    config = dataclasses.replace(SMALL, shuffle="true", batch_size=7)
    result = run_single(config)
    shapes = result.frames["shapes"].set_index("tensor")["shape"]
    assert shapes["predictions"] == "(7, 1)" and shapes["targets"] == "(7, 1, 1)"
    assert shapes["what mse_loss averages over"] == "(7, 7, 1)"
    pairs, batch = result.frames["pairs"], result.frames["batch"]
    assert len(batch) == 7 and len(pairs) == 49  # the last full batch (120 = 17 × 7 + 1: the last one is partial)
    diag = pairs[pairs["target"] == pairs["prediction"]]["difference"].to_numpy()
    np.testing.assert_allclose(diag, batch["difference"])
    # the broadcast loss of that batch is the mean of the whole matrix, at the weights of the last step
    p = batch["prediction"].to_numpy()
    assert np.mean((p[None, :] - batch["y"].to_numpy()[:, None]) ** 2) == pytest.approx(
        np.mean(pairs["difference"] ** 2)
    )


def test_a_diverging_sweep_is_a_result(cpu):
    config = dataclasses.replace(SMALL, optimizer="sgd", lr=10.0, epochs=40)
    result = runner.execute(CASE, config, cpu)
    sweep = result.frames["sweep"]
    assert not np.isfinite(sweep["slope"]).all()
    single = run_single(dataclasses.replace(config, shuffle="true"), cpu)
    assert single.metrics["diverged"] is True and single.metrics["steps_run"] < 40 * 18


def test_the_largest_seed_and_batch_size_have_their_own_streams():
    top = 2**31 - 1
    assert data.shuffle_generator(top, cfg.MAX_N).initial_seed() < 2**64
    assert data.shuffle_generator(0, 2**20 - 1).initial_seed() < data.shuffle_generator(1, 0).initial_seed()
    config = dataclasses.replace(SMALL, seed=top, shuffle="true", batch_size=120)
    assert run_single(config).metrics["steps_run"] == 4


def test_same_config_same_result():
    a = runner.execute(CASE, SMALL, CPU).frames["sweep"]
    b = runner.execute(CASE, SMALL, CPU).frames["sweep"]
    assert a.equals(b)
    c = runner.execute(CASE, dataclasses.replace(SMALL, seed=1), CPU).frames["sweep"]
    assert not a.equals(c)


# ---------------------------------------------------------------- diagnosis


def test_diagnosis_names_both_causes_and_their_fixes():
    result = runner.execute(CASE, cfg.AS_POSTED, CPU)
    found = {f.key: f for f in CASE.diagnose(cfg.AS_POSTED, result)}
    assert set(found) == {"broadcast", "too-few-steps"}
    assert found["broadcast"].fix == {"target_shape": "fixed"}
    assert "with shuffling, no batch size reaches slope -4" in found["broadcast"].evidence
    assert "Using a target size" in found["broadcast"].evidence
    assert found["too-few-steps"].fix == {"budget": "steps", "steps": 5000}
    assert "batch size 1000 only 100" in found["too-few-steps"].evidence
    config = cfg.AS_POSTED
    for f in found.values():
        config = dataclasses.replace(config, **f.fix)
    assert config == CASE.presets["fixed"]
    assert CASE.diagnose(config, runner.execute(CASE, dataclasses.replace(config, steps=50), CPU)) == []


# ---------------------------------------------------------------- settings and the CLI


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": "0"}, "batch_size: must be >= 1 and <= 100000 (got 0)"),
        ({"batch_size": "1001"}, "batch_size: must be at most n_points (1000) (got 1001)"),
        ({"batch_sizes_to": "2000"}, "batch_sizes_to: must be at most n_points (1000) (got 2000)"),
        ({"batch_sizes_from": "500", "batch_sizes_to": "100"}, "batch_sizes_from: must be at most batch_sizes_to"),
        ({"batch_sizes_count": "0"}, "batch_sizes_count: must be >= 1 and <= 1000 (got 0)"),
        ({"batch_sizes_to": "50", "batch_sizes_count": "100"}, "batch_sizes_count: at most 41, one per batch size"),
        ({"noise": "-0.1"}, "noise: must be >= 0 and <= 10 (got -0.1)"),
        ({"n_points": "5"}, "n_points: must be >= 10 and <= 100000 (got 5)"),
        ({"lr": "0"}, "lr: must be > 0 and <= 10 (got 0)"),
        ({"shuffle": "maybe"}, "shuffle: must be one of true, false, both (got 'maybe')"),
        ({"mode": "single"}, "mode: not a setting any more: the sweep is the case's run"),
        ({"batch_sizes_from": "1", "epochs": "101"}, "epochs: batch size 1 would take 101,000"),
        ({"epochs": "2000"}, "epochs: batch size 10 would take 200,000 optimizer steps"),
        ({"budget": "steps", "steps": "100000"}, "steps: the sweep would take 20,000,000 optimizer steps"),
    ],
)  # fmt: skip
def test_bad_settings_get_a_message_naming_the_setting(overrides, message):
    with pytest.raises(SettingError) as e:
        CASE.configure("as-posted", overrides)
    assert str(e.value).startswith(message), str(e.value)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"batch_size": "3000", "n_points": "5000"}, "batch_size: with target_shape as-posted the loss forms a (B, B)"),
        ({"batch_size": "1"}, "epochs: a single run at batch_size 1 would take 100,000 optimizer steps"),
    ],
)
def test_the_single_run_refuses_what_its_own_limits_do_not_allow(overrides, message):
    """The sweep may run (its own limits hold); its one run in detail may not, and the runner says so."""
    config = CASE.configure("as-posted", overrides)
    assert SINGLE.check(config)[0].startswith(message)
    with pytest.raises(SettingError) as e:
        run_single(config)
    assert str(e.value).startswith(message), str(e.value)


def test_presets_are_small_diffs_and_valid():
    assert CASE.errors(cfg.AS_POSTED) == []
    assert data.sweep_sizes(cfg.AS_POSTED) == [int(x) for x in np.linspace(10, 1000, 100)]
    for name, config in CASE.presets.items():
        assert CASE.errors(config) == [], name
    diff = {k for k, v in dataclasses.asdict(CASE.presets["fixed"]).items() if v != getattr(cfg.AS_POSTED, k)}
    assert diff == {"target_shape", "budget"}


def cli(*args):
    out = subprocess.run([sys.executable, "-m", "core", *args], cwd=ROOT, capture_output=True, text=True, timeout=300)
    return out


def test_cli_single_run_metrics():
    out = cli("run", "linreg", "--task", "single", "--set", "shuffle=false", "--set", "epochs=3")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["task"] == "single"
    m = json.loads(out.stdout)["metrics"]
    assert {"slope", "intercept", "final_loss", "steps_run", "broadcast_warning"} <= set(m)
    assert m["steps_run"] == 300 and m["broadcast_warning"] is True
    assert isinstance(m["slope"], float) and isinstance(m["final_loss"], float)


def test_cli_sweep_metrics():
    out = cli("run", "linreg", "--preset", "fixed", "--set", "batch_sizes_count=4", "--set", "steps=30")
    assert out.returncode == 0, out.stderr
    sweep = json.loads(out.stdout)["metrics"]["sweep"]
    assert [(r["batch_size"], r["shuffle"]) for r in sweep] == [
        (b, s) for s in (True, False) for b in (10, 340, 670, 1000)
    ]
    assert all(set(r) == {"batch_size", "shuffle", "slope", "intercept", "final_loss", "steps"} for r in sweep)
    assert all(r["steps"] == 30 for r in sweep)


def test_cli_diverged_sweep_is_valid_json_and_bad_input_is_one_line():
    out = cli(
        "run", "linreg", "--set", "optimizer=sgd", "--set", "lr=10", "--set", "batch_sizes_count=3", "--set", "epochs=5"
    )
    sweep = json.loads(out.stdout)["metrics"]["sweep"]
    assert any(r["slope"] is None for r in sweep)
    out = cli("run", "linreg", "--set", "batch_size=0")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == "error: batch_size: must be >= 1 and <= 100000 (got 0)\n"
    out = cli("run", "linreg", "--set", "mode=single")  # the setting it had: what to do instead
    assert out.returncode == 2 and "--task single" in out.stderr
    out = cli("run", "linreg", "--task", "sweep")
    assert out.returncode == 2 and out.stderr == "error: task: must be one of single (got 'sweep')\n"


def test_epoch_losses_are_mse_loss_over_the_last_epochs_batches():
    """The detail's table: the last epoch's mean batch loss at the fitted and the data's line, against
    F.mse_loss itself on that epoch's batches (the posted shapes, and the shapes meant)."""
    config = dataclasses.replace(SMALL, shuffle="true", batch_size=35, epochs=30)
    result = run_single(config)
    table = result.frames["epoch_losses"].set_index("line")
    x, y = data.make_data(config)
    order = data.epoch_orders(120, 30, True, data.shuffle_generator(config.seed, 35))[-1].long()
    m = result.metrics
    for line, (w, b) in {"the fitted line": (m["slope"], m["intercept"]), "the data's line": (-4.0, 0.0)}.items():
        as_averaged, meant = [], []
        for idx in order.split(35):
            preds = (w * x[idx] + b).double()  # (B, 1)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                as_averaged.append(F.mse_loss(preds, y[idx].double()).item())  # (B, 1, 1): broadcast
            meant.append(F.mse_loss(preds, y[idx].double().reshape(-1, 1)).item())
        assert table.loc[line, "as mse_loss averaged it"] == pytest.approx(np.mean(as_averaged), rel=1e-6)
        assert table.loc[line, "as meant"] == pytest.approx(np.mean(meant), rel=1e-6)
    # shuffled, the broadcast loss prefers the flat fitted line; the loss meant prefers the data's line
    assert (
        table.loc["the fitted line", "as mse_loss averaged it"]
        < table.loc["the data's line", "as mse_loss averaged it"]
    )
    assert table.loc["the data's line", "as meant"] < table.loc["the fitted line", "as meant"]


def _layers(chart) -> list[dict]:
    spec = chart.to_dict()  # validates against the Vega-Lite schema, and Altair's 5000-row limit
    datasets = spec.get("datasets", {})
    layers = spec.get("layer", [spec])
    return [dict(layer, rows=datasets.get(layer.get("data", {}).get("name"), [])) for layer in layers]


def _domains(chart) -> set[str]:
    return {
        d
        for layer in _layers(chart)
        for d in layer.get("encoding", {}).get("color", {}).get("scale", {}).get("domain", [])
    }


@pytest.mark.parametrize("bs", [7, 63])
def test_the_pages_figures_with_pins_overlaid(bs):
    """Every chart of the page, for a small and a big batch (the heatmap shows 40 × 40 of it), with a
    compared sweep and a pinned one that diverged: pins overlay the three panels, the steps, and the
    detail's fit and loss in their own colour; the pairs are the current run's only."""
    from core.cases.linreg import charts

    current = dataclasses.replace(SMALL, batch_size=bs)
    diverged = dataclasses.replace(SMALL, optimizer="sgd", lr=10.0, epochs=40, batch_size=bs)
    fixed = dataclasses.replace(SMALL, target_shape="fixed", budget="steps", steps=50)
    configs = {"current": current, "fixed": fixed, "pin 1": diverged}  # the page's order: current, compared, pinned
    runs = {name: runner.execute(CASE, c, CPU) for name, c in configs.items()}
    details = {name: run_single(configs[name]) for name in ("current", "pin 1")}
    figures = charts.figures(runs, details)
    assert list(figures) == ["slope", "intercept", "final_loss", "steps", "fit", "loss", "sharpness", "pairs", "meant"]
    # the page builds the details' charts on their own once the sweeps' are drawn: the same charts
    alone = charts.figures(runs, details, sweep_charts=False)
    assert list(alone) == ["fit", "loss", "sharpness", "pairs", "meant"]
    assert all(alone[k].to_dict() == figures[k].to_dict() for k in alone)
    for name in ("slope", "intercept", "final_loss", "steps", "loss"):
        assert {"current", "fixed", "pin 1"} & _domains(figures[name]) == (
            {"current", "pin 1"} if name == "loss" else {"current", "fixed", "pin 1"}
        ), name
    assert {"fitted: current", "fitted: pin 1", "the data's line", "start"} <= _domains(figures["fit"])
    assert "pin 1" not in str(figures["pairs"].to_dict()) and "pin 1" not in str(figures["meant"].to_dict())
    # the rules mark the truth of the current settings; the diverged pin's slopes are left out, not drawn
    slope = _layers(figures["slope"])
    assert slope[0]["rows"] == [{"truth": -4.0}]
    drawn = slope[1]["rows"]
    assert all(abs(r["slope"]) < 1000 * 5 for r in drawn)
    assert {r["run"] for r in drawn} >= {"current", "fixed"}
    steps = _layers(figures["steps"])
    assert steps[1]["rows"][0]["steps"] == data.steps_needed(current, data.init_line(0)[0])
    title = figures["pairs"].to_dict()["title"]["text"]
    assert title == (["The loss averages all 63 × 63", "(the first 40 rows and columns)"]
                     if bs == 63 else "The loss averages all 7 × 7")  # fmt: skip


def test_a_run_keeps_its_colour_in_every_chart():
    """A pinned sweep whose detail cannot run (here: its batch size would take too many steps) is missing
    from the detail's charts; the pins after it keep the colours they have in the sweep's charts."""
    from core.cases.linreg import charts

    sweep, single = runner.execute(CASE, SMALL, CPU), run_single(SMALL)
    figures = charts.figures({"current": sweep, "pin 1": sweep, "pin 2": sweep}, {"current": single, "pin 2": single})

    def color_of(chart, name):
        for layer in _layers(chart):
            scale = layer.get("encoding", {}).get("color", {}).get("scale", {})
            if name in scale.get("domain", []):
                return scale["range"][scale["domain"].index(name)]

    pin2 = color_of(figures["slope"], "pin 2")
    assert pin2 != color_of(figures["slope"], "pin 1")
    assert color_of(figures["steps"], "pin 2") == color_of(figures["loss"], "pin 2") == pin2
    assert color_of(figures["fit"], "fitted: pin 2") == pin2
    assert color_of(figures["loss"], "current") == color_of(figures["slope"], "current")


def test_figures_of_a_single_run_are_its_detail_charts():
    """What `python -m core figures linreg --task single ...` writes: that run's charts (with a sweep beside it,
    which a single run's figures leave out)."""
    from core.cases.linreg import charts

    single = run_single(dataclasses.replace(SMALL, shuffle="false"))
    figures = charts.figures({"current": single, "as-posted": runner.execute(CASE, SMALL, CPU)})
    assert list(figures) == ["fit", "loss", "sharpness", "pairs", "meant"]
    assert list(charts.figures({"current": runner.execute(CASE, SMALL, CPU)})) == [
        "slope",
        "intercept",
        "final_loss",
        "steps",
    ]


def test_many_big_runs_stay_under_altairs_row_limit():
    """A figure's data must stay under 5000 rows or its export fails: 1000 batch sizes × 2 shuffles per
    sweep and 50,000-step histories, six of each."""
    from core.cases.linreg import charts

    sweep = runner.execute(CASE, SMALL, CPU)
    sizes = np.repeat(np.arange(1, 1001), 2)
    rows = pd.DataFrame({"batch_size": sizes, "shuffle": np.tile([True, False], 1000), "slope": -4.0,
                         "intercept": 0.0, "final_loss": 0.0025, "steps": 100})  # fmt: skip
    big = dataclasses.replace(sweep, frames={"sweep": rows, "reference": sweep.frames["reference"]})
    single = run_single(dataclasses.replace(SMALL, shuffle="true"))
    history = pd.DataFrame({"step": np.arange(1, 50_001), "loss": np.geomspace(1, 1e-3, 50_000)})
    long = dataclasses.replace(single, history=history)
    names = ["current", *(f"pin {i}" for i in range(1, 6))]
    figures = charts.figures({n: big for n in names}, {n: long for n in names})
    for name, chart in figures.items():
        for layer in _layers(chart):
            assert len(layer["rows"]) <= charts.MAX_ROWS, name
    kept = {r["batch_size"] for r in _layers(figures["slope"])[1]["rows"]}
    assert 1 in kept and 1000 in kept and len(kept) > 300  # evenly thinned, both ends kept


def test_the_sweep_carries_what_its_charts_mark():
    ref = runner.execute(CASE, SMALL, CPU).frames["reference"].iloc[0]
    assert (ref["slope"], ref["intercept"]) == (-4.0, 0.0) and ref["loss_floor"] == pytest.approx(0.05**2)
    assert ref["steps_needed"] == data.steps_needed(SMALL, data.init_line(0)[0])
    sgd = runner.execute(CASE, dataclasses.replace(SMALL, optimizer="sgd", lr=0.1, noise=0.0), CPU)
    assert np.isnan(sgd.frames["reference"].iloc[0][["loss_floor", "steps_needed"]].astype(float)).all()


def test_the_single_run_is_shuffled_as_posted_unless_the_sweep_is_not():
    assert run_single(SMALL).metrics["shuffle"] is True  # shuffle=both: the posted code shuffles
    assert run_single(dataclasses.replace(SMALL, shuffle="true")).metrics["shuffle"] is True
    assert run_single(dataclasses.replace(SMALL, shuffle="false")).metrics["shuffle"] is False


@pytest.mark.parametrize(
    "overrides",
    [
        {"shuffle": "both", "batch_size": 35},
        {"shuffle": "false", "batch_size": 7, "target_shape": "fixed"},
        {"shuffle": "true", "optimizer": "sgd", "lr": 10.0, "epochs": 40},  # diverges
    ],
)
def test_the_single_run_is_the_scripts(overrides):
    """The app's single run (from batch means, float64) against the standalone script's `single` (float32)."""
    config = dataclasses.replace(SMALL, **overrides)
    app = run_single(config).metrics
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        history, posted = script.single(dataclasses.asdict(config))
    assert posted["diverged"] == app["diverged"] and len(history["loss"]) == posted["steps_run"]
    if app["diverged"]:  # exploding values differ by rounding; where it blew up must not
        assert abs(posted["steps_run"] - app["steps_run"]) <= 1
        return
    assert posted["steps_run"] == app["steps_run"]
    for key in ("slope", "intercept", "final_loss", "initial_slope", "initial_intercept"):
        assert posted[key] == pytest.approx(app[key], rel=1e-4, abs=1e-5), key


def test_the_exported_script_runs_the_single_run_when_asked(tmp_path):
    """`python script.py single`: the task's metrics, PyTorch's warning among them, from the exported script."""
    from core import export

    config = dataclasses.replace(SMALL, shuffle="true", batch_size=35)
    path = tmp_path / "linreg.py"
    path.write_text(export.script(CASE, config))
    out = subprocess.run(
        [sys.executable, str(path), "single"], cwd=tmp_path, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    printed, app = json.loads(out.stdout), run_single(config).metrics
    assert printed["steps_run"] == app["steps_run"] and printed["warning"] == app["warning"]
    assert printed["slope"] == pytest.approx(app["slope"], abs=1e-5)


@pytest.mark.slow
def test_fixed_reaches_the_line_for_every_seed_the_page_quotes():
    """FIXED_REACHES, which page 4's caption quotes: the fixed preset's full sweep (100 batch sizes, shuffled
    and not, 5000 Adam steps each) ends within its tolerances of the data's line for seeds 0-9."""
    from core.cases.linreg import view

    fixed = CASE.presets["fixed"]
    for seed in range(FIXED_REACHES["seeds"]):
        sweep = runner.execute(CASE, dataclasses.replace(fixed, seed=seed), CPU).frames["sweep"]
        assert len(sweep) == 200 and sweep["batch_size"].min() == 10 and sweep["batch_size"].max() == 1000
        assert ((sweep["slope"] - fixed.slope).abs() <= FIXED_REACHES["slope"]).all(), seed
        assert ((sweep["intercept"] - fixed.intercept).abs() <= FIXED_REACHES["intercept"]).all(), seed
    caption = view.fixed_caption()
    assert "seeds 0-9" in caption and "5000 Adam steps" in caption and "from 10 to 1000" in caption
    assert "within 0.05 of slope -4 and 0.02 of intercept 0" in caption
