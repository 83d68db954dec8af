"""Case 2's network and optimizer: the post's 3072-hidden-10 ReLU MLP as two weight tensors, what it
sees (ToTensor()'s pixels times `input_scale`, standardised if asked), and SGD with one parameter
group per layer (each layer's lr and weight decay scales)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from core import rng
from core.cases.cifar.cache import Data
from core.cases.cifar.config import CifarConfig
from core.cases.cifar.data import PIXELS


def init_params(config: CifarConfig, n_classes: int) -> dict[str, torch.Tensor]:
    """nn.Linear(3072, hidden) and nn.Linear(hidden, n_classes) as PyTorch initialises them
    (weights (out, in) and biases ~ U(±1/sqrt(fan_in)), drawn in nn.Linear's order) from the
    run's own generator, then each layer's weights times its init scale (biases untouched)."""
    g = rng.generator(config.seed, 1)
    params = {}
    sizes = ((PIXELS, config.hidden), (config.hidden, n_classes))
    scales = (config.layer1_init_scale, config.layer2_init_scale)
    for i, ((fan_in, fan_out), scale) in enumerate(zip(sizes, scales, strict=True), start=1):
        bound = 1 / math.sqrt(fan_in)
        params[f"layer{i}.weight"] = torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=g) * scale
        if config.bias:
            params[f"layer{i}.bias"] = torch.empty(fan_out).uniform_(-bound, bound, generator=g)
    return params


def input_stats(data: Data, config: CifarConfig) -> torch.Tensor | None:
    """The per-channel mean and std of the scaled inputs, for `standardize`; None for `none`."""
    if config.normalize == "none":
        return None
    return (data.pixels * (config.input_scale / 255)).float()


def to_input(x: torch.Tensor, config: CifarConfig, stats: torch.Tensor | None) -> torch.Tensor:
    """uint8 (B, 3072) -> what the network sees: ToTensor()'s x / 255, times input_scale, and
    standardised per channel if asked. One batch at a time; the uint8 set is never copied."""
    x = x.float().div_(255)  # ToTensor()
    if config.input_scale != 1:
        x.mul_(config.input_scale)  # the post's `net(inputs * 255)`
    if stats is not None:
        x = x.view(-1, 3, 1024).sub_(stats[0]).div_(stats[1]).view(-1, PIXELS)
    return x


class _Linear2(torch.autograd.Function):
    """F.linear for layer 2, with its weight gradient taken as (hᵀ g)ᵀ instead of gᵀ h.

    Why: the same number, but gᵀ h (10 x B @ B x hidden) is summed over the batch in an
    order that depends on the CPU thread count (measured: 1 vs 2 threads differ in the last
    bit), and the thread policy gives a run 1 or 2 threads depending on what else runs. A
    last-bit difference at step 4 is a different run by epoch 10. (hᵀ g) splits its work
    over the hidden units instead; measured bit-identical for 1 and 2 threads, as are the
    other matmuls here, on an AMD EPYC (tests/test_cifar.py checks whole runs). Not on every
    CPU: on an AVX-512 Xeon MKL splits both forward matmuls (and this one) over their inner
    dimension with two threads, so the runs there agree to the last bit or two, not bit for bit.
    """

    @staticmethod
    def forward(ctx, h, w, b):
        ctx.save_for_backward(h, w)
        ctx.has_bias = b is not None
        return F.linear(h, w, b)

    @staticmethod
    def backward(ctx, g):
        h, w = ctx.saved_tensors
        dh = g.mm(w) if ctx.needs_input_grad[0] else None
        dw = h.t().mm(g).t() if ctx.needs_input_grad[1] else None
        db = g.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return dh, dw, db


def forward(params: dict[str, torch.Tensor], x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """-> (logits (B, classes), hidden activations (B, hidden)). The post's Net, minus its
    hard-coded `x.reshape(250, -1)`: x arrives flat. Weights are (out, in) as in nn.Linear;
    x does not require grad, so autograd never forms layer 1's (B, 3072) input gradient."""
    h = F.linear(x, params["layer1.weight"], params.get("layer1.bias")).relu_()
    return _Linear2.apply(h, params["layer2.weight"], params.get("layer2.bias")), h


def make_optimizer(params: dict[str, torch.Tensor], config: CifarConfig) -> torch.optim.Optimizer:
    """SGD with momentum and weight decay; one parameter group per layer for its lr and weight decay scales."""
    scales = ((config.layer1_lr_scale, config.layer1_wd_scale), (config.layer2_lr_scale, config.layer2_wd_scale))
    groups = [
        {
            "params": [p for k, p in params.items() if k.startswith(f"layer{i}.")],
            "lr": config.lr * lr_scale,
            "weight_decay": config.weight_decay * wd_scale,
        }
        for i, (lr_scale, wd_scale) in enumerate(scales, start=1)
    ]
    fused = next(iter(params.values())).device.type in ("cpu", "cuda")  # one kernel for all tensors
    return torch.optim.SGD(
        groups, lr=config.lr, momentum=config.momentum, weight_decay=config.weight_decay, fused=fused or None
    )
