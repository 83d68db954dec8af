"""Convergence Clinic, case 3: fitting a polynomial with nn.Linear crawls, or explodes.

A standalone reproduction of one run with plain PyTorch (and numpy): nothing from the
Convergence Clinic project. Run it with `python this_file.py`; it prints the run's final
metrics as one JSON line, the same metrics the app shows. `main(config)` returns them with the
loss of each epoch: the app's tests and benchmark use it as their reference.

The posted pipeline: the features of x (x^4, x^3, x^2, x as posted) into nn.Linear(degree, 1),
whose bias is the constant term; nn.MSELoss; torch.optim; full batch, one step per epoch. The
loss is quadratic in the coefficients with Hessian H = 2 AᵀA (A: the features and a column of
ones; / n for the mean), so plain gradient descent is stable only for lr < 2/λmax.
"""

import json
import math

import numpy as np
import torch
from numpy.polynomial import Legendre, Polynomial

# --- settings: written by Convergence Clinic's export
CONFIG = {
    "degree": 4,
    "n_points": 6,
    "x_min": 2.0,
    "x_max": 5.0,
    "noise": 0.0,
    "points": (),
    "basis": "raw",
    "optimizer": "sgd",
    "lr": 1e-06,
    "momentum": 0.9,
    "epochs": 1000,
    "reduction": "sum",
    "dtype": "float32",
    "init": "default",
    "seed": 0,
}
# --- end of settings

DTYPES = {"float32": torch.float32, "float64": torch.float64}


def generator(seed, stream):
    """One CPU generator per purpose: stream 0 draws the noise, stream 1 the weights."""
    return torch.Generator().manual_seed(seed * 1000 + stream)


def make_data(c):
    """x = linspace(x_min, x_max, n), y = sin(x) + noise, float64 as in numpy; or your own points."""
    if c["points"]:
        xy = np.array(c["points"], dtype=np.float64)
        return xy[:, 0], xy[:, 1]
    x = np.linspace(c["x_min"], c["x_max"], c["n_points"])
    y = np.sin(x)
    if c["noise"] > 0:
        g = generator(c["seed"], 0)
        y = y + c["noise"] * torch.randn(c["n_points"], generator=g, dtype=torch.float64).numpy()
    return x, y


def basis_polynomials(c, x):
    """The feature columns as functions of x, highest degree first."""
    domain = [float(x.min()), float(x.max())] if c["points"] else [c["x_min"], c["x_max"]]  # mapped to [-1, 1]
    degrees = range(c["degree"], 0, -1)
    if c["basis"] == "raw":
        return [Polynomial.basis(k) for k in degrees]
    if c["basis"] == "centered":
        return [Polynomial.basis(k, domain=domain) for k in degrees]
    if c["basis"] == "legendre":
        return [Legendre.basis(k, domain=domain) for k in degrees]
    return [(Polynomial.basis(k) - (x**k).mean()) / (x**k).std() for k in degrees]  # standardized


def features(c, x):
    """(n, degree) float64; raw powers computed as the post does, x**k."""
    if c["basis"] == "raw":
        return np.stack([x**k for k in range(c["degree"], 0, -1)], axis=1)
    return np.stack([p(x) for p in basis_polynomials(c, x)], axis=1)


def to_raw(c, x):
    """M such that the raw power coefficients [c_degree ... c_0] = M @ [weights, bias]."""
    d = c["degree"]
    m = np.zeros((d + 1, d + 1))
    for j, p in enumerate(basis_polynomials(c, x)):
        coef = p.convert(kind=Polynomial).coef  # lowest power first
        m[: d + 1, j] = np.pad(coef, (0, d + 1 - len(coef)))[::-1]
    m[d, d] = 1.0  # the bias is the constant term
    return m


def init_weights(c):
    """[weight..., bias] as nn.Linear(degree, 1) draws them, from the run's own generator."""
    d = c["degree"]
    if c["init"] == "zeros":
        return torch.zeros(d + 1)
    g = generator(c["seed"], 1)
    bound = 1 / math.sqrt(d)
    w = torch.empty(1, d).uniform_(-bound, bound, generator=g)  # nn.Linear's weight (out, in)
    b = torch.empty(1).uniform_(-bound, bound, generator=g)
    return torch.cat([w[0], b])


def sse(a, y, theta, reduction):
    r = a @ theta - y
    return float(np.sum(r * r) / (len(y) if reduction == "mean" else 1))


def jsonable(v):
    """NaN and inf are not JSON: null, as the app's record writes them."""
    if isinstance(v, list):
        return [jsonable(u) for u in v]
    return None if isinstance(v, float) and not math.isfinite(v) else v


def main(c):
    """One run of the posted pipeline with settings `c` -> (history, metrics): the loss of each epoch up to
    the first non-finite one, and the run's final metrics (NaN and inf as floats)."""
    dtype = DTYPES[c["dtype"]]
    x, y = make_data(c)
    a64 = np.hstack([features(c, x), np.ones((len(x), 1))])  # (n, p): features and nn.Linear's bias
    a = torch.from_numpy(a64).to(dtype)  # what the model sees
    x_data, y_data = a[:, :-1], torch.from_numpy(y).to(dtype).unsqueeze(1)  # (n, degree), (n, 1)

    model = torch.nn.Linear(c["degree"], 1, dtype=dtype)
    w0 = init_weights(c).to(dtype)
    with torch.no_grad():
        model.weight.copy_(w0[:-1].unsqueeze(0))
        model.bias.copy_(w0[-1:])
    criterion = torch.nn.MSELoss(reduction=c["reduction"])
    params, lr = list(model.parameters()), c["lr"]
    optimizer = {
        "sgd": lambda: torch.optim.SGD(params, lr=lr),
        "momentum": lambda: torch.optim.SGD(params, lr=lr, momentum=c["momentum"]),
        "adam": lambda: torch.optim.Adam(params, lr=lr),
        "lbfgs": lambda: torch.optim.LBFGS(params, lr=lr, line_search_fn="strong_wolfe"),
    }[c["optimizer"]]()

    def closure():  # for L-BFGS, which evaluates the loss several times a step
        optimizer.zero_grad()
        loss = criterion(model(x_data), y_data)
        loss.backward()
        return loss

    losses, diverged_at = [], None
    for epoch in range(1, c["epochs"] + 1):
        if c["optimizer"] == "lbfgs":
            loss = optimizer.step(closure)  # the loss before the step
        else:
            optimizer.zero_grad()
            loss = criterion(model(x_data), y_data)
            loss.backward()
        if not math.isfinite(loss.item()):
            diverged_at = epoch
            break
        losses.append(loss.item())
        if c["optimizer"] != "lbfgs":
            optimizer.step()
    theta = torch.cat([model.weight.detach()[0], model.bias.detach()]).double().numpy()
    diverged = diverged_at is not None or not np.all(np.isfinite(theta))

    # the curvature of the loss on the features as the model sees them (rounded to dtype), in float64
    a_model = a.double().numpy()
    h = 2 * a_model.T @ a_model
    h = h / len(a_model) if c["reduction"] == "mean" else h
    lam = torch.linalg.eigvalsh(torch.from_numpy(h)).numpy()
    lam_min, lam_max = float(lam[0]), float(lam[-1])
    # the least-squares optimum, in float64
    sol = torch.linalg.lstsq(torch.from_numpy(a64), torch.from_numpy(y).unsqueeze(1), driver="gelsd").solution
    theta_star = sol.squeeze(1).numpy()
    loss_star = sse(a64, y, theta_star, c["reduction"])

    final = math.inf if diverged else losses[-1] if losses else math.nan
    has_optimum = loss_star > 1e-12 * float(np.sum(y * y))  # not an interpolation
    raw = to_raw(c, x)
    coefficients = raw @ theta if not diverged else np.full(c["degree"] + 1, np.nan)
    beta = c["momentum"]
    if c["optimizer"] in ("sgd", "momentum"):  # epochs per factor e along the flattest direction
        slowest = (1 - beta if c["optimizer"] == "momentum" else 1) / (lr * lam_min) if lam_min > 0 else math.inf
    else:
        slowest = math.nan
    metrics = {
        "final_loss": final,
        "closed_form_loss": loss_star,
        "loss_ratio": final / loss_star if has_optimum else math.nan,
        "max_stable_lr": 2 / lam_max,
        "max_stable_lr_momentum": 2 * (1 + beta) / lam_max,
        "condition_number": lam_max / lam_min if lam_min > 0 else math.inf,
        "lambda_min": lam_min,
        "lambda_max": lam_max,
        "design_condition_number": float(np.linalg.cond(a64)),
        "diverged": bool(diverged),
        "diverged_at": diverged_at,
        "epochs_run": len(losses),
        "slowest_direction_epochs": slowest,
        "coefficients": [float(v) for v in coefficients],
        "closed_form_coefficients": [float(v) for v in raw @ theta_star],
        # the limit drawn on the app's learning-rate scan (plain SGD for L-BFGS; none for Adam)
        "scan_limit": {"adam": math.nan, "momentum": 2 * (1 + beta) / lam_max}.get(c["optimizer"], 2 / lam_max),
    }
    return {"epoch": list(range(1, len(losses) + 1)), "loss": losses}, metrics


if __name__ == "__main__":
    history, metrics = main(CONFIG)
    print(json.dumps({k: jsonable(v) for k, v in metrics.items()}))
