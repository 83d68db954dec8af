"""Which torch calls the examiner looks at, what kind of call each is, and on which steps.

The examiner's TorchFunctionMode sees every torch call made in the examined thread on the
sampled steps; it looks each one up here (one dict lookup) and passes everything else
straight through.
Module layers call these functions too (nn.Linear -> F.linear, nn.ReLU -> F.relu,
nn.CrossEntropyLoss -> F.cross_entropy), so modules, functional calls and plain tensor
code are seen alike.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

T = torch.Tensor

# activations: the output is measured (dead units, saturation) and remembered, so that the
# loss call can tell when it is fed an activation's output directly
ACTIVATIONS = {
    F.relu: "relu",
    torch.relu: "relu",
    torch.relu_: "relu",
    T.relu: "relu",
    T.relu_: "relu",
    torch.tanh: "tanh",
    T.tanh: "tanh",
    T.tanh_: "tanh",
    torch.sigmoid: "sigmoid",
    T.sigmoid: "sigmoid",
    T.sigmoid_: "sigmoid",
    F.softmax: "softmax",
    torch.softmax: "softmax",
    T.softmax: "softmax",
}

# layers whose first argument is the layer's input: the first one per step whose input is
# data (floating point, not depending on any parameter) is "the model's input"
LAYERS = {
    F.linear: "linear",
    F.conv1d: "conv",
    F.conv2d: "conv",
    F.conv3d: "conv",
    torch.matmul: "matmul",
    T.matmul: "matmul",
    T.__matmul__: "matmul",
    torch.mm: "matmul",
    T.mm: "matmul",
}

# loss functions -> family: "regression" (prediction and target of one shape), "class"
# (class indices or probabilities over dim 1), "binary" (a probability or logit per element)
LOSSES = {
    F.mse_loss: "regression",
    F.l1_loss: "regression",
    F.smooth_l1_loss: "regression",
    F.huber_loss: "regression",
    F.cross_entropy: "class",
    F.nll_loss: "class",
    F.binary_cross_entropy: "binary",
    F.binary_cross_entropy_with_logits: "binary",
}
# the losses that apply their own softmax / sigmoid (or expect log-probabilities)
WANTS_LOGITS = {F.cross_entropy: "softmax", F.nll_loss: "log_softmax", F.binary_cross_entropy_with_logits: "sigmoid"}

# the range each output activation can reach
RANGES = {"relu": (0.0, math.inf), "sigmoid": (0.0, 1.0), "tanh": (-1.0, 1.0)}

# optimizers whose step does not grow with the loss's scale (adaptive per-weight step sizes)
SCALE_FREE = ("Adam", "AdamW", "Adamax", "NAdam", "RAdam", "RMSprop", "Adagrad", "Adadelta", "SparseAdam")

KIND = {
    **{f: ("act", k) for f, k in ACTIVATIONS.items()},
    **{f: ("layer", k) for f, k in LAYERS.items()},
    **{f: ("loss", k) for f, k in LOSSES.items()},
    F.batch_norm: ("batch_norm", "batch_norm"),
    # tensors made to be constant (a GAN's real/fake labels): such a target is not data in an order
    **{f: ("constant", f.__name__) for f in (torch.ones, torch.zeros, torch.full, torch.ones_like, torch.zeros_like)},
    **{f: ("constant", f.__name__) for f in (torch.full_like, torch.Tensor.new_ones, torch.Tensor.new_zeros)},
    torch.Tensor.new_full: ("constant", "new_full"),
}


def loss_name(func) -> str:
    return getattr(func, "__name__", str(func))


QUICK_STEP = 0.005  # seconds: sampled steps 2-5 quicker than this on average make a quick script


def sampled(step: int, quick: bool = False) -> bool:
    """Detailed statistics on this (1-based) step? The first 5 steps, then every 10th to 100
    and 36 a decade after (every 25th to 1,000, every 250th to 10,000, ...). A sampled step
    costs the examiner about a millisecond of Python and small tensor ops whatever the model's
    size; in a quick script (steps of a millisecond or two, `QUICK_STEP`) that would double the
    sampled steps' time, so there steps 6-100 are sampled every 20th (12 samples in 150 steps,
    not 17)."""
    if step <= 5:
        return True
    if step <= 100:
        return step % (20 if quick else 10) == 0
    every = 10 ** (len(str(step - 1)) - 2) * 5 // 2  # 25 to 1,000; 250 to 10,000
    return step % every == 0


_NOT_THE_SCRIPT = (str(Path(torch.__file__).parent), str(Path(__file__).parent))  # torch's files, the examiner's


def script_frame():
    """The innermost frame of the examined code (not torch's, not the examiner's), or None."""
    f = sys._getframe(1)
    while f is not None and f.f_code.co_filename.startswith(_NOT_THE_SCRIPT):
        f = f.f_back
    return f


def script_site() -> tuple[str, int, int] | None:
    """(file name, line, bytecode offset) of the examined code's innermost frame: one call among
    several on a line."""
    f = script_frame()
    return (Path(f.f_code.co_filename).name, f.f_lineno, f.f_lasti) if f is not None else None


def script_line() -> tuple[str, int] | None:
    """(file name, line) of the examined code's innermost frame."""
    f = script_frame()
    return (Path(f.f_code.co_filename).name, f.f_lineno) if f is not None else None
