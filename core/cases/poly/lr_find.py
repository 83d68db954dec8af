"""The learning-rate range test (fastai's lr_find) on the posted model. Its explosion lands a little
past the analytic limit (config.LR_FIND_EXPLOSION: 1.1-1.9× in float32, 1.2-2.2× in float64, measured on two CPUs):
the rate keeps growing while the steepest direction climbs back from rounding level."""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

from core import lrfind
from core.cases.poly.basis import features, init_weights, make_data, stable_limit
from core.cases.poly.config import DTYPES, PolyConfig
from core.train import RunResult

# ---------------------------------------------------------------------------- learning-rate range test

LR_FIND_BELOW, LR_FIND_ABOVE = 100.0, 10.0  # the range: from 100× below min(lr, limit) to 10× above max(lr, limit)
LR_FIND_STEPS_PER_DECADE = 500  # the rate grows ×1.0046 a step: the explosion lands within ~1.3× the limit


def lr_find_range(config: PolyConfig) -> tuple[float, float, int]:
    """(lr_min, lr_max, steps) of the range test: two decades below the smaller of the lr and the
    stability limit (Adam: its lr), one above the larger; 500 steps a decade (1500 to 4000)."""
    limit = config.lr if config.optimizer == "adam" else stable_limit(config)
    lo, hi = min(config.lr, limit) / LR_FIND_BELOW, max(config.lr, limit) * LR_FIND_ABOVE
    steps = int(np.clip(round(LR_FIND_STEPS_PER_DECADE * math.log10(hi / lo)), 1500, 4000))
    return lo, hi, steps


def lr_find(config: PolyConfig, device: torch.device, on_progress=None) -> RunResult:
    """The learning-rate range test (fastai's lr_find) on these settings: nn.Linear's parameters
    and torch.optim (SGD, SGD with momentum, Adam) through the shared loop, the rate growing
    exponentially each step. Along the steepest direction each step multiplies the error by
    |1 - lr·λmax|, so the loss explodes once the rate passes 2/λmax (2(1+β)/λmax with momentum),
    a little later than the rule: the error there starts at rounding level and needs some steps
    to grow. L-BFGS picks its own step length: the test does not apply (ValueError)."""
    if config.optimizer == "lbfgs":
        raise ValueError("the learning-rate range test does not apply to lbfgs: it picks its own step by line search")
    dtype = DTYPES[config.dtype]
    x, y = make_data(config)
    features_ = torch.from_numpy(features(config, x)).to(device, dtype)  # (n, degree)
    target = torch.from_numpy(y).to(device, dtype).unsqueeze(1)  # (n, 1)
    w0 = torch.from_numpy(init_weights(config)).to(device, dtype)
    weight = w0[:-1].reshape(1, -1).clone().requires_grad_()  # (1, degree), nn.Linear's layout
    bias = w0[-1:].clone().requires_grad_()  # (1,)
    params = [weight, bias]
    if config.optimizer == "adam":
        optimizer = torch.optim.Adam(params, lr=config.lr)
    else:
        beta = config.momentum if config.optimizer == "momentum" else 0.0
        optimizer = torch.optim.SGD(params, lr=config.lr, momentum=beta)

    def loss_fn(step: int) -> torch.Tensor:
        return F.mse_loss(F.linear(features_, weight, bias), target, reduction=config.reduction)

    lo, hi, steps = lr_find_range(config)
    return lrfind.range_test(
        {"weight": weight, "bias": bias},
        optimizer,
        loss_fn,
        base_lr=config.lr,
        lr_min=lo,
        lr_max=hi,
        steps=steps,
        on_progress=on_progress,
    )
