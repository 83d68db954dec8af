"""Case 2: a CIFAR-10 MLP stops learning when its inputs are multiplied by 255.

As posted: 3072-300-10, ReLU, no biases, PyTorch's default init, ToTensor() pixels in
[0, 1], cross-entropy, SGD lr 0.02 momentum 0.9 weight decay 1e-4, batch 250 shuffled,
20 epochs. The poster reports ~50% test accuracy; with `inputs * 255` the net no longer
learns (outputs all zero), lr / 255 gives ~43%, initial weights / 255 plus lr / 255 brings
the accuracy back, and so does lr / 255² on both layers.

Why: scaling the inputs by s scales layer 1's pre-activations by s and its weight gradient
by s, so one SGD step moves the pre-activations lr·s² times as far as at s = 1. Layer 1's
initial weights / s, its lr / s² and its weight decay × s² (the same decay per step), with
layer 2 untouched, make the run the s = 1 run again; every fix in the post is a partial
version of that rule.

Measured on the 2-core CPU: one uint8 tensor on the device, batches by randperm + slicing,
converted to float per batch, trains an epoch of 50,000 in about 1.5 s, where the posted
DataLoader + ToTensor pipeline takes about 5 s (see bench/cifar.py).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
import types
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from core import cifar_data, curvature, lrfind, rng
from core import device as device_
from core.case import Case, Cost, Finding
from core.settings import Setting, SettingError
from core.train import RunResult, history_frame, train


def _g(value: float) -> float:
    """A value as the settings' text boxes show it (6 significant digits), so presets round-trip."""
    return float(f"{value:g}")


S = 255.0  # the post's input scale
INV_S, INV_S2 = _g(1 / S), _g(1 / S**2)  # 0.00392157 and 1.53787e-05


@dataclass(frozen=True)
class CifarConfig:
    dataset: str = "cifar10"  # cifar10 (downloaded on first use), folder (your images), synthetic (offline)
    data_root: str = ""  # cifar10: its cache folder ("" = default); folder: the root of train/ and test/
    train_size: int = 0  # the first this-many training images (0 = all: 50,000 for CIFAR-10)
    test_size: int = 0  # the first this-many test images (0 = all: 10,000 for CIFAR-10)
    input_scale: float = 1.0  # the network sees ToTensor()'s pixels in [0, 1] times this: the post's 255
    normalize: str = "none"  # none (as posted) or standardize: per-channel (x - mean) / std
    hidden: int = 300
    bias: bool = False  # the post's layers have no biases
    layer1_init_scale: float = 1.0  # layer 1's initial weights (PyTorch's default init) times this
    layer2_init_scale: float = 1.0
    lr: float = 0.02
    layer1_lr_scale: float = 1.0  # layer 1 learns at lr times this
    layer2_lr_scale: float = 1.0
    layer1_wd_scale: float = 1.0  # layer 1's weight decay is weight_decay times this
    layer2_wd_scale: float = 1.0
    momentum: float = 0.9
    weight_decay: float = 1e-4
    batch_size: int = 250
    epochs: int = 20
    seed: int = 0  # initial weights and batch order (the data set itself is fixed)


AS_POSTED = CifarConfig()
X255 = dataclasses.replace(AS_POSTED, input_scale=S)
PRESETS = {
    "as-posted": AS_POSTED,
    "x255": X255,
    "x255-lr": dataclasses.replace(X255, layer1_lr_scale=INV_S, layer2_lr_scale=INV_S),
    "x255-init-lr": dataclasses.replace(
        X255, layer1_init_scale=INV_S, layer2_init_scale=INV_S, layer1_lr_scale=INV_S, layer2_lr_scale=INV_S
    ),
    "x255-lr2": dataclasses.replace(X255, layer1_lr_scale=INV_S2, layer2_lr_scale=INV_S2),
    # the s² rule: layer 1 starts s times smaller and learns s² times slower, and its weight decay is s² times
    # larger (so lr · weight_decay, the decay per step, is as posted); layer 2 as posted
    "x255-rule": dataclasses.replace(X255, layer1_init_scale=INV_S, layer1_lr_scale=INV_S2, layer1_wd_scale=S**2),
    # ours: standardised inputs (which also makes any input_scale harmless) and biases; on the
    # stand-in's quick view (5,000 images, seed 0) 56.8% against as-posted's 50.6% (lr 0.01: 55.7%)
    "fixed": dataclasses.replace(AS_POSTED, normalize="standardize", bias=True),
}

WHY = {
    "as-posted": "The post's MLP on inputs in [0, 1]: about 50% test accuracy.",
    "x255": "The post's failure: inputs × 255 make each SGD step move layer 1's pre-activations 255² as far.",
    "x255-lr": "The poster's first fix, lr / 255 on both layers: trains again, but only to about 43%.",
    "x255-init-lr": "The poster's second fix: initial weights / 255 and lr / 255; the accuracy comes back.",
    "x255-lr2": "lr / 255² on both layers, which the poster found also works.",
    "x255-rule": "The s² rule: layer 1 starts s times smaller, learns s² times slower, decays s² times more; "
    "it is the as-posted run again.",
    "fixed": "Ours: standardised inputs (any input scale is then harmless) and biases.",
}

# The post's table, in its order, with what the poster reported for each row.
POST_TABLE = {
    "as-posted": "about 50% test accuracy",
    "x255": "no longer converges; gradients grow, outputs all zero",
    "x255-lr": "trains again, but only about 43%",
    "x255-init-lr": "the original accuracy comes back",
    "x255-lr2": "also works (which surprised the poster)",
    "x255-rule": "not in the post: the s² rule",
}
CHANGES = {
    "as-posted": "inputs in [0, 1]",
    "x255": "inputs × 255",
    "x255-lr": "inputs × 255, lr / 255 on both layers",
    "x255-init-lr": "inputs × 255, both layers' initial weights / 255 and lr / 255",
    "x255-lr2": "inputs × 255, lr / 255² on both layers",
    "x255-rule": "inputs × 255, layer 1: initial weights / 255, lr / 255², weight decay × 255²; layer 2 untouched",
}

# What a preset button changes; the data, the budget and the seed stay as the user set them.
DATA_AND_BUDGET = ("dataset", "data_root", "train_size", "test_size", "epochs", "seed")
# The page's first view: 20 epochs of 5,000 images, tested after each epoch on 2,000 (a test
# pass over all 10,000 costs as much as training an epoch of 5,000): ~4 s on the 2-core CPU.
QUICK = types.MappingProxyType({"train_size": 5_000, "test_size": 2_000, "epochs": 20})  # read-only


class _AnyText(tuple):
    """`Setting.choices` for a free-text setting (a path): core.settings treats every string
    setting as a choice, and this 'choice list' contains every string. Empty, so the allowed
    values read 'any value'."""

    def __contains__(self, value: object) -> bool:
        return isinstance(value, str)


SETTINGS = (
    Setting(
        "dataset",
        "cifar10 (downloaded on first use), folder (your images in data_root), synthetic (the offline stand-in)",
        choices=cifar_data.SOURCES,
    ),
    Setting(
        "data_root",
        f"cifar10: the folder for {cifar_data.CIFAR10_FOLDER}/ (empty: ${cifar_data.DATA_DIR_ENV} or "
        "~/.cache/convergence-clinic); folder: the folder that holds train/<class>/… and test/<class>/…. "
        "Typed only, inside the allowed folders (never from a link)",
        choices=_AnyText(),
        in_url=False,
    ),
    Setting("train_size", "train on the first this-many training images (0 = all of them)", lo=0, hi=1_000_000),
    Setting("test_size", "test on the first this-many test images (0 = all of them)", lo=0, hi=1_000_000),
    Setting(
        "input_scale", "multiply ToTensor()'s [0, 1] pixels by this (the post's bug: 255)", lo=0, hi=1e6, lo_open=True
    ),
    Setting("normalize", "none (as posted) or standardize each colour channel", choices=("none", "standardize")),
    Setting("hidden", "hidden units (the post: 300)", lo=1, hi=4096),
    Setting("bias", "give both layers a bias"),
    Setting("layer1_init_scale", "multiply layer 1's initial weights by this", lo=0, hi=1e3, lo_open=True),
    Setting("layer2_init_scale", "multiply layer 2's initial weights by this", lo=0, hi=1e3, lo_open=True),
    Setting("lr", "SGD learning rate", lo=0, hi=10, lo_open=True),
    Setting("layer1_lr_scale", "layer 1 learns at lr times this", lo=0, hi=1e3, lo_open=True),
    Setting("layer2_lr_scale", "layer 2 learns at lr times this", lo=0, hi=1e3, lo_open=True),
    Setting("layer1_wd_scale", "layer 1's weight decay is weight_decay times this (the s² rule: s²)", lo=0, hi=1e6),
    Setting("layer2_wd_scale", "layer 2's weight decay is weight_decay times this", lo=0, hi=1e6),
    Setting("momentum", "SGD momentum", lo=0, hi=0.999),
    Setting("weight_decay", "SGD weight decay (L2 on every parameter)", lo=0, hi=1),
    Setting("batch_size", "images per step; the last batch of an epoch may be smaller", lo=1, hi=10_000),
    Setting("epochs", "passes over the training images", lo=1, hi=200),
    Setting("seed", "random seed for the initial weights and the batch order", lo=0, hi=2**31 - 1),
)


def with_budget(recipe: CifarConfig, config: CifarConfig) -> CifarConfig:
    """`recipe`'s model and optimizer with `config`'s data, budget and seed."""
    return dataclasses.replace(recipe, **{k: getattr(config, k) for k in DATA_AND_BUDGET})


def recipe_name(config: CifarConfig) -> str | None:
    """The preset whose recipe (everything but data, budget and seed) `config` follows, if any."""
    return next((name for name, p in PRESETS.items() if with_budget(p, config) == config), None)


def reference(config: CifarConfig) -> CifarConfig:
    """The as-posted run on the same data and budget: the comparison drawn on every chart."""
    return with_budget(AS_POSTED, config)


# ---------------------------------------------------------------------------- model


def init_params(config: CifarConfig, n_classes: int) -> dict[str, torch.Tensor]:
    """nn.Linear(3072, hidden) and nn.Linear(hidden, n_classes) as PyTorch initialises them
    (weights (out, in) and biases ~ U(±1/sqrt(fan_in)), drawn in nn.Linear's order) from the
    run's own generator, then each layer's weights times its init scale (biases untouched)."""
    g = rng.generator(config.seed, 1)
    params = {}
    sizes = ((cifar_data.PIXELS, config.hidden), (config.hidden, n_classes))
    scales = (config.layer1_init_scale, config.layer2_init_scale)
    for i, ((fan_in, fan_out), scale) in enumerate(zip(sizes, scales, strict=True), start=1):
        bound = 1 / math.sqrt(fan_in)
        params[f"layer{i}.weight"] = torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=g) * scale
        if config.bias:
            params[f"layer{i}.bias"] = torch.empty(fan_out).uniform_(-bound, bound, generator=g)
    return params


def pixel_stats(x: torch.Tensor, chunk: int = 1024) -> torch.Tensor:
    """(2, 3, 1) float64: per-channel mean and std of uint8 images (N, 3072), in pixel units.
    Exact integer sums chunk by chunk: no float copy of the whole set."""
    total = torch.zeros(2, 3, dtype=torch.int64, device=x.device)
    for start in range(0, len(x), chunk):
        c = x[start : start + chunk].view(-1, 3, 1024).to(torch.int32)
        total[0] += c.sum(dim=(0, 2), dtype=torch.int64)
        total[1] += c.square().sum(dim=(0, 2), dtype=torch.int64)
    count = max(1, len(x)) * 1024
    mean = total[0].double() / count
    std = (total[1].double() / count - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)
    return torch.stack([mean, std]).unsqueeze(-1)


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
        x = x.view(-1, 3, 1024).sub_(stats[0]).div_(stats[1]).view(-1, cifar_data.PIXELS)
    return x


class _Linear2(torch.autograd.Function):
    """F.linear for layer 2, with its weight gradient taken as (hᵀ g)ᵀ instead of gᵀ h.

    Why: the same number, but gᵀ h (10 x B @ B x hidden) is summed over the batch in an
    order that depends on the CPU thread count (measured: 1 vs 2 threads differ in the last
    bit), and the thread policy gives a run 1 or 2 threads depending on what else runs. A
    last-bit difference at step 4 is a different run by epoch 10. (hᵀ g) splits its work
    over the hidden units instead; measured bit-identical for 1 and 2 threads, as are the
    other matmuls here (tests/test_cifar.py checks whole runs).
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


# ---------------------------------------------------------------------------- run


@dataclass(frozen=True)
class Data:
    """The images one run trains on: views into the shared uint8 set, never copies."""

    train_x: torch.Tensor  # (n, 3072) uint8
    train_y: torch.Tensor  # (n,)
    test_x: torch.Tensor
    test_y: torch.Tensor
    images: cifar_data.Images

    @functools.cached_property
    def pixels(self) -> torch.Tensor:
        """(2, 3, 1) per-channel mean and std of train_x in pixel units (for `standardize`)."""
        return pixel_stats(self.train_x)


def prepare(config: CifarConfig, device: torch.device) -> Data:
    """The run's training subset and the test set (loading the image set once per process)."""
    images = cifar_data.load(config.dataset, config.data_root, device)
    if config.train_size > len(images.train_y):
        raise SettingError(
            "train_size", f"must be <= {len(images.train_y):,}, the training images of {images.source} (or 0 = all)"
        )
    if config.test_size > len(images.test_y):
        raise SettingError(
            "test_size", f"must be <= {len(images.test_y):,}, the test images of {images.source} (or 0 = all)"
        )
    n, m = config.train_size or len(images.train_y), config.test_size or len(images.test_y)
    return Data(images.train_x[:n], images.train_y[:n], images.test_x[:m], images.test_y[:m], images)


MAX_FLOPS = 40e12  # ~10 posted runs: about 6 minutes on the 2-core CPU


def cost(config: CifarConfig) -> Cost:
    """Seconds on the 2-core CPU: per step a fixed part (the optimizer, the batch's gather and
    conversion: what dominates at batch 1) and the matmuls (6 FLOPs per weight per image, at
    ~120 GFLOP/s, measured), the test pass each epoch, and the data set's first load."""
    n = config.train_size or cifar_data.SYNTHETIC_SIZES[0]  # CIFAR-10 and the stand-in have 50,000
    m = config.test_size or cifar_data.SYNTHETIC_SIZES[1]
    weights = cifar_data.PIXELS * config.hidden + config.hidden * 10
    steps = config.epochs * math.ceil(n / config.batch_size)
    overhead, matmuls = steps * 1e-3, 6 * weights * n * config.epochs / 1.2e11
    test = config.epochs * 2 * weights * m / 1.2e11
    if overhead > matmuls:  # small batches: the number of steps is the cost
        return Cost(1.5 + overhead + matmuls + test, "batch_size", "raise batch_size or lower epochs")
    return Cost(1.5 + overhead + matmuls + test, "epochs")


def check(config: CifarConfig) -> list[str]:
    problems = []
    if len(config.data_root) > 4096 or "\0" in config.data_root:
        problems.append("data_root: must be a folder path (at most 4096 characters)")
    if config.dataset == "folder" and not config.data_root.strip():
        problems.append("data_root: give the folder that holds train/<class>/… and test/<class>/… (dataset = folder)")
    if config.train_size and config.batch_size > config.train_size:
        problems.append(f"batch_size: must be <= train_size ({config.train_size})")
    images = config.train_size or 50_000  # CIFAR-10's and the stand-in's size when 0 (all)
    flops = 4 * (cifar_data.PIXELS * config.hidden + config.hidden * 10) * images * config.epochs
    if flops > MAX_FLOPS:
        problems.append(
            f"epochs: {config.epochs} epochs of {images:,} images through {config.hidden} hidden units is "
            f"{flops / 1e12:.0f} TFLOP, over the {MAX_FLOPS / 1e12:.0f} this app allows (the posted run: 3.7)"
        )
    return problems


def batcher(data: Data, config: CifarConfig, stats, device: torch.device) -> Callable[[int], tuple]:
    """step -> that step's (inputs (B, 3072) float, labels): each epoch a fresh permutation from the
    run's own generator, cut into batches as a shuffling DataLoader cuts them (the last may be smaller)."""
    n, B = len(data.train_y), config.batch_size
    per_epoch = math.ceil(n / B)
    g = rng.generator(config.seed, 2)  # the batch order
    order = [torch.empty(0)]  # this epoch's permutation

    def batch(step: int) -> tuple[torch.Tensor, torch.Tensor]:
        i = step % per_epoch  # the step's batch within its epoch
        if i == 0:
            order[0] = torch.randperm(n, generator=g).to(device)
        idx = order[0][i * B : (i + 1) * B]
        return to_input(data.train_x.index_select(0, idx), config, stats), data.train_y.index_select(0, idx)

    return batch


def run(config: CifarConfig, device: torch.device, on_progress=None) -> RunResult:
    data = prepare(config, device)
    n, B = len(data.train_y), config.batch_size
    stats = input_stats(data, config)
    steps_per_epoch = math.ceil(n / B)  # the last batch may be smaller, as with a DataLoader
    steps = config.epochs * steps_per_epoch

    moves = first_step(config, data, device)
    params = {k: v.to(device).requires_grad_() for k, v in init_params(config, data.images.n_classes).items()}
    optimizer = make_optimizer(params, config)

    batch = batcher(data, config, stats, device)
    correct = torch.zeros(steps, dtype=torch.int64, device=device)  # per step, before its update (as posted)
    record_every = max(5, steps // 200)  # the per-layer records cost a weight copy each: ~1 ms
    dead = torch.zeros(math.ceil(steps / record_every), device=device)  # units silent on the whole batch

    def loss_fn(step: int) -> torch.Tensor:
        x, y = batch(step)
        logits, h = forward(params, x)
        with torch.no_grad():  # no sync: written into device tensors, read at the end
            correct[step] = (logits.argmax(1) == y).sum()
            if step % record_every == 0:
                dead[step // record_every] = (h.amax(0) <= 0).float().mean()
        return F.cross_entropy(logits, y)

    probe = curvature.Probe(
        measure_losses(params, data, config, stats, device),
        list(params.values()),
        optimizer,  # per-layer lrs: the sharpness is preconditioned by each layer's lr / lr
        every=curvature.every_for(steps, SHARPNESS_MEASUREMENTS),
        steps=steps,
        seed=config.seed,
        iters=SHARPNESS_ITERS,
        tol=SHARPNESS_TOL,
    )
    tests: list[dict[str, torch.Tensor]] = []  # the test set after each epoch
    eval_seconds = [0.0]

    def at_check(p) -> None:  # at the end of each epoch (check_every = steps_per_epoch), and between
        if p.step % steps_per_epoch == 0 or p.step == p.total:  # the test set after each epoch only
            t = time.perf_counter()
            tests.append(evaluate(params, data, config, stats))
            device_.synchronize(device)
            eval_seconds[0] += time.perf_counter() - t
        if on_progress is not None:
            on_progress(p)

    start = time.perf_counter()
    history = train(
        {k: p for k, p in params.items() if k.endswith("weight")},  # the per-layer records follow the weights
        optimizer,
        loss_fn,
        steps,
        check_every=steps_per_epoch,
        track_every=record_every,
        on_progress=at_check,
        sharpness=probe,
    )
    device_.synchronize(device)
    train_seconds = time.perf_counter() - start - eval_seconds[0] - probe.seconds
    if history.diverged_at is not None or not tests:  # stopped mid-epoch: test where it stopped
        tests.append(evaluate(params, data, config, stats))

    spe, steps_run = steps_per_epoch, history.steps_run
    epoch_of_step = np.arange(steps_run) // spe
    images_seen = np.tile(_batch_sizes(n, B), config.epochs)[:steps_run]
    per_epoch = {
        "correct": np.bincount(epoch_of_step, weights=correct[:steps_run].cpu().numpy(), minlength=len(tests)),
        "seen": np.bincount(epoch_of_step, weights=images_seen, minlength=len(tests)),
        "loss": np.bincount(epoch_of_step, weights=history.loss, minlength=len(tests)),
        "steps": np.bincount(epoch_of_step, minlength=len(tests)),
    }
    with np.errstate(invalid="ignore", divide="ignore"):
        epochs = pd.DataFrame(
            {
                "epoch": np.arange(1, len(tests) + 1),
                "test_accuracy": [float(t["summary"][0]) for t in tests],
                "test_loss": [float(t["summary"][1]) for t in tests],
                "train_accuracy": per_epoch["correct"] / per_epoch["seen"],  # as the post counts it
                "train_loss": per_epoch["loss"] / per_epoch["steps"],
            }
        )
    final, last = tests[-1], epochs.iloc[-1]
    no_records = pd.DataFrame(columns=["step", "layer", "grad_norm", "update_ratio"])  # diverged at step 1
    layers = history.layers if history.layers is not None else no_records
    layers = layers.assign(layer=layers["layer"].map({"layer1.weight": "layer 1", "layer2.weight": "layer 2"}))
    recorded = np.arange(len(dead)) * record_every + 1
    dead_frame = pd.DataFrame({"step": recorded, "dead_share": dead.cpu().double().numpy()})
    classes = data.images.classes
    metrics = {
        "test_accuracy": float(final["summary"][0]),
        "train_accuracy": float(last["train_accuracy"]),
        "final_loss": float(last["train_loss"]),  # mean over the last epoch's steps
        "chance_loss": math.log(len(classes)),
        "classes": len(classes),
        "diverged": history.diverged_at is not None,
        "diverged_at": history.diverged_at,
        "steps_run": steps_run,
        "epochs_run": steps_run / spe,
        "dead_relu_fraction": float(final["dead"]),
        "logit_spread": float(final["logit_spread"]),
        "samples_per_second": float(images_seen.sum() / train_seconds) if train_seconds > 0 else math.nan,
        "dataset": data.images.source,
        "train_size": n,
        "test_size": len(data.test_y),
        "first_step_move_ratio": moves["move_ratio"],
        "first_step_relative_move": moves["relative_move"],
        "initial_logit_ratio": moves["logit_ratio"],
    }
    sharp = probe.frame(steps_run)
    metrics |= curvature.metrics(sharp, probe.limit)
    frames = {
        "sharpness": sharp,
        "epochs": epochs,
        "layers": layers,
        "dead": dead_frame[dead_frame["step"] <= steps_run],
        "samples": _samples(data, final["first"].cpu().numpy()),
        "rule": rule_sweep(config, device),  # the s² rule measured on these data and seed (shared, read-only)
    }
    history_table = history_frame(history, epoch=epoch_of_step + 1, sharpness=curvature.column(sharp, steps_run))
    return RunResult(metrics=metrics, history=history_table, frames=frames, device=str(device))


SHARPNESS_MEASUREMENTS = 6  # steps whose batch sharpness is measured (every k-th, and the first and last)
SHARPNESS_BATCHES = 2  # fixed training batches it averages over
SHARPNESS_ITERS = 8  # power iterations per batch at most (warm-started from the last measurement's vector)
SHARPNESS_TOL = 3e-3  # stop when the estimate moves by less than this (relative)


def measure_losses(params, data: Data, config: CifarConfig, stats, device: torch.device) -> list[Callable]:
    """The batch sharpness's losses: cross-entropy on SHARPNESS_BATCHES fixed batches of the
    training set (drawn once from the run's stream 3, so the same images at every measurement)."""
    n, B = len(data.train_y), config.batch_size
    order = torch.randperm(n, generator=rng.generator(config.seed, 3))[: SHARPNESS_BATCHES * B].to(device)
    batches = [order[i : i + B] for i in range(0, len(order), B)]

    def loss_on(idx: torch.Tensor) -> Callable[[], torch.Tensor]:
        def loss() -> torch.Tensor:
            x = to_input(data.train_x.index_select(0, idx), config, stats)
            return F.cross_entropy(forward(params, x)[0], data.train_y.index_select(0, idx))

        return loss

    return [loss_on(idx) for idx in batches]


@torch.no_grad()
def evaluate(params, data: Data, config: CifarConfig, stats, chunk: int = 2500) -> dict[str, torch.Tensor]:
    """The test set in chunks: accuracy and mean loss (as a (2,) tensor, no sync), the share
    of hidden units that never fire, the logits' spread, and the first 24 predictions."""
    n = len(data.test_y)
    totals = torch.zeros(3, dtype=torch.float64, device=data.test_y.device)  # correct, loss sum, logit sq sum
    fires = torch.zeros(config.hidden, dtype=torch.bool, device=data.test_y.device)
    first = None
    for start in range(0, n, chunk):
        x = to_input(data.test_x[start : start + chunk], config, stats)
        y = data.test_y[start : start + chunk]
        logits, h = forward(params, x)
        totals[0] += (logits.argmax(1) == y).sum()
        totals[1] += F.cross_entropy(logits, y, reduction="sum").double()
        totals[2] += (logits - logits.mean(1, keepdim=True)).double().square().sum()
        fires |= h.amax(0) > 0
        if first is None:
            first = logits[:24].argmax(1)
    return {
        "summary": torch.stack([totals[0] / n, totals[1] / n]),
        "dead": 1 - fires.double().mean(),
        "logit_spread": (totals[2] / (n * data.images.n_classes)).sqrt(),
        "first": first,
    }


def _batch_sizes(n: int, B: int) -> np.ndarray:
    sizes = np.full(math.ceil(n / B), B)
    sizes[-1] = n - B * (len(sizes) - 1)
    return sizes


def _samples(data: Data, predicted: np.ndarray) -> pd.DataFrame:
    """The first test images, their true and predicted classes, and each image as a PNG."""
    classes, k = data.images.classes, len(predicted)
    truth = data.test_y[:k].cpu().numpy()
    return pd.DataFrame(
        {
            "slot": np.arange(k),
            "true": [classes[i] for i in truth],
            "predicted": [classes[i] for i in predicted],
            "correct": predicted == truth,
            "image": [png_uri(img) for img in data.test_x[:k].cpu()],
        }
    )


def png_uri(x: torch.Tensor, zoom: int = 2) -> str:
    """One (3072,) uint8 image as a PNG data URI, enlarged `zoom` times without smoothing."""
    import base64
    import io

    from PIL import Image

    hwc = x.view(3, 32, 32).permute(1, 2, 0).numpy()
    img = Image.fromarray(hwc).resize((32 * zoom, 32 * zoom), Image.Resampling.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


# ---------------------------------------------------------------------------- the range test

LR_RANGE = (1e-7, 10.0)  # from far below lr / 255² on the posted scale to far above any stable step


def lr_find(config: CifarConfig, device: torch.device, on_progress=None) -> RunResult:
    """The learning-rate range test on these settings: 300 batches of the run's own data in
    its own order, the rate (both layers, keeping their lr scales' ratio) growing from 1e-7 to 10."""
    data = prepare(config, device)
    stats = input_stats(data, config)
    params = {k: v.to(device).requires_grad_() for k, v in init_params(config, data.images.n_classes).items()}
    optimizer = make_optimizer(params, config)
    batch = batcher(data, config, stats, device)

    def loss_fn(step: int) -> torch.Tensor:
        x, y = batch(step)
        return F.cross_entropy(forward(params, x)[0], y)

    lo, hi = LR_RANGE
    return lrfind.range_test(
        params, optimizer, loss_fn, base_lr=config.lr, lr_min=lo, lr_max=hi, steps=300, on_progress=on_progress
    )


# ---------------------------------------------------------------------------- the s² rule, measured

SCALES = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 255.0)


def one_step(config: CifarConfig, data: Data, idx: torch.Tensor, device: torch.device) -> torch.Tensor:
    """(3,): RMS of layer 1's pre-activation change in one SGD step from the initial weights,
    RMS of the pre-activations themselves, and RMS of the initial logits, on one batch."""
    params = {k: v.to(device).requires_grad_() for k, v in init_params(config, data.images.n_classes).items()}
    x = to_input(data.train_x.index_select(0, idx), config, input_stats(data, config))
    y = data.train_y.index_select(0, idx)
    w1, b1 = params["layer1.weight"], params.get("layer1.bias")
    z1 = F.linear(x, w1, b1).detach()
    logits, _ = forward(params, x)
    F.cross_entropy(logits, y).backward()
    make_optimizer(params, config).step()
    with torch.no_grad():
        moved = F.linear(x, w1, b1) - z1
        return torch.stack([moved.square().mean().sqrt(), z1.square().mean().sqrt(), logits.square().mean().sqrt()])


def first_batch(config: CifarConfig, n: int, device: torch.device) -> torch.Tensor:
    """The indices of the run's first batch (the same draw as its first epoch's permutation)."""
    return torch.randperm(n, generator=rng.generator(config.seed, 2))[: config.batch_size].to(device)


def first_step(config: CifarConfig, data: Data, device: torch.device) -> dict[str, float]:
    """This config's first SGD step against the as-posted run's, on the run's first batch:
    how far it moves layer 1's pre-activations (ratio, and relative to their size), and
    how large the initial logits are (ratio)."""
    idx = first_batch(config, len(data.train_y), device)
    base_cfg = reference(config)
    base = one_step(base_cfg, data, idx, device)
    this = one_step(config, data, idx, device) if config != base_cfg else base
    b, t = base.cpu().double().numpy(), this.cpu().double().numpy()
    return {"move_ratio": float(t[0] / b[0]), "relative_move": float(t[0] / t[1]), "logit_ratio": float(t[2] / b[2])}


RECIPES = ("inputs × s", "inputs × s, lr / s", "inputs × s, the s² rule")


def rule_sweep(config: CifarConfig, device: torch.device) -> pd.DataFrame:
    """The s² rule, measured: over input scales s, how far the first SGD step moves layer 1's
    pre-activations compared with s = 1, for three recipes on the as-posted model with this
    config's data and seed: inputs × s alone, with lr / s on both layers, and with the rule
    (layer 1's initial weights / s, its lr / s², its weight decay × s²). ~25 single steps, cached per data and seed.
    The frame is shared: treat it as read-only."""
    return _rule_sweep(reference(config), device)


@functools.lru_cache(maxsize=16)
def _rule_sweep(base_cfg: CifarConfig, device: torch.device) -> pd.DataFrame:
    data = prepare(base_cfg, device)
    idx = first_batch(base_cfg, len(data.train_y), device)
    base = one_step(base_cfg, data, idx, device)
    rows = []
    for s in SCALES:
        recipes = (
            dataclasses.replace(base_cfg, input_scale=s),
            dataclasses.replace(base_cfg, input_scale=s, layer1_lr_scale=1 / s, layer2_lr_scale=1 / s),
            dataclasses.replace(
                base_cfg, input_scale=s, layer1_init_scale=1 / s, layer1_lr_scale=1 / s**2, layer1_wd_scale=s**2
            ),
        )
        for name, c in zip(RECIPES, recipes, strict=True):
            rows.append((s, name, base if s == 1 else one_step(c, data, idx, device)))
    values = torch.stack([r for _, _, r in rows]).cpu().double().numpy()  # (rows, 3)
    b = base.cpu().double().numpy()
    return pd.DataFrame(
        {
            "scale": [s for s, _, _ in rows],
            "recipe": [name for _, name, _ in rows],
            "move_ratio": values[:, 0] / b[0],
            "relative_move": values[:, 0] / values[:, 1],
            "predicted": [s**2 if name == RECIPES[0] else s if name == RECIPES[1] else 1.0 for s, name, _ in rows],
        }
    )


# ---------------------------------------------------------------------------- the post's table


def table_configs(config: CifarConfig) -> dict[str, CifarConfig]:
    """The post's rows with this config's data, budget and seed."""
    return {name: with_budget(PRESETS[name], config) for name in POST_TABLE}


def table_frame(results: dict[str, RunResult]) -> pd.DataFrame:
    """One row per preset of the post's table: what changes, what the post reported, and what
    the re-run measured (test accuracy, final loss, dead ReLUs, the first step's move)."""
    rows = []
    for name, r in results.items():
        m = r.metrics
        rows.append(
            {
                "preset": name,
                "changes": CHANGES[name],
                "post says": POST_TABLE[name],
                "test_accuracy": m["test_accuracy"],
                "final_loss": m["final_loss"],
                "dead_relus": m["dead_relu_fraction"],
                "first_step_move": m["first_step_move_ratio"],
                "initial_logits": m["initial_logit_ratio"],
                "classes": m["classes"],
            }
        )
    return pd.DataFrame(rows)


# ---------------------------------------------------------------------------- diagnosis


def diagnose(config: CifarConfig, result: RunResult) -> list[Finding]:
    """The measured evidence for each problem in `config`, with the setting change that fixes it."""
    m = result.metrics
    found = []
    s = config.input_scale
    chance = m["chance_loss"]
    collapsed = math.isfinite(m["final_loss"]) and abs(m["final_loss"] - chance) < 0.02
    rule_holds = (
        math.isclose(config.layer1_init_scale * s, 1, rel_tol=1e-4)
        and math.isclose(config.layer1_lr_scale * s * s, 1, rel_tol=1e-4)
        and math.isclose(config.layer1_wd_scale, s * s, rel_tol=1e-4)
        and (config.layer2_init_scale, config.layer2_lr_scale, config.layer2_wd_scale) == (1, 1, 1)
    )
    if s != 1 and config.normalize == "none" and not rule_holds:
        found.append(
            Finding(
                "scaled-input",
                f"Inputs × {s:g}: the first step moves layer 1 {m['first_step_move_ratio']:,.3g}× as far",
                f"Multiplying the inputs by s = {s:g} multiplies layer 1's pre-activations and its weight "
                f"gradient by s, so an SGD step moves the pre-activations about lr·s² times as far (s² = "
                f"{s * s:,.0f}). Measured on the first batch with these settings: {m['first_step_move_ratio']:,.3g}× "
                f"the as-posted move, and the initial logits are {m['initial_logit_ratio']:,.3g}× as large. "
                f"Layer 1's initial weights / s, its lr / s² and its weight decay × s² (the same decay per "
                "step), layer 2 untouched, make it the s = 1 run again.",
                {
                    "layer1_init_scale": _g(1 / s),
                    "layer1_lr_scale": _g(1 / s**2),
                    "layer1_wd_scale": _g(s**2),
                    "layer2_init_scale": 1.0,
                    "layer2_lr_scale": 1.0,
                    "layer2_wd_scale": 1.0,
                },
            )
        )
    if collapsed:
        found.append(
            Finding(
                "collapsed",
                "The network has collapsed to a constant guess",
                f"The training loss ends at {m['final_loss']:.4f}, the loss of a uniform guess over "
                f"{m['classes']} classes (ln {m['classes']} = {chance:.4f}); test accuracy {m['test_accuracy']:.1%}. "
                f"{m['dead_relu_fraction']:.0%} of the hidden units never fire on any test image and the logits "
                f"spread by {m['logit_spread']:.3g}: every image gets the same answer. Standardised inputs keep "
                "the first steps in range whatever the input scale.",
                {"normalize": "standardize"},
            )
        )
    elif m["dead_relu_fraction"] > 0.5:
        found.append(
            Finding(
                "dead-relus",
                "Most hidden units are dead",
                f"{m['dead_relu_fraction']:.0%} of the {config.hidden} hidden units never fire on any test image: "
                "their weights get no gradient and they cannot come back. Steps that were too big early on "
                "pushed them there.",
                {"normalize": "standardize"},
            )
        )
    if config.normalize == "none" and not collapsed:
        found.append(
            Finding(
                "uncentred",
                "The inputs are not centred",
                f"Every pixel the network sees is ≥ 0 (ToTensor() gives [0, 1], times {s:g}), so all of a hidden "
                "unit's weight gradients share one sign per step and the weights zig-zag toward their goal. "
                "Per-channel standardisation centres them (and makes any input scale harmless); biases let "
                "units move their thresholds.",
                {"normalize": "standardize", "bias": True},
            )
        )
    above = curvature.above_line(m, config.lr)
    if above is not None:
        evidence, lr = above
        found.append(Finding("above-stability-line", "lr above the stability line", evidence, {"lr": lr}))
    return found


def reshape_note(config: CifarConfig, n: int) -> str | None:
    """The post's second, latent bug: `x.reshape(250, -1)` in forward. When would it bite?"""
    last = n % config.batch_size
    if config.batch_size != 250:
        return (
            f"The posted forward pass hard-codes `x.reshape(250, -1)`: with batch_size {config.batch_size} it "
            f"raises RuntimeError on the first batch (a {config.batch_size}×3×32×32 batch is not 250 rows). "
            "Here each batch is flattened as `x.reshape(len(x), -1)`."
        )
    if last:
        return (
            f"The posted forward pass hard-codes `x.reshape(250, -1)`: with {n:,} training images the last "
            f"batch of each epoch holds {last}, and the posted code raises RuntimeError there. Here each "
            "batch is flattened as `x.reshape(len(x), -1)`."
        )
    return None


CASE = Case(
    name="cifar",
    short="CIFAR ×255",
    icon=":material/image:",
    emoji="🖼️",
    why=WHY,
    title="A CIFAR-10 MLP stops learning when inputs are multiplied by 255",
    symptom="~50% test accuracy with inputs in [0, 1]; with inputs × 255 it no longer converges, lr / 255 gets 43%.",
    page="pages/2_CIFAR_x255.py",
    config_cls=CifarConfig,
    presets=PRESETS,
    settings=SETTINGS,
    run=run,
    check=check,
    cost=cost,
    heavy=lambda config: True,  # big matmuls: worth the cores (core/threads.py)
    reference=reference,
    first_view=QUICK,  # the page opens on the quick view; links carry a different budget explicitly
    recipe=recipe_name,
    # a candidate rate is checked on a quarter of the epochs (at least one)
    trial=lambda config, lr: dataclasses.replace(config, lr=lr, epochs=max(1, config.epochs // 4)),
)
