"""The data, the bases and the closed form: x and y, the feature columns in each basis, the design
matrix, its Hessian's eigenvalues and stability limit, the least-squares optimum, and the
starting coefficients."""

from __future__ import annotations

import numpy as np
import torch
from numpy.polynomial import Legendre, Polynomial

from core import nets, points, rng
from core.cases.poly.config import DTYPES, PolyConfig

# ---------------------------------------------------------------------------- data and bases


def make_data(config: PolyConfig) -> tuple[np.ndarray, np.ndarray]:
    """x (n,) = linspace(x_min, x_max, n), y (n,) = sin(x) + noise·N(0, 1), both float64 as in numpy;
    or the user's points as they are (no noise)."""
    if config.points:
        xy = np.array(config.points, dtype=np.float64)  # (n, 2)
        return xy[:, 0], xy[:, 1]
    x = np.linspace(config.x_min, config.x_max, config.n_points)
    y = np.sin(x)
    if config.noise > 0:
        g = rng.generator(config.seed, 0)
        y = y + config.noise * torch.randn(config.n_points, generator=g, dtype=torch.float64).numpy()
    return x, y


def truth(x: np.ndarray) -> np.ndarray:
    return np.sin(x)


def size(config: PolyConfig) -> int:
    return len(config.points) or config.n_points


def x_range(config: PolyConfig) -> tuple[float, float]:
    """The data's x range: [x_min, x_max], or the smallest and largest x of the user's points."""
    return points.x_range(config.points, (config.x_min, config.x_max))


def basis_polynomials(config: PolyConfig, x: np.ndarray) -> list[Polynomial | Legendre]:
    """The feature columns as functions of x, highest degree first (x^4, x^3, x^2, x as posted).

    `x` is the data (the standardized basis z-scores each power over it).
    """
    domain = list(x_range(config))  # numpy maps this domain to t in [-1, 1]
    degrees = range(config.degree, 0, -1)
    if config.basis == "raw":
        return [Polynomial.basis(k) for k in degrees]
    if config.basis == "centered":
        return [Polynomial.basis(k, domain=domain) for k in degrees]
    if config.basis == "legendre":
        return [Legendre.basis(k, domain=domain) for k in degrees]
    if config.basis == "standardized":  # (x^k - mean) / std over the data (numpy's std, ddof 0)
        polys = []
        for k in degrees:
            column = x**k
            polys.append((Polynomial.basis(k) - column.mean()) / column.std())
        return polys
    raise ValueError(f"unknown basis {config.basis!r}")


def features(config: PolyConfig, x: np.ndarray, at: np.ndarray | None = None) -> np.ndarray:
    """(len(at), degree) feature matrix in float64, evaluated at `at` (default: the data x).
    Raw powers are computed as the post does, x**k."""
    at = x if at is None else at
    if config.basis == "raw":
        return np.stack([at**k for k in range(config.degree, 0, -1)], axis=1)
    return np.stack([p(at) for p in basis_polynomials(config, x)], axis=1)


def design(config: PolyConfig, x: np.ndarray) -> np.ndarray:
    """(n, p) float64: the features and a column of ones (nn.Linear's bias); p = degree + 1."""
    return np.hstack([features(config, x), np.ones((len(x), 1))])


def to_raw(config: PolyConfig, x: np.ndarray) -> np.ndarray:
    """(degree + 1, p) matrix M: raw power coefficients [c_degree ... c_1, c_0] = M @ [weights, bias]."""
    d = config.degree
    m = np.zeros((d + 1, d + 1))
    for j, poly in enumerate(basis_polynomials(config, x)):
        coef = poly.convert(kind=Polynomial).coef  # power coefficients in x, lowest first
        m[: d + 1, j] = np.pad(coef, (0, d + 1 - len(coef)))[::-1]
    m[d, d] = 1.0  # the bias is the constant term
    return m


# ---------------------------------------------------------------------------- curvature and closed form


def hessian(a: np.ndarray, reduction: str) -> np.ndarray:
    """H of the loss in the coefficients: 2 AᵀA for the sum, 2 AᵀA / n for the mean."""
    h = 2 * a.T @ a
    return h / len(a) if reduction == "mean" else h


def eigenvalues(a: np.ndarray, reduction: str) -> np.ndarray:
    """The Hessian's eigenvalues, ascending, in float64."""
    return torch.linalg.eigvalsh(torch.from_numpy(hessian(a, reduction))).numpy()


def stable_lr(lam_max: float, optimizer: str, momentum: float) -> float:
    """The largest step for which gradient descent does not diverge along the steepest direction:
    |1 - lr·λmax| < 1, i.e. lr < 2/λmax; with heavy-ball momentum β, lr < 2(1 + β)/λmax."""
    return 2 * (1 + momentum) / lam_max if optimizer == "momentum" else 2 / lam_max


def closed_form(a: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The least-squares coefficients (p,) by torch.linalg.lstsq in float64."""
    sol = torch.linalg.lstsq(torch.from_numpy(a), torch.from_numpy(y).unsqueeze(1), driver="gelsd").solution
    return sol.squeeze(1).numpy()


def loss_np(a: np.ndarray, y: np.ndarray, theta: np.ndarray, reduction: str) -> float:
    r = a @ theta - y
    return float(np.sum(r * r) / (len(y) if reduction == "mean" else 1))


def stable_limit(config: PolyConfig) -> float:
    """The stability limit of `config`'s optimizer (plain SGD for L-BFGS) on its features as
    rounded to its dtype: what the scan is centred on."""
    x, _ = make_data(config)
    a = torch.from_numpy(design(config, x)).to(DTYPES[config.dtype]).double().numpy()
    lam_max = eigenvalues(a, config.reduction)[-1]
    return stable_lr(lam_max, "sgd" if config.optimizer == "lbfgs" else config.optimizer, config.momentum)


def condition(config: PolyConfig) -> float:
    """The condition number of the design matrix (features and ones), in float64."""
    x, _ = make_data(config)
    return float(np.linalg.cond(design(config, x)))


# ---------------------------------------------------------------------------- training


def init_weights(config: PolyConfig) -> np.ndarray:
    """The starting coefficients (p,) = [nn.Linear weight..., bias], from the run's own generator.
    `default` draws exactly what nn.Linear(degree, 1) draws from the same generator state."""
    if config.init == "zeros":
        return np.zeros(config.degree + 1)
    w, b = nets.init_layer(config.degree, 1, bias=True, init="default", generator=rng.generator(config.seed, 1))
    return torch.cat([w[:, 0], b]).double().numpy()
