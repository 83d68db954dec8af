"""A fully connected layer with its activation fused into one autograd step, and the
three ways case 1 initialises weights.

Why fuse: on the 2-core CPU, plain autograd spends most of a small MLP's step in
elementwise kernels over (n, width) tensors, and `torch.tanh` is the worst of them
(1.3 ms over 512k floats against 0.2 ms for `torch.sigmoid`). These layers compute
tanh(z) as 2*sigmoid(2z) - 1 (the same function, within 2e-7 in float32), take the
activation's derivative from its output (tanh' = 1 - a^2, sigmoid' = a(1 - a),
relu' = [a > 0]), skip gradients nobody needs, and `head` fuses the last hidden layer
with a single output so that its backward pass never forms the (n, width) gradient.
A speed-up, not a different model: the tests compare values and gradients with
`torch.nn.functional` and autograd in float64.
"""

from __future__ import annotations

import math

import torch

from core import kernels

ACTIVATIONS = ("tanh", "relu", "sigmoid", "identity")


def _preactivation(x, w, b):
    # x (n, i), w (i, o), b (o,) or None -> z (n, o), a fresh tensor
    if x.shape[1] == 1:  # one input: an outer product; broadcasting beats a K=1 matmul
        return torch.addcmul(b, x, w) if b is not None else x * w
    return torch.addmm(b, x, w) if b is not None else x.mm(w)


def _layer_forward(x, w, b, act):
    """act(x @ w + b). tanh(z) is computed as 2*sigmoid(2z) - 1, with the inner 2 folded
    into the (small) weights and the outer affine map done in one pass."""
    if act == "tanh":
        s = _preactivation(x, w * 2, b * 2 if b is not None else None).sigmoid_()
        return torch.add(s.new_tensor(-1.0), s, alpha=2, out=s)
    z = _preactivation(x, w, b)
    if act == "sigmoid":
        return z.sigmoid_()
    if act == "relu":
        return z.clamp_min_(0)
    if act == "identity":
        return z
    raise ValueError(f"unknown activation {act!r}")


def _derivative(a, act):
    """act'(z) from the activation's output a, in one pass; None for the identity."""
    if act == "tanh":
        return torch.addcmul(a.new_ones(()), a, a, value=-1)  # 1 - a^2
    if act == "sigmoid":
        return torch.addcmul(a, a, a, value=-1)  # a (1 - a)
    if act == "relu":
        return torch.sign(a)  # a >= 0, so 1 where a > 0, else 0
    return None


class _Dense(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w, b, act):
        a = _layer_forward(x, w, b, act)
        ctx.save_for_backward(x, w, a)
        ctx.act = act
        return a

    @staticmethod
    def backward(ctx, g):
        x, w, a = ctx.saved_tensors
        d = _derivative(a, ctx.act)
        dz = g * d if d is not None else g
        dx = None
        if ctx.needs_input_grad[0]:  # one output: an outer product again
            dx = dz * w.t() if w.shape[1] == 1 else dz.mm(w.t())
        dw = x.t().mm(dz) if ctx.needs_input_grad[1] else None
        db = dz.sum(0) if ctx.needs_input_grad[2] else None
        return dx, dw, db, None


_PLAIN = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "identity": lambda z: z}


def plain(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, act: str) -> torch.Tensor:
    """act(x @ w + b) in plain autograd ops: the same layer as `dense`, slower, but twice
    differentiable (the sharpness measurement's Hessian-vector products need double backward,
    which the fused backward passes above do not provide)."""
    return _PLAIN[act](_preactivation(x, w, b))


def dense(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, act: str) -> torch.Tensor:
    """act(x @ w + b) with weights stored (in, out), as in the posted code."""
    return _Dense.apply(x, w, b, act)


class _Head(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w1, b1, w2, b2, act):
        ctx.kernel = kernels.applies(x, w1, act, b1, w2, b2)
        if ctx.kernel:  # one input, on the CPU: the compiled pair in core/kernels.py
            z, a = kernels.head_forward(x, w1, b1, w2, b2, act)
        else:
            a = _layer_forward(x, w1, b1, act)  # (n, h)
            z = _preactivation(a, w2, b2)  # (n, 1)
        ctx.save_for_backward(x, w1, w2, a)
        ctx.act = act
        ctx.mark_non_differentiable(a)
        ctx.set_materialize_grads(False)  # no zero-filled (n, h) gradient for `a`
        return z, a

    @staticmethod
    def backward(ctx, gz, _ga):
        # gz (n, 1). The hidden gradient dz1 = (gz w2^T) * act'(a) has rank-one structure,
        # so its reductions are taken without ever forming the (n, h) tensor:
        #   dw1 = x^T dz1 = ((x * gz)^T act'(a)) * w2^T,   db1 = (gz^T act'(a)) * w2^T,
        #   dx = dz1 w1^T = gz * (act'(a) (w1^T * w2)).
        if gz is None:  # z did not reach the loss
            return None, None, None, None, None, None
        x, w1, w2, a = ctx.saved_tensors
        need_x, need_w1, need_b1, need_w2, need_b2, _ = ctx.needs_input_grad
        db2 = gz.sum(0) if need_b2 else None
        if ctx.kernel and gz.dtype == torch.float32 and gz.device.type == "cpu":
            dx, dw1, db1, dw2 = kernels.head_backward(x, w1, w2, a, gz, ctx.act, need_x)
            return dx, dw1 if need_w1 else None, db1 if need_b1 else None, dw2 if need_w2 else None, db2, None
        d = _derivative(a, ctx.act)  # (n, h), or None for the identity
        d_or_a = d if d is not None else torch.ones_like(a)
        u = torch.cat([x * gz, gz], dim=1)  # (n, i + 1)
        r = u.t().mm(d_or_a) * w2.t()  # (i + 1, h): rows of dw1, then db1
        dx = gz * d_or_a.mm(w1.t() * w2) if need_x else None
        dw2 = a.t().mm(gz) if need_w2 else None
        return dx, r[:-1] if need_w1 else None, r[-1] if need_b1 else None, dw2, db2, None


def head(x, w1, b1, w2, b2, act: str) -> tuple[torch.Tensor, torch.Tensor]:
    """The last hidden layer and a single-output linear layer in one autograd node.

    Returns (z, a): the output pre-activation z = act(x @ w1 + b1) @ w2 + b2, shape (n, 1),
    and the hidden activations a (n, h) (for measurements; no gradient flows through a).
    The backward pass costs one pass over a and one small matmul instead of five passes.
    """
    if w2.shape[1] != 1:
        raise ValueError("head() is for a single output")
    return _Head.apply(x, w1, b1, w2, b2, act)


INITS = ("randn", "default", "xavier")


def init_layer(
    fan_in: int, fan_out: int, *, bias: bool, init: str, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Weights (fan_in, fan_out) and bias (fan_out,) drawn on the CPU from `generator`.

    randn: every weight (and bias) from a standard normal, as in the post.
    default: what `nn.Linear` does: U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weight and bias,
      drawn in nn.Linear's order and layout, so the same generator state gives the same numbers.
    xavier: Glorot uniform U(-sqrt(6/(fan_in+fan_out)), +), zero bias.
    """
    g = generator
    if init == "randn":
        w = torch.randn(fan_in, fan_out, generator=g)
        b = torch.randn(fan_out, generator=g) if bias else None
    elif init == "default":
        bound = 1 / math.sqrt(fan_in)
        w = torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=g).t().contiguous()
        b = torch.empty(fan_out).uniform_(-bound, bound, generator=g) if bias else None
    elif init == "xavier":
        bound = math.sqrt(6 / (fan_in + fan_out))
        w = torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=g).t().contiguous()
        b = torch.zeros(fan_out) if bias else None
    else:
        raise ValueError(f"unknown init {init!r}")
    return w, b
