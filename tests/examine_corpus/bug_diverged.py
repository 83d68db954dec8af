"""Linear regression with plain SGD whose lr warms up to 0.5 over 600 steps: on features of scale 3,
2/λmax is about 0.1; once the lr passes it (step ~120), the loss explodes."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
x = 3 * torch.randn(256, 4)
y = x @ torch.randn(4, 1) + 0.1 * torch.randn(256, 1)
model = nn.Linear(4, 1)
PEAK_LR = 0.5  # the bug: 5x past the stability line 2/λmax
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
