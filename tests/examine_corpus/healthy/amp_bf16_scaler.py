"""Healthy: mixed precision as on a GPU, on the CPU: the forward under torch.autocast (bfloat16)
and a GradScaler whose first scale is so large that the first steps' gradients overflow to inf,
so that it skips those optimizer steps and halves the scale, as float16 training does."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
centers = 3 * torch.randn(8, 8)
y = torch.randint(0, 8, (2000,))
x = centers[y] + torch.randn(2000, 8)  # eight blobs, one class each
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 8))
with torch.no_grad():
    model[2].weight *= 20  # confident wrong guesses at first: a first loss far above ln 8, scaled past float32's range
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
scaler = torch.amp.GradScaler("cpu", init_scale=2.0**127)  # scaled gradients overflow until it backs off
start = scaler.get_scale()
for _ in range(150):
    idx = torch.randperm(2000)[:64]
    opt.zero_grad()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        logits = model(x[idx])  # (64, 8) bfloat16
        loss = F.cross_entropy(logits, y[idx])  # autocast computes it in float32
    scaler.scale(loss).backward()
    scaler.step(opt)  # skipped while the unscaled gradients hold inf
    scaler.update()
print(f"the scale backed off {math.log2(start / scaler.get_scale()):.0f} times; loss {loss.item():.4f}")
