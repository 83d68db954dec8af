"""How well conditioned the loss is along the model's input directions.

A linear model's loss has the Hessian ∝ its inputs' Gram matrix XᵀX/n, so the Gram matrix's
condition number κ says how many steps the flattest direction needs at the largest stable lr
(~κ/2 per e-fold). A non-linear model's Hessian is not the Gram matrix; here it is measured,
compressed onto one direction per input feature (Rayleigh-Ritz):

    A[i, k] = q_iᵀ H q_k     q_k: the first Linear's weight column k, W[:, k] / ‖W[:, k]‖, in W's place

the curvature of moving the weights that read feature k along their current direction. The q_k
are orthonormal (each lives in its own column), so A's eigenvalues lie within H's range; its κ
is the spread of curvature across the input features that SGD on the first layer meets. One
Hessian-vector product (double backward) per input feature, on a sampled step's own batch and
graph. For a linear model with one output A is the Gram matrix again (× 2 for MSE).
"""

from __future__ import annotations

import math

import torch

MAX_FEATURES = 32  # one Hessian-vector product per input feature: wider inputs are not measured


def kappa(matrix: torch.Tensor, magnitude: bool = False) -> float:
    """λmax / the smallest positive eigenvalue of a symmetric matrix (directions that the data
    never spans, eigenvalues below 1e-14 λmax, do not slow the loss and are left out).
    magnitude: of |λ| (a Hessian's: a direction of slightly negative curvature is as flat as one
    of slightly positive curvature, for a step size set by λmax)."""
    lam = torch.linalg.eigvalsh(matrix.double().cpu())
    lam = lam.abs().sort().values if magnitude else lam
    top = float(lam[-1])
    kept = lam[lam > top * 1e-14]
    return top / float(kept[0]) if top > 0 and len(kept) else math.inf


def scaled(matrix: torch.Tensor) -> torch.Tensor:
    """The matrix as Adam-like per-weight step sizes see it: its diagonal scaled to 1 (the
    features' scales undone; what is left is their correlation)."""
    d = matrix.diagonal().clamp_min(1e-300).rsqrt()
    return matrix * d[:, None] * d[None, :]


def input_hessian(loss: torch.Tensor, params: list[torch.Tensor], weight: torch.Tensor) -> torch.Tensor | None:
    """A (n, n) as above, from `loss` (its graph still whole) and the trained `params`, one of which
    is the first layer's `weight` (hidden, n). None when it cannot be measured."""
    slot = next((i for i, p in enumerate(params) if p is weight), None)
    if slot is None or weight.dim() != 2 or weight.shape[1] > MAX_FEATURES:
        return None
    saved = [p.grad for p in params]
    try:
        with torch.enable_grad():
            grads = torch.autograd.grad(loss, params, create_graph=True, allow_unused=True)  # never touches .grad
            live = [i for i, g in enumerate(grads) if g is not None and g.requires_grad]
            if slot not in live:
                return None
            q = weight.detach() / weight.detach().norm(dim=0).clamp_min(1e-12)  # (hidden, n): unit columns
            cols = []
            for k in range(weight.shape[1]):
                v = torch.zeros_like(weight)
                v[:, k] = q[:, k]
                hv = torch.autograd.grad(grads[slot], weight, v, retain_graph=True)[0]  # (hidden, n): H_WW q_k
                cols.append((q * hv).sum(0))  # (n,): q_iᵀ H q_k for every i
            a = torch.stack(cols, 1).double()
    finally:
        for p, g in zip(params, saved, strict=True):
            p.grad = g
    return (a + a.T) / 2
