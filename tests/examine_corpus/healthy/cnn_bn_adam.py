"""Healthy: a small CNN with BatchNorm, Adam and a cosine schedule, on shuffled synthetic images in [0, 1]."""

import torch
import torch.nn as nn

torch.manual_seed(0)
x = torch.rand(512, 3, 12, 12)
y = (x[:, 0].mean((1, 2)) > x[:, 1].mean((1, 2))).long()
model = nn.Sequential(
    nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU(), nn.MaxPool2d(2),
    nn.Conv2d(8, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
    nn.Linear(16, 2),
)  # fmt: skip
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=160)
for _ in range(160):
    idx = torch.randint(0, 512, (32,))
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
    loss.backward()
    opt.step()
    sched.step()
print(f"final loss {loss.item():.4f}")
