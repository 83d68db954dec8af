"""Case 2's run: a CIFAR-10 MLP stops learning when its inputs are multiplied by 255.

The poster reports ~50% test accuracy; with `inputs * 255` the net no longer learns
(outputs all zero), lr / 255 gives ~43%, initial weights / 255 plus lr / 255 brings the
accuracy back, and so does lr / 255² on both layers (rule.py says why).

Measured on the 2-core CPU: one uint8 tensor on the device, batches by randperm + slicing,
converted to float per batch, trains an epoch of 50,000 in about 1.5 s, where the posted
DataLoader + ToTensor pipeline takes about 5 s (see bench.py).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from core import curvature, lrfind, rng
from core import device as device_
from core.cases.cifar.cache import Data, prepare
from core.cases.cifar.config import CifarConfig
from core.cases.cifar.model import forward, init_params, input_stats, make_optimizer, to_input
from core.cases.cifar.rule import first_step, rule_sweep
from core.train import RunResult, history_frame, train


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
