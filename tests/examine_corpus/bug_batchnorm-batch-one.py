"""A small CNN with BatchNorm2d trained one image at a time: each image is normalised by its own statistics."""

import torch
import torch.nn as nn

torch.manual_seed(0)
x = torch.randn(256, 1, 8, 8)
y = (x.mean((1, 2, 3)) > 0).long()  # the level of the image: exactly what per-sample BatchNorm erases
model = nn.Sequential(
    nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 8 * 8, 2)
)
opt = torch.optim.SGD(model.parameters(), lr=0.01)
BATCH = 1  # the bug
for _ in range(120):
    idx = torch.randint(0, 256, (BATCH,))
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
    loss.backward()
    opt.step()
print(f"final loss {loss.item():.4f}")
