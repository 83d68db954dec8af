"""The measured sharpness of the loss, at the epochs the scan watched."""

from __future__ import annotations

import math

import pandas as pd
import torch
import torch.nn.functional as F

from core import curvature
from core.cases.poly.config import PolyConfig

SHARPNESS_MEASUREMENTS = 6  # epochs whose sharpness is measured (every k-th, the first and the last)


def sharpness_every(config: PolyConfig) -> int:
    return curvature.every_for(config.epochs, SHARPNESS_MEASUREMENTS)


def sharpness_limit(config: PolyConfig) -> float:
    """The line for the (preconditioned) sharpness: 2/lr for SGD, 2(1+β)/lr with momentum, 38/lr for
    Adam; NaN for L-BFGS."""
    beta = 0.9 if config.optimizer == "adam" else config.momentum  # Adam's β1 (torch's default), as descend uses it
    return curvature.limit(config.optimizer, config.lr, beta)


def sharpness(config: PolyConfig, a: torch.Tensor, y: torch.Tensor, watched: dict, steps_run: int) -> pd.DataFrame:
    """The measured sharpness of the loss as nn.Linear + MSELoss computes it (through autograd's double
    backward, not the closed form) at the weights `descend` watched; preconditioned by Adam's second
    moment for Adam. The loss is quadratic, so for SGD it must equal λmax of 2AᵀA (/n): the tests hold
    it to that."""
    weight = torch.empty(1, config.degree, dtype=a.dtype, device=a.device, requires_grad=True)
    bias = torch.empty(1, dtype=a.dtype, device=a.device, requires_grad=True)
    features_, target = a[:, :-1], y.unsqueeze(1)  # (n, degree), (n, 1)

    def loss() -> torch.Tensor:
        return F.mse_loss(F.linear(features_, weight, bias), target, reduction=config.reduction)

    records, start, g = [], None, torch.Generator().manual_seed(config.seed)
    for epoch in sorted(e for e in watched if e <= steps_run):
        w, sq = watched[epoch]
        with torch.no_grad():
            weight.copy_(w[:-1].unsqueeze(0))
            bias.copy_(w[-1:])
        pre = None
        if config.optimizer == "adam":
            inverse = curvature.adam_preconditioner(sq, epoch)
            pre = [inverse[:-1].unsqueeze(0), inverse[-1:]]
        s = curvature.top_eigenvalue(loss, [weight, bias], precondition=pre, start=start, generator=g)
        start = s.vector if math.isfinite(s.value) else None
        records.append((epoch, s))
    kind = curvature.variant(config.optimizer == "adam", 1)
    warm = curvature.warmup(config.optimizer)
    return curvature.frame(records, sharpness_limit(config), lr=config.lr, variant=kind, warmup=warm)
