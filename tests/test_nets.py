"""The fused layers against PyTorch's own autograd, in float64: same values, same gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from core import nets

ACTS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "identity": lambda z: z}


def tensors(n, i, h, bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, i, generator=g, dtype=torch.float64) * 2
    w1 = torch.randn(i, h, generator=g, dtype=torch.float64)
    b1 = torch.randn(h, generator=g, dtype=torch.float64) if bias else None
    w2 = torch.randn(h, 1, generator=g, dtype=torch.float64) / math.sqrt(h)
    b2 = torch.randn(1, generator=g, dtype=torch.float64) if bias else None
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    return x, w1, b1, w2, b2, y


def leaves(*ts):
    return [t.clone().requires_grad_() if t is not None else None for t in ts]


def grads(loss, ts):
    present = [t for t in ts if t is not None]
    got = iter(torch.autograd.grad(loss, present))
    return [next(got) if t is not None else None for t in ts]


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("inputs", [1, 5])
def test_dense_matches_autograd(act, bias, inputs):
    x, w1, b1, *_ = tensors(50, inputs, 7, bias)
    ref = leaves(x, w1, b1)
    fused = leaves(x, w1, b1)
    a_ref = ACTS[act](F.linear(ref[0], ref[1].t(), ref[2]))
    a = nets.dense(*fused, act)
    torch.testing.assert_close(a, a_ref)
    probe = torch.randn_like(a_ref)  # a generic upstream gradient
    for g, g_ref in zip(grads((a * probe).sum(), fused), grads((a_ref * probe).sum(), ref), strict=True):
        torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("inputs", [1, 4])
def test_head_matches_two_layers_of_autograd(act, bias, inputs):
    x, w1, b1, w2, b2, y = tensors(60, inputs, 9, bias)
    ref = leaves(x, w1, b1, w2, b2)
    fused = leaves(x, w1, b1, w2, b2)
    a_ref = ACTS[act](F.linear(ref[0], ref[1].t(), ref[2]))
    z_ref = F.linear(a_ref, ref[3].t(), ref[4])
    z, a = nets.head(*fused, act)
    torch.testing.assert_close(z, z_ref)
    torch.testing.assert_close(a, a_ref.detach())
    loss_ref = (torch.tanh(z_ref) - y).pow(2).sum()
    loss = (torch.tanh(z) - y).pow(2).sum()
    for g, g_ref in zip(grads(loss, fused), grads(loss_ref, ref), strict=True):
        torch.testing.assert_close(g, g_ref)


def test_tanh_in_float32_stays_within_rounding_of_torch_tanh():
    z = torch.linspace(-30, 30, 100_001)
    w = torch.ones(1, 1)
    a = nets.dense(z.unsqueeze(1), w, None, "tanh").squeeze(1)
    assert (a - torch.tanh(z)).abs().max().item() < 3e-7


def test_default_init_is_nn_linear_init():
    """Same generator state, same numbers: nn.Linear draws from the global generator, so
    compare under a forked global state."""
    for fan_in, fan_out in [(1, 128), (3072, 300), (300, 10)]:
        g = torch.Generator().manual_seed(7)
        w, b = nets.init_layer(fan_in, fan_out, bias=True, init="default", generator=g)
        with torch.random.fork_rng():
            torch.manual_seed(7)
            layer = torch.nn.Linear(fan_in, fan_out)
        torch.testing.assert_close(w, layer.weight.detach().t(), rtol=0, atol=0)
        torch.testing.assert_close(b, layer.bias.detach(), rtol=0, atol=0)


def test_randn_init_is_the_posted_torch_randn():
    g = torch.Generator().manual_seed(3)
    w, b = nets.init_layer(1, 128, bias=False, init="randn", generator=g)
    torch.testing.assert_close(w, torch.randn(1, 128, generator=torch.Generator().manual_seed(3)), rtol=0, atol=0)
    assert b is None


def test_xavier_bound():
    w, b = nets.init_layer(100, 50, bias=True, init="xavier", generator=torch.Generator().manual_seed(0))
    assert w.abs().max() <= math.sqrt(6 / 150) and w.std() > 0.5 * math.sqrt(2 / 150)
    assert torch.count_nonzero(b) == 0
