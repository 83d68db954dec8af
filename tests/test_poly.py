"""Case 3 against its oracles: the standalone script's posted pipeline (nn.Linear + MSELoss +
torch.optim, one learning rate at a time), numpy's polyfit and torch.linalg.lstsq for the optimum, autograd's
Hessian for the curvature, and the posted figures."""

import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from core import registry, rng, runner
from core.cases.poly import basis as poly_basis
from core.cases.poly import charts, lr_find
from core.cases.poly.config import (
    ADAM_RATIO,
    AS_POSTED,
    AS_POSTED_LOSS,
    BASES,
    LR_FIND_EXPLOSION,
    OPTIMUM_LOSS,
    PRESETS,
    STANDARDIZED_LOSS,
)

CASE = registry.get("poly")
ROOT = Path(__file__).resolve().parents[1]
SEEDS = range(5)
CPU = torch.device("cpu")


def execute(config):
    return runner.execute(CASE, config, CPU)


def as_posted(**changes):
    return dataclasses.replace(AS_POSTED, **changes)


def posted(config, **changes):
    """The oracle: the standalone script's run of `config` (nn.Linear, MSELoss, torch.optim, one learning
    rate) -> (history, metrics)."""
    return CASE.script.main(dataclasses.asdict(config) | changes)


# ---------------------------------------------------------------------------- the post itself


def test_the_posted_code_no_longer_runs():
    """The post builds float64 features (a list of numpy floats) and feeds them to a float32 layer."""
    x = np.linspace(2, 5, 6)
    inputs = [[xi ** (4 - i) for i in range(4)] for xi in x]
    x_data = torch.tensor(inputs, requires_grad=False)
    assert x_data.dtype == torch.float64
    with pytest.raises(RuntimeError, match="dtype"):
        torch.nn.Linear(4, 1)(x_data)


def test_default_init_is_nn_linear_drawn_from_the_runs_generator():
    with torch.random.fork_rng():
        torch.manual_seed(rng.generator(0, 1).initial_seed())
        layer = torch.nn.Linear(4, 1)
    w0 = poly_basis.init_weights(AS_POSTED)
    np.testing.assert_array_equal(w0[:4], layer.weight.detach().double().numpy()[0])
    np.testing.assert_array_equal(w0[4:], layer.bias.detach().double().numpy())
    assert not np.array_equal(w0, poly_basis.init_weights(as_posted(seed=1)))
    assert not poly_basis.init_weights(as_posted(init="zeros")).any()


def test_the_data_is_the_posts():
    x, y = poly_basis.make_data(AS_POSTED)
    np.testing.assert_array_equal(x, np.linspace(2, 5, 6))
    np.testing.assert_array_equal(y, np.sin(x))
    np.testing.assert_array_equal(poly_basis.features(AS_POSTED, x), np.stack([x**4, x**3, x**2, x], axis=1))
    noisy = as_posted(noise=0.1, n_points=2000)
    _, y1 = poly_basis.make_data(noisy)
    assert abs(np.std(y1 - np.sin(np.linspace(2, 5, 2000))) - 0.1) < 0.01
    np.testing.assert_array_equal(y1, poly_basis.make_data(noisy)[1])  # the run's own generator


# ---------------------------------------------------------------------------- curvature and optimum


def test_as_posted_figures():
    m = execute(AS_POSTED).metrics
    assert m["max_stable_lr"] == pytest.approx(1.62e-6, rel=0.01)
    assert 1.9e10 < m["condition_number"] < 2.1e10
    assert m["closed_form_loss"] == pytest.approx(1.8e-5, rel=0.02)
    assert m["epochs_run"] == 1000 and not m["diverged"]


@pytest.mark.parametrize("basis", BASES)
@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_eigenvalues_are_those_of_autograds_hessian(basis, reduction):
    config = as_posted(basis=basis, reduction=reduction)
    x, y = poly_basis.make_data(config)
    a = torch.from_numpy(poly_basis.design(config, x))
    target = torch.from_numpy(y)

    def loss(theta):
        return torch.nn.functional.mse_loss(a @ theta, target, reduction=reduction)

    h = torch.autograd.functional.hessian(loss, torch.zeros(a.shape[1], dtype=torch.float64))
    expected = torch.linalg.eigvalsh(h).numpy()
    np.testing.assert_allclose(poly_basis.eigenvalues(a.numpy(), reduction), expected, rtol=1e-6)


@pytest.mark.parametrize("basis", BASES)
def test_closed_form_in_every_basis_is_polyfit(basis):
    """The least-squares polynomial does not depend on the basis: converted to raw powers it is
    numpy's polyfit, and its loss is the same."""
    config = as_posted(basis=basis, degree=3, n_points=9, noise=0.05, seed=2)
    x, y = poly_basis.make_data(config)
    a = poly_basis.design(config, x)
    theta = poly_basis.closed_form(a, y)
    np.testing.assert_allclose(poly_basis.to_raw(config, x) @ theta, np.polyfit(x, y, 3), rtol=1e-7, atol=1e-9)
    raw = dataclasses.replace(config, basis="raw")
    a_raw = poly_basis.design(raw, x)
    expected = poly_basis.loss_np(a_raw, y, poly_basis.closed_form(a_raw, y), "sum")
    assert poly_basis.loss_np(a, y, theta, "sum") == pytest.approx(expected, rel=1e-8)


@pytest.mark.parametrize("basis", BASES)
def test_to_raw_maps_any_coefficients_to_the_same_polynomial(basis):
    config = as_posted(basis=basis, x_min=-3.0, x_max=7.0, n_points=11)
    x, _ = poly_basis.make_data(config)
    theta = np.random.default_rng(0).normal(size=5)
    grid = np.linspace(-4, 8, 50)
    on_grid = np.hstack([poly_basis.features(config, x, grid), np.ones((50, 1))]) @ theta
    np.testing.assert_allclose(np.polyval(poly_basis.to_raw(config, x) @ theta, grid), on_grid, rtol=1e-9, atol=1e-9)


# ---------------------------------------------------------------------------- the fast path against the posted loop


@pytest.mark.parametrize(
    "changes",
    [
        {},  # as posted: sgd, sum, raw, float32
        {"optimizer": "momentum", "lr": 5e-7, "epochs": 400},
        {"optimizer": "adam", "lr": 1e-2, "epochs": 400},
        {"basis": "legendre", "reduction": "mean", "lr": 0.5, "epochs": 300},
        {"basis": "standardized", "dtype": "float64", "lr": 0.03, "epochs": 300, "init": "zeros"},
    ],
)
def test_the_run_is_the_standalone_scripts(changes):
    config = as_posted(**changes)
    result = execute(config)
    history, expected = posted(config)
    np.testing.assert_allclose(result.history["loss"].to_numpy(), history["loss"], rtol=2e-4)
    np.testing.assert_allclose(result.metrics["coefficients"], expected["coefficients"], rtol=1e-3, atol=1e-5)


@pytest.mark.parametrize(
    ("changes", "every"),
    [
        ({"epochs": 2500}, 1),  # every rate: 2500 epochs let 1.01× the limit overflow
        ({"optimizer": "momentum", "epochs": 2500}, 3),
        ({"optimizer": "adam", "lr": 1e-2, "epochs": 300}, 4),
    ],
)
def test_the_batched_scan_is_separate_posted_runs(changes, every):
    """Every scanned rate (or every `every`-th, and the edge) run on its own through nn.Linear,
    MSELoss(sum) and torch.optim: the same losses, and the same rates diverge at the same epoch."""
    config = as_posted(**changes)
    scan = execute(config).frames["scan"]
    rows = scan.iloc[::every]
    rows = rows.combine_first(scan[(scan["relative_lr"] > 0.95) & (scan["relative_lr"] < 1.05)])
    assert len(scan) >= 25 and len(rows) >= 7
    for row in rows.itertuples():
        history, m = posted(config, lr=row.lr)
        diverged = m["diverged_at"] is not None  # the scan's rows diverge where the loss first overflows
        assert diverged == row.diverged, row
        if diverged:
            assert abs(m["diverged_at"] - row.diverged_at) <= 1, row
        else:
            assert row.final_loss == pytest.approx(history["loss"][-1], rel=1e-3), row


def test_the_scan_spans_several_decades_and_the_edge():
    config = as_posted(epochs=10)
    scan = execute(config).frames["scan"]
    lrs = scan["lr"].to_numpy()
    assert len(lrs) >= 25 and lrs.max() / lrs.min() >= 1e5
    for k in (0.99, 1.01):
        assert np.isclose(scan["relative_lr"], k).any()
    assert scan["current"].sum() == 1 and scan.loc[scan["current"], "lr"].item() == config.lr


# ---------------------------------------------------------------------------- the analytic limit


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"reduction": "mean"},
        {"basis": "standardized"},
        {"basis": "legendre", "n_points": 20},
        {"dtype": "float64", "degree": 3},
        {"optimizer": "momentum", "momentum": 0.5},
    ],
)
def test_the_analytic_limit_is_the_edge_of_divergence(changes):
    """Runs at 0.99× the limit (2/λmax, or 2(1+β)/λmax) shrink, at 1.01× blow up, for several seeds.
    (Within 5000 epochs 1.01× overflows float32; in float64 it grows by ~e^200 instead.)"""
    for seed in range(3):
        config = as_posted(seed=seed, epochs=5000, **changes)
        scan = execute(config).frames["scan"]
        below = scan[np.isclose(scan["relative_lr"], 0.99)].iloc[0]
        above = scan[np.isclose(scan["relative_lr"], 1.01)].iloc[0]
        assert not below["diverged"] and not below["grew"] and below["final_loss"] < below["initial_loss"]
        assert above["diverged"] or above["final_loss"] > 1e50 * above["initial_loss"]
        assert above["diverged"] == (config.dtype == "float32")
        # and the whole scan: every rate below the limit ends lower, every rate above blows up
        assert ((scan["diverged"] | scan["grew"]) == (scan["relative_lr"] > 1)).all()


def test_cli_lr_just_below_and_above_the_limit():
    def metrics(*args):
        out = subprocess.run(
            [sys.executable, "-m", "core", "run", "poly", *args], cwd=ROOT, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)["metrics"]

    above = metrics("--set", "lr=2e-6")
    assert above["diverged"] is True and above["final_loss"] is None and above["coefficients"] == [None] * 5
    assert 10 < above["diverged_at"] < 1000
    below = metrics("--set", "lr=1.5e-6")
    assert below["diverged"] is False and below["final_loss"] > 0
    for key in (
        "final_loss",
        "closed_form_loss",
        "max_stable_lr",
        "condition_number",
        "diverged",
        "coefficients",
        "closed_form_coefficients",
    ):
        assert key in below
    np.testing.assert_allclose(below["closed_form_coefficients"], np.polyfit(*poly_basis.make_data(AS_POSTED), 4))


# ---------------------------------------------------------------------------- presets and fits


def test_as_posted_crawls_for_seeds_0_to_4():
    """The post's 'loss still about 1 after 10,000 iterations', far above the optimum."""
    for seed in SEEDS:
        short = execute(as_posted(seed=seed)).metrics
        long = execute(as_posted(seed=seed, epochs=10_000)).metrics
        assert short["final_loss"] > 1
        assert 0.1 < long["final_loss"] < min(10, short["final_loss"])
        assert long["loss_ratio"] > 1e4
        # the page's figures: the ranges it quotes, and the optimum
        assert AS_POSTED_LOSS[1000][0] <= short["final_loss"] <= AS_POSTED_LOSS[1000][1]
        assert AS_POSTED_LOSS[10_000][0] <= long["final_loss"] <= AS_POSTED_LOSS[10_000][1]
        assert float(f"{long['closed_form_loss']:.2g}") == OPTIMUM_LOSS


def test_the_pages_figures_for_standardized_and_adam_for_seeds_0_to_4():
    for seed in SEEDS:
        standardized = execute(dataclasses.replace(PRESETS["standardized"], seed=seed)).metrics
        assert standardized["final_loss"] == pytest.approx(STANDARDIZED_LOSS, rel=0.15)
        adam = execute(dataclasses.replace(PRESETS["adam"], seed=seed)).metrics
        assert ADAM_RATIO[0] <= adam["loss_ratio"] <= ADAM_RATIO[1]


def test_fixed_reaches_the_optimum_for_seeds_0_to_4():
    for seed in SEEDS:
        m = execute(dataclasses.replace(CASE.presets["fixed"], seed=seed)).metrics
        assert not m["diverged"] and m["final_loss"] < 2 * m["closed_form_loss"]
        np.testing.assert_allclose(m["coefficients"], m["closed_form_coefficients"], rtol=1e-4, atol=1e-5)


def safe_lr(config, fraction=0.9):
    """A fraction of the stability limit 2/λmax, computed from scratch."""
    x, _ = poly_basis.make_data(config)
    a = poly_basis.design(config, x)
    h = 2 * a.T @ a / (len(x) if config.reduction == "mean" else 1)
    return fraction * 2 / np.linalg.eigvalsh(h).max()


@pytest.mark.parametrize(
    ("basis", "settings", "rtol"),
    [
        ("legendre", {"epochs": 2000}, 1e-4),
        ("centered", {"epochs": 20_000}, 1e-4),
        # plain GD cannot converge in the raw and z-scored bases (κ 2e10 and 1e7): L-BFGS in float64,
        # and the flattest direction leaves the coefficients loose even at the optimum's loss
        ("standardized", {"optimizer": "lbfgs", "lr": 1.0, "epochs": 100, "dtype": "float64"}, 1e-2),
        ("raw", {"optimizer": "lbfgs", "lr": 1.0, "epochs": 100, "dtype": "float64"}, 2e-2),
    ],
)
def test_every_basis_fits_the_closed_form_coefficients(basis, settings, rtol):
    """Trained to convergence in each basis and converted to raw powers: np.polyfit's coefficients."""
    config = as_posted(basis=basis, n_points=8, noise=0.02, **settings)
    if config.optimizer == "sgd":
        config = dataclasses.replace(config, lr=safe_lr(config))
    m = execute(config).metrics
    x, y = poly_basis.make_data(config)
    expected = np.polyfit(x, y, 4)
    np.testing.assert_allclose(m["closed_form_coefficients"], expected, rtol=1e-8)
    assert m["loss_ratio"] < 1.001
    np.testing.assert_allclose(m["coefficients"], expected, rtol=rtol, atol=1e-6)
    np.testing.assert_allclose(np.polyval(m["coefficients"], x), np.polyval(expected, x), atol=1e-4)


def test_rebasing_orders_the_conditioning():
    kappas = {b: execute(as_posted(basis=b, epochs=1)).metrics["condition_number"] for b in BASES}
    assert kappas["raw"] > 1e3 * kappas["standardized"] > 1e6 * kappas["centered"] / 1e3
    assert kappas["centered"] > 10 * kappas["legendre"] and kappas["legendre"] < 20


def test_lbfgs_stalls_in_float32_and_converges_in_float64():
    lbfgs = CASE.presets["lbfgs"]
    assert execute(lbfgs).metrics["loss_ratio"] > 10
    assert execute(dataclasses.replace(lbfgs, dtype="float64")).metrics["loss_ratio"] < 1.001


def test_a_run_is_deterministic_and_plain_data():
    a, b = execute(AS_POSTED), execute(AS_POSTED)
    assert a.metrics == b.metrics
    assert a.history.equals(b.history) and a.frames["scan"].equals(b.frames["scan"])
    for frame in a.frames.values():
        assert not any(isinstance(v, torch.Tensor) for v in frame.to_numpy().ravel())


def test_interpolation_has_no_ratio_but_runs():
    m = execute(as_posted(degree=5, basis="legendre", lr=0.1, dtype="float64")).metrics
    assert m["closed_form_loss"] < 1e-20 and np.isnan(m["loss_ratio"])


# ---------------------------------------------------------------------------- diagnosis


def test_diagnosis_of_the_presets():
    def keys(name):
        config = CASE.presets[name]
        return {f.key: f for f in CASE.diagnose(config, execute(config))}

    found = keys("as-posted")
    assert set(found) == {"ill-conditioned", "sum-reduction"}
    assert found["ill-conditioned"].fix == {"basis": "legendre", "lr": 0.12}
    assert "1.6e+10 epochs" in found["ill-conditioned"].evidence
    assert found["sum-reduction"].fix == {"reduction": "mean", "lr": 6e-6}
    assert set(keys("lr-2e-6")) == {"lr-above-limit", "ill-conditioned", "sum-reduction"}
    assert keys("lr-2e-6")["lr-above-limit"].fix == {"lr": 1.5e-6}
    assert set(keys("adam")) == {"adam-is-not-a-rebase"}
    assert set(keys("lbfgs")) == {"float32"}
    assert keys("fixed") == {}


@pytest.mark.parametrize("preset", ["as-posted", "lr-2e-6", "adam", "lbfgs", "standardized", "momentum"])
def test_following_the_diagnosis_reaches_the_optimum(preset):
    config = CASE.presets.get(preset) or as_posted(optimizer="momentum", lr=3e-6)
    for _ in range(5):
        found = CASE.diagnose(config, execute(config))
        if not found:
            break
        config = dataclasses.replace(config, **found[0].fix)
    assert not found and CASE.errors(config) == []
    assert execute(config).metrics["loss_ratio"] < 1.01


# ---------------------------------------------------------------------------- validation


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"x_min": 5.0, "x_max": 2.0}, "x_max: must be greater than x_min (got x_min 5, x_max 2)"),
        ({"x_max": 2.0}, "x_max: must be greater than x_min"),
        ({"degree": 6}, "degree: a degree-6 polynomial has 7 coefficients, more than the 6 distinct points"),
        ({"degree": 6, "n_points": 10}, "degree: in the raw basis on [2, 5] the degree-6 design matrix has condition"),
        ({"noise": -0.1}, "noise: must be >= 0 and <= 10 (got -0.1)"),
        ({"lr": 0.0}, "lr: must be > 0"),
        ({"momentum": 1.0}, "momentum: must be >= 0 and <= 0.999 (got 1)"),
        ({"optimizer": "lbfgs", "epochs": 10_000}, "epochs: at most 5,000 with lbfgs"),
        ({"n_points": 10_000, "epochs": 20_000}, "epochs: n_points × epochs may be at most 50,000,000 here"),
        ({"basis": "chebyshev"}, "basis: must be one of raw, standardized, centered, legendre"),
    ],
)
def test_impossible_settings_get_a_message(changes, message):
    problems = CASE.errors(as_posted(**changes))
    assert len(problems) == 1 and problems[0].startswith(message), problems


def test_the_float32_degree_limit_follows_the_conditioning():
    wide = {"n_points": 12}
    assert CASE.errors(as_posted(degree=5, **wide)) == []  # κ(A) 5e6 < 1/eps = 8.4e6
    assert CASE.errors(as_posted(degree=6, **wide))  # κ(A) 2e8
    assert CASE.errors(as_posted(degree=6, dtype="float64", **wide)) == []
    assert CASE.errors(as_posted(degree=11, basis="legendre", **wide)) == []
    assert "float64" in CASE.errors(as_posted(degree=6, **wide))[0]


def test_cli_bad_setting_exits_2_with_one_line():
    out = subprocess.run(
        [sys.executable, "-m", "core", "run", "poly", "--set", "x_min=9"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr == "error: x_max: must be greater than x_min (got x_min 9, x_max 5)\n"


def test_the_benchmark_scans_the_apps_rates():
    bench_poly = CASE.bench
    assert bench_poly.CONFIG.epochs == 10_000 and len(bench_poly.RATES) >= 25
    assert execute(bench_poly.CONFIG).frames["scan"]["lr"].tolist() == bench_poly.RATES


# ---------------------------------------------------------------------------- charts and odd settings


@pytest.mark.parametrize(
    "changes",
    [
        {},
        {"lr": 2e-6},  # diverged: no fitted polynomial, NaN coefficients
        {"degree": 5, "basis": "legendre", "lr": 0.1, "dtype": "float64"},  # interpolation: optimum 0
        {"optimizer": "lbfgs", "lr": 1.0, "epochs": 20},
        {"optimizer": "momentum", "momentum": 0.5, "noise": 0.3, "n_points": 50, "x_min": -3.0, "x_max": 3.0},
        {"optimizer": "adam", "lr": 0.05, "init": "zeros", "basis": "centered", "reduction": "mean", "degree": 2},
        # your own points, one x twice: no true function
        {"points": ((0.0, 1.0), (1.0, 2.0), (2.0, 0.5), (3.0, 0.0), (4.0, 1.5), (4.0, 1.7)), "basis": "legendre"},
    ],
)
def test_charts_build_for_any_result(changes):
    config = as_posted(**changes)
    config = dataclasses.replace(config, epochs=min(200, config.epochs))
    result = execute(config)
    runs = {"current": result, "as-posted": execute(as_posted(epochs=50))}
    for chart in (
        charts.fit_chart(runs),
        charts.loss_chart(runs),
        charts.eigen_chart(runs),
        charts.scan_chart(result),
        charts.coefficient_chart(runs),
    ):
        spec = chart.to_dict()
        assert spec["title"]["text"]
        json.dumps(spec, allow_nan=False)  # no NaN or inf left in the data for the browser
    table = charts.coefficient_table(runs)
    assert list(table.index)[-1] == "1" and len(table) == config.degree + 1


def test_the_scan_chart_marks_overflow_and_draws_the_limit():
    result = execute(as_posted(epochs=2500))
    spec = charts.scan_chart(result).to_dict()
    datasets = spec["datasets"]
    scan_rows = next(v for v in datasets.values() if v and "status" in v[0])
    overflowed = [r for r in scan_rows if r["status"] == "loss overflowed"]
    assert overflowed and all(r["relative_lr"] > 1 for r in overflowed)
    assert all(r["status"] == "loss went down" for r in scan_rows if r["relative_lr"] < 1)
    rule = next(v for v in datasets.values() if v and "label" in v[0])
    assert rule[0]["lr"] == pytest.approx(result.metrics["max_stable_lr"])


# ---------------------------------------------------------------------------- your own points


def own_points(n=30, seed=0):
    """Noisy samples of exp on [-1, 3], in no particular order, with one x repeated."""
    rng = np.random.default_rng(seed)
    x = np.r_[rng.uniform(-1, 3, n - 1), 1.0]
    x[-2] = 1.0
    return tuple(zip(x.tolist(), (np.exp(x) + rng.normal(0, 0.05, n)).tolist(), strict=True))


def test_your_points_replace_the_data_and_the_range():
    pts = own_points()
    config = dataclasses.replace(CASE.presets["fixed"], points=pts, epochs=2000)
    m = execute(config).metrics
    x, y = np.array(pts).T
    np.testing.assert_array_equal(poly_basis.make_data(config)[0], x)
    # the optimum and the fit are polyfit's on your points; the curvature is that of your design matrix
    np.testing.assert_allclose(m["closed_form_coefficients"], np.polyfit(x, y, 4), rtol=1e-8)
    np.testing.assert_allclose(m["coefficients"], np.polyfit(x, y, 4), rtol=1e-3, atol=1e-5)
    t = (x - x.min()) / (x.max() - x.min()) * 2 - 1  # legendre's t: your x range mapped to [-1, 1]
    a = np.stack([np.polynomial.legendre.Legendre.basis(k)(t) for k in (4, 3, 2, 1)] + [np.ones_like(t)], axis=1)
    lam = np.linalg.eigvalsh(2 * a.T @ a / len(x))
    assert m["lambda_max"] == pytest.approx(lam[-1], rel=1e-6) and m["lambda_min"] == pytest.approx(lam[0], rel=1e-6)
    # x_min, x_max, n_points and noise are ignored; there is no true function
    ignored = dataclasses.replace(config, x_min=-50.0, x_max=-10.0, n_points=3, noise=1.0)
    assert CASE.errors(ignored) == [] and execute(ignored).metrics == m
    curves = execute(config).frames["curves"]
    assert curves["truth"].isna().all()
    assert curves["x"].min() < x.min() < x.max() < curves["x"].max()


def test_too_few_distinct_x_values_for_the_degree_is_refused():
    pts = ((1.0, 2.0), (1.0, 2.5), (2.0, 1.0), (3.0, 0.0))
    config = as_posted(points=pts)
    assert CASE.errors(config) == [
        "points: 3 distinct x values; at least 5 are needed for the 5 coefficients of a degree-4 polynomial "
        "(use degree <= 2 or more x values)"
    ]
    assert CASE.errors(dataclasses.replace(config, degree=2, basis="legendre")) == []
    assert CASE.errors(as_posted(points=((1.0, 2.0),) * 10))[0].endswith("polynomial (more x values)")
    assert CASE.reference(dataclasses.replace(config, degree=2)) is None  # as posted (degree 4) cannot fit them


def test_with_points_the_comparison_is_the_posted_settings_on_them():
    pts = own_points()
    ref = CASE.reference(dataclasses.replace(CASE.presets["fixed"], points=pts))
    assert ref == dataclasses.replace(AS_POSTED, points=pts)
    assert CASE.reference(CASE.presets["fixed"]) == AS_POSTED


def test_the_sum_diagnosis_on_your_points_counts_them():
    """4× the points (each repeated) multiplies AᵀA by 4, so the stable limit of the sum is a quarter."""
    config = as_posted(points=own_points(), epochs=50)
    found = {f.key: f for f in CASE.diagnose(config, execute(config))}
    limit = poly_basis.stable_limit(config)
    assert "n = 30 points" in found["sum-reduction"].evidence
    quarter = float(f"{limit / 4:.2g}")  # the finding rounds to 2 digits
    assert f"with 120 points on the same range it is {quarter:.3g}" in found["sum-reduction"].evidence
    assert found["sum-reduction"].fix == {"reduction": "mean", "lr": 3e-5}


# ---------------------------------------------------------------------------- learning-rate range test


def test_the_range_test_is_the_posted_loop_with_a_growing_rate():
    config = AS_POSTED
    found = runner.execute(CASE, config, CPU, task=CASE.lr_find)
    lo, hi, steps = lr_find.lr_find_range(config)
    lrs = lo * (hi / lo) ** (np.arange(steps) / (steps - 1))
    x, y = poly_basis.make_data(config)
    model = torch.nn.Linear(4, 1)
    w0 = torch.from_numpy(poly_basis.init_weights(config)).float()
    with torch.no_grad():
        model.weight.copy_(w0[:-1].unsqueeze(0))
        model.bias.copy_(w0[-1:])
    opt = torch.optim.SGD(model.parameters(), lr=lrs[0])
    x_data = torch.tensor(poly_basis.features(config, x), dtype=torch.float32)
    y_data = torch.tensor(y).float().unsqueeze(1)
    expected = []
    for lr in lrs[:200]:
        opt.param_groups[0]["lr"] = lr
        loss = torch.nn.functional.mse_loss(model(x_data), y_data, reduction="sum")
        opt.zero_grad()
        loss.backward()
        opt.step()
        expected.append(loss.item())
    frame = found.frames["lr_find"]
    np.testing.assert_allclose(frame["lr"].to_numpy()[:200], lrs[:200], rtol=1e-12)
    np.testing.assert_allclose(frame["loss"].to_numpy()[:200], expected, rtol=1e-5)


@pytest.mark.parametrize(
    "changes",
    [
        {},  # as posted: the limit 1.6e-6, near the posted lr
        {"lr": 1e-8, "reduction": "mean"},  # the lr two decades below the limit
        {"basis": "legendre", "reduction": "mean", "lr": 0.5},  # fixed
        {"basis": "standardized", "dtype": "float64"},
        {"optimizer": "momentum", "momentum": 0.9},  # 2(1+β)/λmax
        {"optimizer": "momentum", "momentum": 0.5, "seed": 3, "lr": 1e-3},  # lr far above the limit
    ],
)
def test_the_range_test_explodes_at_the_analytic_limit(changes):
    """fastai's range test on the posted model: the loss explodes just past 2/λmax (2(1+β)/λmax with
    momentum), never before it; the range spans the lr and the limit by decades both ways. (The
    measured range on two CPUs: config.LR_FIND_EXPLOSION.)"""
    config = as_posted(**changes)
    limit = poly_basis.stable_limit(config)
    found = runner.execute(CASE, config, CPU, task=CASE.lr_find).metrics
    assert found["lr_min"] <= min(config.lr, limit) / 100 and found["lr_max"] >= max(config.lr, limit) * 10
    lo, hi = LR_FIND_EXPLOSION[config.dtype]  # the page quotes these
    assert lo < found["exploded_at_lr"] / limit < hi
    assert found["valley_lr"] < limit and found["steep_lr"] < limit  # where the loss fell, not past the edge


def test_the_range_test_does_not_apply_to_lbfgs():
    with pytest.raises(ValueError, match="does not apply to lbfgs"):
        CASE.lr_find(CASE.presets["lbfgs"], CPU)
    adam = runner.execute(CASE, CASE.presets["adam"], CPU, task=CASE.lr_find).metrics
    assert adam["lr_min"] < 1e-2 < adam["lr_max"] and adam["valley_lr"] is not None


# ---------------------------------------------------------------------------- the page's figures


def test_figures_are_the_pages_charts_and_compare_runs():
    base = execute(as_posted(epochs=100))
    mine = execute(as_posted(points=own_points(), basis="legendre", reduction="mean", lr=0.5, epochs=100))
    figs = charts.figures({"current": base, "as-posted": base, "pin 1": mine})
    assert list(figs) == ["fit", "loss", "sharpness", "scan", "eigenvalues", "coefficients"]

    def domain(chart):
        spec = json.dumps(chart.to_dict())
        return [n for n in ("truth", "current", "as-posted", "pin 1", charts.OPTIMUM) if f'"{n}"' in spec]

    assert domain(figs["fit"]) == ["truth", "current", "as-posted", charts.OPTIMUM]  # the pin fitted other data
    assert "pin 1" in domain(figs["loss"]) and "pin 1" in domain(figs["eigenvalues"])
    own = charts.figures({"current": mine, "pin 1": mine})["fit"].to_dict()
    assert own["title"]["text"] == "Your points, fitted polynomial" and '"truth"' not in json.dumps(own)
    scan = charts.figures({"current": execute(as_posted(optimizer="momentum", epochs=10))})["scan"]
    assert "2(1+β)/λmax = " in json.dumps(scan.to_dict(), ensure_ascii=False)


def test_a_pinned_run_has_one_colour_on_every_chart_and_the_table_says_diverged():
    base, blew = execute(as_posted(epochs=50)), execute(as_posted(lr=1e-5, epochs=50))
    runs = {"current": base, "as-posted": base, "pin 1": blew, "pin 2": execute(as_posted(degree=3, epochs=50))}

    def colour(spec, name):
        found = set()

        def walk(node):
            if isinstance(node, dict):
                scale = node.get("color", {}).get("scale") if isinstance(node.get("color"), dict) else None
                if scale and name in scale.get("domain", []):
                    found.add(scale["range"][scale["domain"].index(name)])
                for v in node.values():
                    walk(v)
            elif isinstance(node, list):
                for v in node:
                    walk(v)

        walk(spec)
        return found

    figs = charts.figures(runs)
    for name in runs:
        seen = set().union(*(colour(figs[k].to_dict(), name) for k in ("fit", "loss", "eigenvalues", "coefficients")))
        assert len(seen) == 1, (name, seen)
    text = charts.coefficient_text(runs)
    assert (text["pin 1"] == "diverged").all() and text["pin 2"].iloc[0] == ""  # no x⁴ term at degree 3
    assert text["current"].iloc[-1] == f"{base.metrics['coefficients'][-1]:.6g}"


def test_figures_stay_under_altairs_row_limit():
    """Many pinned long runs and a large upload: every chart still exports (Altair refuses > 5000 rows)."""
    from core import figures

    long = execute(as_posted(epochs=10_000))
    x = np.linspace(0, 1, 20_000)
    big = execute(as_posted(points=tuple(zip(x, np.cos(3 * x), strict=True)), basis="legendre", epochs=20))
    for runs in ({"current": long} | {f"pin {i}": long for i in range(1, 10)}, {"current": big, "pin 1": big}):
        for chart in charts.figures(runs).values():
            figures.sized(chart)  # to_dict(): raises MaxRowsError past 5000 rows
