"""The sharpness measurement against closed forms and the full Hessian."""

import math

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F

from core import curvature


def spd(p: int, seed: int = 0, spread: float = 100.0) -> torch.Tensor:
    """A symmetric positive definite (p, p) matrix with eigenvalues from 1 to `spread`."""
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(p, p, generator=g, dtype=torch.float64))
    lam = torch.logspace(0, math.log10(spread), p, dtype=torch.float64)
    return q @ torch.diag(lam) @ q.T


def test_quadratic_matches_its_closed_form_eigenvalue():
    a = spd(8)
    w = torch.randn(8, dtype=torch.float64, generator=torch.Generator().manual_seed(1)).requires_grad_()
    s = curvature.top_eigenvalue(lambda: 0.5 * w @ a @ w, [w], iters=200, tol=1e-10)
    exact = torch.linalg.eigvalsh(a)[-1].item()
    assert s.value == pytest.approx(exact, rel=1e-3)
    assert s.converged and s.rel_change <= 1e-10 and 1 < s.iterations <= 200


def tiny_mlp(seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(40, 3, generator=g, dtype=torch.float64)
    y = torch.randn(40, 1, generator=g, dtype=torch.float64)
    w1 = (torch.randn(5, 3, generator=g, dtype=torch.float64)).requires_grad_()
    b1 = torch.zeros(5, dtype=torch.float64).requires_grad_()
    w2 = (torch.randn(1, 5, generator=g, dtype=torch.float64)).requires_grad_()
    params = [w1, b1, w2]

    def loss_of(w1, b1, w2):
        return F.mse_loss(F.linear(torch.tanh(F.linear(x, w1, b1)), w2), y)

    return params, loss_of


def full_hessian(params, loss_of) -> torch.Tensor:
    """The (P, P) Hessian of loss_of in all parameters, flattened in order."""
    sizes = [p.numel() for p in params]

    def flat_loss(theta):
        parts = torch.split(theta, sizes)
        return loss_of(*(t.reshape(p.shape) for t, p in zip(parts, params, strict=True)))

    theta = torch.cat([p.detach().reshape(-1) for p in params])
    return torch.autograd.functional.hessian(flat_loss, theta)


def test_tiny_mlp_matches_the_full_hessian():
    params, loss_of = tiny_mlp()
    h = full_hessian(params, loss_of)
    exact = torch.linalg.eigvalsh(h)[-1].item()
    s = curvature.top_eigenvalue(lambda: loss_of(*params), params, iters=500, tol=1e-9)
    assert s.value == pytest.approx(exact, rel=1e-2)


def test_a_negative_dominant_eigenvalue_still_gives_the_largest():
    a = torch.diag(torch.tensor([-10.0, 1.0, 3.0], dtype=torch.float64))
    w = torch.ones(3, dtype=torch.float64, requires_grad=True)
    s = curvature.top_eigenvalue(lambda: 0.5 * w @ a @ w, [w], iters=500, tol=1e-12)
    assert s.value == pytest.approx(3.0, rel=1e-3)


def test_preconditioned_matches_the_explicit_matrix():
    params, loss_of = tiny_mlp(1)
    g = torch.Generator().manual_seed(5)
    d = [torch.rand(p.shape, generator=g, dtype=torch.float64) * 3 + 0.1 for p in params]  # diag of P^-1
    h = full_hessian(params, loss_of)
    root = torch.cat([x.reshape(-1) for x in d]).sqrt()
    exact = torch.linalg.eigvalsh(root[:, None] * h * root[None, :])[-1].item()
    s = curvature.top_eigenvalue(lambda: loss_of(*params), params, precondition=d, iters=500, tol=1e-9)
    assert s.value == pytest.approx(exact, rel=1e-2)


def test_the_same_generator_gives_the_same_number_and_global_rng_is_untouched():
    params, loss_of = tiny_mlp(2)
    state = torch.get_rng_state()
    a = curvature.top_eigenvalue(lambda: loss_of(*params), params, iters=5, generator=torch.Generator().manual_seed(3))
    b = curvature.top_eigenvalue(lambda: loss_of(*params), params, iters=5, generator=torch.Generator().manual_seed(3))
    assert a == b and a.iterations == 5
    assert torch.equal(torch.get_rng_state(), state)


def test_weights_and_grads_are_untouched():
    params, loss_of = tiny_mlp(3)
    loss_of(*params).backward()
    weights = [p.detach().clone() for p in params]
    grads = [p.grad.clone() for p in params]
    ids = [id(p.grad) for p in params]
    curvature.top_eigenvalue(lambda: loss_of(*params), params, iters=10)
    for p, w, g, i in zip(params, weights, grads, ids, strict=True):
        assert torch.equal(p.detach(), w) and torch.equal(p.grad, g) and id(p.grad) == i
    fresh, _ = tiny_mlp(4)  # and a model without grads keeps none
    curvature.top_eigenvalue(lambda: loss_of(*fresh), fresh, iters=3)
    assert all(p.grad is None for p in fresh)


def test_adam_preconditioner_and_line():
    w = torch.tensor([1.0, -2.0], dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([w], lr=1e-2)
    assert curvature.preconditioner(opt, [w]) is None  # no state before the first step
    for _ in range(3):
        opt.zero_grad()
        (w**2 * torch.tensor([1.0, 10.0], dtype=torch.float64)).sum().backward()
        opt.step()
    st = opt.state[w]
    v_hat = st["exp_avg_sq"] / (1 - 0.999**3)
    expected = 1 / ((1 - 0.9**3) * (v_hat.sqrt() + 1e-8))
    torch.testing.assert_close(curvature.preconditioner(opt, [w])[0], expected)
    assert curvature.stability_limit(opt) == pytest.approx(38 / 1e-2)
    sgd = torch.optim.SGD([w], lr=0.5)
    assert curvature.stability_limit(sgd) == pytest.approx(4.0) and curvature.preconditioner(sgd, [w]) is None
    assert curvature.stability_limit(torch.optim.SGD([w], lr=0.5, momentum=0.9)) == pytest.approx(7.6)


def test_per_group_lrs_precondition_sgd():
    a, b = torch.zeros(2, requires_grad=True), torch.zeros(3, requires_grad=True)
    opt = torch.optim.SGD([{"params": [a], "lr": 0.1}, {"params": [b], "lr": 0.01}], lr=0.1)
    d = curvature.preconditioner(opt, [a, b])
    assert torch.equal(d[0], torch.ones(2)) and torch.allclose(d[1], torch.full((3,), 0.1))


def test_batch_sharpness_is_the_mean_of_each_batch():
    w = torch.zeros(2, dtype=torch.float64, requires_grad=True)
    fns = [lambda k=k: 0.5 * k * (w**2).sum() for k in (2.0, 4.0)]
    s = curvature.batch_sharpness(fns, [w], iters=50, tol=1e-12)
    assert s.value == pytest.approx(3.0)


def test_schedule_frame_metrics_and_column():
    assert curvature.schedule(10, 4).tolist() == [1, 4, 8, 10]
    assert curvature.every_for(3000, 20) == 150
    recs = [(1, curvature.Sharpness(1.0, 3, 0.0, True)), (4, curvature.Sharpness(5.0, 3, 0.0, True))]
    recs += [(8, curvature.Sharpness(3.0, 3, 0.0, True)), (10, curvature.Sharpness(math.nan, 1, math.nan, False))]
    fr = curvature.frame(recs, 4.0, steps_run=9)
    assert fr["step"].tolist() == [1, 4, 8]
    m = curvature.metrics(fr, 4.0)
    assert m == {"sharpness_max": 5.0, "sharpness_final": 3.0, "stability_limit": 4.0, "crossed_at": 4}
    assert curvature.metrics(fr, 10.0)["crossed_at"] is None
    col = curvature.column(fr, 9)
    assert col[[0, 3, 7]].tolist() == [1.0, 5.0, 3.0] and np.isnan(col[[1, 2, 8]]).all()
    empty = curvature.metrics(pd.DataFrame(columns=list(curvature.COLUMNS)), 2.0)
    assert math.isnan(empty["sharpness_max"]) and empty["crossed_at"] is None


def test_probe_measures_on_its_schedule_with_warm_starts():
    a = spd(6, seed=2, spread=50)
    w = torch.ones(6, dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([w], lr=0.01)
    probe = curvature.Probe([lambda: 0.5 * w @ a @ w], [w], opt, every=5, steps=12, tol=1e-8, iters=200)
    for step in range(1, 13):
        opt.zero_grad()
        (0.5 * w @ a @ w).backward()
        opt.step()
        probe(step)
    fr = probe.frame()
    assert fr["step"].tolist() == [1, 5, 10, 12]
    assert np.allclose(fr["sharpness"], 50.0, rtol=1e-3) and (fr["limit"] == 200.0).all()
    assert fr["iterations"].iloc[-1] < fr["iterations"].iloc[0]  # warm-started from the last vector
