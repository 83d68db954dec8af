"""The shared training loop: per-step losses, divergence, per-layer records, progress,
determinism and thread safety. Oracles: the same loop written out by hand, and the
closed-form least-squares solution."""

import dataclasses
import threading

import numpy as np
import pandas as pd
import pytest
import torch

from core import registry, runner
from core.train import History, Progress, RunResult, train


def regression(seed=0, n=64, p=3):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, p, generator=g)
    y = X @ torch.tensor([[1.5], [-2.0], [0.5]]) + 0.1 * torch.randn(n, 1, generator=g)
    return X, y


def fresh_weights():
    return torch.zeros(3, 1, requires_grad=True)


def by_hand(lr, steps, momentum=0.0):
    """The flat loop, written out: the oracle for `train`."""
    X, y = regression()
    w = fresh_weights()
    opt = torch.optim.SGD([w], lr=lr, momentum=momentum)
    losses = []
    for _ in range(steps):
        opt.zero_grad()
        loss = ((X @ w - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return np.array(losses), w.detach()


def with_train(lr, steps, momentum=0.0, **kw):
    X, y = regression()
    w = fresh_weights()
    opt = torch.optim.SGD([w], lr=lr, momentum=momentum)
    history = train({"w": w}, opt, lambda step: ((X @ w - y) ** 2).mean(), steps, **kw)
    return history, w.detach()


def test_records_every_step_like_the_hand_written_loop():
    expected, w_expected = by_hand(lr=0.05, steps=120, momentum=0.9)
    history, w = with_train(lr=0.05, steps=120, momentum=0.9, check_every=7)
    assert isinstance(history, History) and history.diverged_at is None
    assert history.steps_run == 120
    np.testing.assert_array_equal(history.loss, expected)
    torch.testing.assert_close(w, w_expected, rtol=0, atol=0)


def test_stops_at_the_first_non_finite_loss_and_reports_that_step():
    expected, _ = by_hand(lr=3.0, steps=200)  # far above 2 / lambda_max: diverges
    first_bad = int(np.argmax(~np.isfinite(expected)))  # 0-based
    assert not np.isfinite(expected[first_bad]) and np.isfinite(expected[:first_bad]).all()
    history, _ = with_train(lr=3.0, steps=200, check_every=7)
    assert history.diverged_at == first_bad + 1  # 1-based step number
    assert history.steps_run == first_bad
    np.testing.assert_array_equal(history.loss, expected[:first_bad])


def test_layer_records_match_the_sgd_update_rule():
    X, y = regression()
    w = fresh_weights()
    w.data += 0.3  # non-zero weights, so |update| / |weight| is defined
    opt = torch.optim.SGD([w], lr=0.01)
    grads, weights = [], []

    def loss_fn(step):
        weights.append(w.detach().clone())
        loss = ((X @ w - y) ** 2).mean()
        grads.append(torch.autograd.grad(loss, w, retain_graph=True)[0])
        return loss

    history = train({"w": w}, opt, loss_fn, 10, track_every=3)
    layers = history.layers
    assert list(layers["step"]) == [1, 4, 7, 10]
    for row in layers.itertuples():
        g, before = grads[row.step - 1], weights[row.step - 1]
        assert row.grad_norm == pytest.approx(g.norm().item(), rel=1e-6)
        assert row.update_ratio == pytest.approx(0.01 * g.norm().item() / before.norm().item(), rel=1e-5)


def test_progress_is_reported_and_an_exception_in_it_interrupts_the_run():
    seen = []
    with_train(lr=0.05, steps=100, check_every=25, on_progress=seen.append)
    assert [p.step for p in seen] == [25, 50, 75, 100]
    assert all(isinstance(p, Progress) and p.total == 100 and len(p.loss) == p.step for p in seen)

    class Stop(Exception):
        pass

    def stop_at_50(p):
        if p.step >= 50:
            raise Stop

    with pytest.raises(Stop):
        with_train(lr=0.05, steps=100, check_every=25, on_progress=stop_at_50)


def test_lbfgs_reaches_the_least_squares_optimum():
    X, y = regression()
    w = fresh_weights()
    opt = torch.optim.LBFGS([w], lr=1, max_iter=20, line_search_fn="strong_wolfe")
    history = train({"w": w}, opt, lambda step: ((X @ w - y) ** 2).mean(), 5)
    closed_form = torch.linalg.lstsq(X.double(), y.double()).solution
    torch.testing.assert_close(w.detach().double(), closed_form, rtol=1e-4, atol=1e-5)
    assert history.loss[-1] < history.loss[0]


SINE = registry.get("sine")
SHORT = dataclasses.replace(SINE.presets["as-posted"], steps=150, n_points=1000)


def assert_same_history(a: RunResult, b: RunResult):
    pd.testing.assert_frame_equal(a.history, b.history)
    assert a.metrics == b.metrics


def test_same_config_same_device_same_history(cpu):
    assert_same_history(runner.execute(SINE, SHORT, cpu), runner.execute(SINE, SHORT, cpu))


def test_two_threads_training_at_once_get_identical_histories(cpu):
    alone = runner.execute(SINE, SHORT, cpu)
    results, errors = {}, []
    barrier = threading.Barrier(2)

    def session(name):
        try:
            barrier.wait()
            results[name] = runner.execute(SINE, SHORT, cpu)
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=session, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert_same_history(results["a"], results["b"])
    assert_same_history(results["a"], alone)


def test_nothing_seeds_the_global_generator(cpu):
    torch.manual_seed(1234)
    before = torch.random.get_rng_state()
    runner.execute(SINE, SHORT, cpu)
    assert torch.equal(torch.random.get_rng_state(), before)


def test_results_are_plain_data(cpu):
    result = runner.execute(SINE, SHORT, cpu)

    def no_tensors(value):
        if isinstance(value, torch.Tensor):
            raise AssertionError("a live tensor escaped the run")
        if isinstance(value, dict):
            for v in value.values():
                no_tensors(v)
        if isinstance(value, pd.DataFrame):
            for column in value.columns:
                assert value[column].dtype != object, column

    no_tensors(dict(result.metrics))
    no_tensors(dict(result.frames))
    no_tensors(result.history)
    assert result.device == "cpu" and result.seconds > 0


def test_a_loss_that_sets_its_own_gradients_trains_as_backward_does():
    """grads_set=True (a hand-written backward, as the sine case's compiled step): the loop skips
    backward() and the optimizer steps on the gradients the loss function wrote; the run is the one
    autograd gives, here least squares with Adam (gradient 2 X^T (X w - y) / n)."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 3, generator=g, dtype=torch.float64)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5]], dtype=torch.float64) + 0.1 * torch.randn(64, 1, generator=g)

    def fit(by_hand: bool):
        w = torch.zeros(3, 1, dtype=torch.float64, requires_grad=True)
        opt = torch.optim.Adam([w], lr=0.05)

        def loss_fn(step):
            if not by_hand:
                return (x @ w - y).pow(2).mean()
            with torch.no_grad():
                r = x @ w - y
                w.grad = 2 * x.t() @ r / len(x)
                return r.pow(2).mean()

        history = train({"w": w}, opt, loss_fn, 200, grads_set=by_hand)
        return w.detach(), history.loss

    (w_hand, loss_hand), (w_auto, loss_auto) = fit(True), fit(False)
    np.testing.assert_allclose(loss_hand, loss_auto, rtol=1e-12)
    torch.testing.assert_close(w_hand, w_auto, rtol=1e-12, atol=1e-12)
    assert loss_hand[-1] < 0.5 * loss_hand[0]  # it trained
