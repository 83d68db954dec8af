"""Convergence Clinic, case 2: a CIFAR-10 MLP stops learning when inputs are multiplied by 255.

A standalone reproduction of one run with plain PyTorch (and numpy): nothing from the
Convergence Clinic project. Run it with `python this_file.py`; it prints the run's final
metrics as one JSON line, the same metrics the app shows. `main(config)` returns the run's
history (the loss of every step) and those metrics: the app's tests use it as their oracle.

The post's network: nn.Linear(3072, hidden) -> ReLU -> nn.Linear(hidden, 10), trained with
SGD (momentum, weight decay) and cross-entropy on ToTensor()'s pixels in [0, 1] times
input_scale (the post's bug: 255). The images are held once as uint8 and converted to float
one batch at a time; each epoch's batches are cut from a fresh permutation, as a shuffling
DataLoader cuts them.

Data: dataset "cifar10" reads the python batch files from <data_root>/cifar-10-batches-py
(data_root empty: $CLINIC_DATA_DIR, else ~/.cache/convergence-clinic) and downloads them with
torchvision when they are missing; "folder" reads <data_root>/train/<class>/... and
<data_root>/test/<class>/... with torchvision's ImageFolder, resized to 32x32 RGB; "synthetic"
draws the app's offline stand-in (10 classes of generated shapes), the same images the app uses.
"""

import functools
import json
import math
import os
import pickle
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

# --- settings: written by Convergence Clinic's export
CONFIG = {
    "dataset": "cifar10",
    "data_root": "",
    "train_size": 0,
    "test_size": 0,
    "input_scale": 1.0,
    "normalize": "none",
    "hidden": 300,
    "bias": False,
    "layer1_init_scale": 1.0,
    "layer2_init_scale": 1.0,
    "lr": 0.02,
    "layer1_lr_scale": 1.0,
    "layer2_lr_scale": 1.0,
    "layer1_wd_scale": 1.0,
    "layer2_wd_scale": 1.0,
    "momentum": 0.9,
    "weight_decay": 0.0001,
    "batch_size": 250,
    "epochs": 20,
    "seed": 0,
}
# --- end of settings

PIXELS = 3 * 32 * 32


def generator(seed, stream):
    """One CPU generator per purpose: stream 0 draws data, 1 the weights, 2 the batch order."""
    return torch.Generator().manual_seed(seed * 1000 + stream)


# --- data: (train_x, train_y, test_x, test_y, classes, source); images (N, 3072) uint8, R, G, B planes


def cifar10(data_root):
    root = Path(data_root).expanduser() if data_root.strip() else None
    if root is None:
        env = os.environ.get("CLINIC_DATA_DIR", "").strip()
        root = Path(env).expanduser() if env else Path.home() / ".cache" / "convergence-clinic"
    folder = root / "cifar-10-batches-py"
    if not (folder / "test_batch").is_file():
        from torchvision.datasets import CIFAR10

        CIFAR10(str(root), train=True, download=True)

    def batch(name):
        with open(folder / name, "rb") as f:
            d = pickle.load(f, encoding="latin1")
        return np.asarray(d["data"], dtype=np.uint8), np.asarray(d["labels"], dtype=np.int64)

    parts = [batch(f"data_batch_{i}") for i in range(1, 6)]
    test_x, test_y = batch("test_batch")
    with open(folder / "batches.meta", "rb") as f:
        classes = pickle.load(f, encoding="latin1")["label_names"]
    train_x, train_y = np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
    as_t = torch.from_numpy
    return as_t(train_x), as_t(train_y), as_t(test_x), as_t(test_y), classes, "cifar10"


def image_folder(data_root):
    from PIL import Image
    from torchvision.datasets import ImageFolder

    def load_rgb(path):
        with Image.open(path) as img:
            return img.convert("RGB").resize((32, 32), Image.Resampling.BILINEAR)

    def split(name):
        ds = ImageFolder(str(Path(data_root).expanduser() / name), loader=load_rgb)
        hwc = np.stack([np.asarray(load_rgb(path)) for path, _ in ds.samples])
        x = torch.from_numpy(np.ascontiguousarray(hwc.transpose(0, 3, 1, 2))).reshape(len(hwc), PIXELS)
        return x, torch.tensor(ds.targets, dtype=torch.int64), ds.classes

    train_x, train_y, classes = split("train")
    test_x, test_y, _ = split("test")
    return train_x, train_y, test_x, test_y, classes, "folder"


COLOURS = torch.tensor(
    [
        [0.85, 0.25, 0.20],
        [0.20, 0.55, 0.85],
        [0.90, 0.75, 0.20],
        [0.30, 0.70, 0.30],
        [0.65, 0.35, 0.75],
        [0.90, 0.50, 0.15],
        [0.25, 0.75, 0.75],
        [0.75, 0.75, 0.75],
        [0.55, 0.35, 0.20],
        [0.85, 0.40, 0.60],
    ]
)
SHAPES = ("disc", "ring", "square", "h-bar", "v-bar", "cross", "stripes", "pair", "triangle", "dots")


def mask(kind, u, v, angle):
    """A soft shape mask in [0, 1]; u, v: coordinates relative to the shape's centre and size."""

    def inside(t):
        return torch.sigmoid(8.0 * t)

    r = torch.hypot(u, v)
    if kind == 0:
        return inside(1 - r)
    if kind == 1:
        return inside(0.28 - (r - 0.75).abs())
    if kind == 2:
        return inside(0.85 - torch.maximum(u.abs(), v.abs()))
    if kind == 3:
        return inside(0.35 - v.abs()) * inside(1.3 - u.abs())
    if kind == 4:
        return inside(0.35 - u.abs()) * inside(1.3 - v.abs())
    if kind == 5:
        return torch.maximum(
            inside(0.28 - v.abs()) * inside(1.1 - u.abs()), inside(0.28 - u.abs()) * inside(1.1 - v.abs())
        )
    if kind == 6:
        return (0.5 + 0.5 * torch.cos(5.0 * (u * torch.cos(angle) + v * torch.sin(angle)))) * inside(1.3 - r)
    if kind == 7:
        return torch.maximum(inside(0.45 - torch.hypot(u - 0.6, v)), inside(0.45 - torch.hypot(u + 0.6, v)))
    if kind == 8:
        return inside(0.75 - v) * inside(0.6 * (v + 0.95) - u.abs())
    return (0.5 + 0.5 * torch.cos(4.0 * u)) * (0.5 + 0.5 * torch.cos(4.0 * v)) * inside(1.2 - r)


def synthetic_images(n, seed, chunk=2000):
    g = generator(seed, 0)
    labels = (torch.arange(n) % 10)[torch.randperm(n, generator=g)]
    bank = torch.randn(2048, 3, 1024, generator=g).mul_(0.08 * 255)  # pixel noise, rows picked at random
    out = torch.empty(n, PIXELS, dtype=torch.uint8)
    grid = torch.linspace(-1, 1, 32)
    yy, xx = grid.view(1, 32, 1), grid.view(1, 1, 32)
    for start in range(0, n, chunk):
        y = labels[start : start + chunk]
        m = len(y)

        def draw(*shape, lo=0.0, hi=1.0, m=m):
            return torch.rand(m, *shape, generator=g) * (hi - lo) + lo

        cx, cy = draw(1, 1, lo=-0.45, hi=0.45), draw(1, 1, lo=-0.45, hi=0.45)
        size = draw(1, 1, lo=0.3, hi=0.6)
        angle = draw(1, 1, lo=0.0, hi=math.pi)
        u, v = (xx - cx) / size, (yy - cy) / size
        shape = torch.empty(m, 32, 32)
        for kind in range(10):
            pick = (y == kind).nonzero().squeeze(1)
            if len(pick):
                shape[pick] = mask(kind, u[pick], v[pick], angle[pick])
        fg = (COLOURS[y] + 0.22 * torch.randn(m, 3, generator=g)).clamp_(0, 1).mul_(255).view(m, 3, 1)
        bg = draw(3, 1, lo=0.05 * 255, hi=0.85 * 255).add_(0.5)
        slope = draw(3, 1, lo=-0.25 * 255, hi=0.25 * 255)
        direction = draw(1, 1, lo=0, hi=2 * math.pi)
        ramp = xx * torch.cos(direction) + yy * torch.sin(direction)
        shape, ramp = shape.view(m, 1, 1024), ramp.view(m, 1, 1024)
        img = torch.addcmul(bg, slope, ramp * (1 - shape))
        img.addcmul_(fg - bg, shape)
        img.add_(bank[torch.randint(len(bank), (m,), generator=g)])
        out[start : start + m] = img.clamp_(0, 255).to(torch.uint8).view(m, PIXELS)
    return out, labels


@functools.lru_cache(maxsize=1)  # made once per process (~2 s): main() may be called many times
def synthetic():
    train_x, train_y = synthetic_images(50_000, 2020)
    test_x, test_y = synthetic_images(10_000, 2021)
    return train_x, train_y, test_x, test_y, SHAPES, "synthetic stand-in"


# --- the network


def to_input(x, c, stats):
    """uint8 (B, 3072) -> ToTensor()'s x / 255, times input_scale, standardised if asked."""
    x = x.float().div_(255) * c["input_scale"]
    if stats is not None:
        x = ((x.view(-1, 3, 1024) - stats[0]) / stats[1]).view(-1, PIXELS)
    return x


def channel_stats(x, c):
    """Per-channel mean and std of the scaled training inputs, from exact integer sums."""
    planes = x.view(-1, 3, 1024).to(torch.int64)
    count = len(x) * 1024
    mean = planes.sum(dim=(0, 2)).double() / count
    std = (planes.square().sum(dim=(0, 2)).double() / count - mean.square()).clamp_min(0).sqrt().clamp_min(1e-3)
    return (torch.stack([mean, std]).unsqueeze(-1) * (c["input_scale"] / 255)).float()


def main(c):
    train_x, train_y, test_x, test_y, classes, source = {"cifar10": lambda: cifar10(c["data_root"]),
                                                         "folder": lambda: image_folder(c["data_root"]),
                                                         "synthetic": synthetic}[c["dataset"]]()  # fmt: skip
    n, m = c["train_size"] or len(train_y), c["test_size"] or len(test_y)
    train_x, train_y, test_x, test_y = train_x[:n], train_y[:n], test_x[:m], test_y[:m]
    stats = channel_stats(train_x, c) if c["normalize"] == "standardize" else None

    g = generator(c["seed"], 1)  # nn.Linear's default init, in its order, then each layer's scale
    layers = []
    for fan_in, fan_out, scale in ((PIXELS, c["hidden"], c["layer1_init_scale"]),
                                   (c["hidden"], len(classes), c["layer2_init_scale"])):  # fmt: skip
        bound = 1 / math.sqrt(fan_in)
        w = (torch.empty(fan_out, fan_in).uniform_(-bound, bound, generator=g) * scale).requires_grad_()
        b = torch.empty(fan_out).uniform_(-bound, bound, generator=g).requires_grad_() if c["bias"] else None
        layers.append((w, b))
    groups = [
        {
            "params": [t for t in layer if t is not None],
            "lr": c["lr"] * c[f"layer{i}_lr_scale"],
            "weight_decay": c["weight_decay"] * c[f"layer{i}_wd_scale"],
        }
        for i, layer in enumerate(layers, start=1)
    ]
    opt = torch.optim.SGD(groups, lr=c["lr"], momentum=c["momentum"], weight_decay=c["weight_decay"], fused=True)

    def forward(x):
        h = F.linear(x, *layers[0]).relu()
        return F.linear(h, *layers[1]), h

    B = c["batch_size"]  # the posted forward's `x.reshape(250, -1)` is `reshape(len(x), -1)` here
    per_epoch = math.ceil(n / B)
    order = generator(c["seed"], 2)
    losses, correct, seen, diverged_at = [], [], [], None
    for step in range(c["epochs"] * per_epoch):
        i = step % per_epoch
        if i == 0:
            perm = torch.randperm(n, generator=order)
        idx = perm[i * B : (i + 1) * B]
        y = train_y[idx]
        logits, _ = forward(to_input(train_x[idx], c, stats))
        loss = F.cross_entropy(logits, y)
        if not math.isfinite(loss.item()):
            diverged_at = step + 1
            break
        losses.append(loss.item())
        correct.append((logits.argmax(1) == y).sum().item())  # before the update, as the post counts
        seen.append(len(idx))
        opt.zero_grad()
        loss.backward()
        opt.step()

    with torch.no_grad():
        logits, h = forward(to_input(test_x, c, stats))
        test_accuracy = (logits.argmax(1) == test_y).double().mean().item()
        dead = 1 - (h.amax(0) > 0).double().mean().item()  # units that never fire on a test image
    last = slice((len(losses) - 1) // per_epoch * per_epoch, None)  # the last epoch's steps
    metrics = {
        "test_accuracy": test_accuracy,
        "train_accuracy": sum(correct[last]) / sum(seen[last]) if losses else None,
        "final_loss": float(np.mean(losses[last])) if losses else None,
        "diverged": diverged_at is not None,
        "steps_run": len(losses),
        "epochs_run": len(losses) / per_epoch,
        "dead_relu_fraction": dead,
        "dataset": source,
        "train_size": n,
        "test_size": m,
    }
    history = {"step": list(range(1, len(losses) + 1)), "loss": losses}
    return history, metrics


if __name__ == "__main__":
    print(json.dumps(main(CONFIG)[1]))
