"""Case 2's offline stand-in for CIFAR-10: 10 classes of generated 32×32 colour images, 50,000
for training and 10,000 for testing like CIFAR-10, made in code from a fixed seed (the same
images everywhere: the app, the CLI, the tests and the exported script)."""

from __future__ import annotations

import math

import torch

from core import rng
from core.cases.cifar.data import LABELS, PIXELS, SYNTHETIC_SEED, SYNTHETIC_SIZES, Images

# Each class is a shape (how its mask is drawn) and a typical foreground colour; every image
# varies its position, size, colours, background gradient and noise. An MLP on raw pixels
# learns the colours and the rough layout, not the shapes under translation: like CIFAR-10,
# it ends well above chance and well below 100%.
SYNTHETIC_CLASSES = ("disc", "ring", "square", "h-bar", "v-bar", "cross", "stripes", "pair", "triangle", "dots")
_COLOURS = torch.tensor(
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


def _mask(kind: int, u: torch.Tensor, v: torch.Tensor, angle: torch.Tensor) -> torch.Tensor:
    """Soft shape mask in [0, 1]: u, v (n, 32, 32) are coordinates relative to the shape's
    centre in units of its size; angle (n, 1, 1) turns the textured classes."""
    k = 8.0  # edge sharpness

    def inside(t):  # soft step: 1 where t > 0
        return torch.sigmoid(k * t)

    if kind == 0:  # disc
        return inside(1 - torch.hypot(u, v))
    if kind == 1:  # ring
        return inside(0.28 - (torch.hypot(u, v) - 0.75).abs())
    if kind == 2:  # square
        return inside(0.85 - torch.maximum(u.abs(), v.abs()))
    if kind == 3:  # horizontal bar
        return inside(0.35 - v.abs()) * inside(1.3 - u.abs())
    if kind == 4:  # vertical bar
        return inside(0.35 - u.abs()) * inside(1.3 - v.abs())
    if kind == 5:  # cross
        bar = 0.28
        return torch.maximum(
            inside(bar - v.abs()) * inside(1.1 - u.abs()), inside(bar - u.abs()) * inside(1.1 - v.abs())
        )
    if kind == 6:  # stripes in a soft window
        t = u * torch.cos(angle) + v * torch.sin(angle)
        return (0.5 + 0.5 * torch.cos(5.0 * t)) * inside(1.3 - torch.hypot(u, v))
    if kind == 7:  # a pair of blobs
        return torch.maximum(inside(0.45 - torch.hypot(u - 0.6, v)), inside(0.45 - torch.hypot(u + 0.6, v)))
    if kind == 8:  # triangle, apex up
        return inside(0.75 - v) * inside(0.6 * (v + 0.95) - u.abs())
    # dots on a grid
    return (0.5 + 0.5 * torch.cos(4.0 * u)) * (0.5 + 0.5 * torch.cos(4.0 * v)) * inside(1.2 - torch.hypot(u, v))


def synthetic(n: int, seed: int, chunk: int = 2000) -> tuple[torch.Tensor, torch.Tensor]:
    """n synthetic images (n, 3072) uint8 and their labels (n,), balanced over the 10 classes
    in a random order, from a generator of their own. Made in chunks, so the float working
    set stays at `chunk` images (25 MB) whatever n is; about 2 s for 60,000 on one core."""
    g = rng.generator(seed, 0)
    labels = (torch.arange(n) % 10)[torch.randperm(n, generator=g)]
    # pixel noise: rows of one bank, picked at random (drawing 184 M normals would take seconds)
    bank = torch.randn(2048, 3, 1024, generator=g).mul_(0.08 * 255)
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
        u, v = (xx - cx) / size, (yy - cy) / size  # (m, 32, 32)
        mask = torch.empty(m, 32, 32)
        for kind in range(10):
            pick = (y == kind).nonzero().squeeze(1)
            if len(pick):
                mask[pick] = _mask(kind, u[pick], v[pick], angle[pick])
        # in 0-255 units: background colour + slope * ramp, blended into the shape's colour by the mask
        fg = (_COLOURS[y] + 0.22 * torch.randn(m, 3, generator=g)).clamp_(0, 1).mul_(255).view(m, 3, 1)
        bg = draw(3, 1, lo=0.05 * 255, hi=0.85 * 255).add_(0.5)  # + 0.5: the uint8 cast below truncates
        slope = draw(3, 1, lo=-0.25 * 255, hi=0.25 * 255)
        direction = draw(1, 1, lo=0, hi=2 * math.pi)
        ramp = xx * torch.cos(direction) + yy * torch.sin(direction)  # (m, 32, 32)
        mask, ramp = mask.view(m, 1, 1024), ramp.view(m, 1, 1024)
        img = torch.addcmul(bg, slope, ramp * (1 - mask))  # (m, 3, 1024): the background outside the shape
        img.addcmul_(fg - bg, mask)
        img.add_(bank[torch.randint(len(bank), (m,), generator=g)])
        out[start : start + m] = img.clamp_(0, 255).to(torch.uint8).view(m, PIXELS)
    return out, labels


def make_synthetic(sizes: tuple[int, int] = SYNTHETIC_SIZES, seed: int = SYNTHETIC_SEED) -> Images:
    train_x, train_y = synthetic(sizes[0], seed)
    test_x, test_y = synthetic(sizes[1], seed + 1)
    return Images(train_x, train_y, test_x, test_y, SYNTHETIC_CLASSES, LABELS["synthetic"], "")
