"""Fixed: the lr warms up to 0.05, below 2/λmax (about 0.1)."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
x = 3 * torch.randn(256, 4)
y = x @ torch.randn(4, 1) + 0.1 * torch.randn(256, 1)
model = nn.Linear(4, 1)
PEAK_LR = 0.05  # below 2/λmax
opt = torch.optim.SGD(model.parameters(), lr=PEAK_LR)
warmup = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: min(1.0, (step + 1) / 600))
for step in range(600):
    opt.zero_grad()
    loss = F.mse_loss(model(x), y)
    if not math.isfinite(loss.item()):
        print(f"the loss is {loss.item()} at step {step}")
        break
    loss.backward()
    opt.step()
    warmup.step()
print(f"last loss {loss.item():.4g}")
