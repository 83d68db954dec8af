"""Linear regression with plain SGD at lr 0.5 on features of scale 3: far past 2/λmax, the loss explodes."""

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
x = 3 * torch.randn(256, 4)
y = x @ torch.randn(4, 1)
model = nn.Linear(4, 1)
LR = 0.5  # the bug
opt = torch.optim.SGD(model.parameters(), lr=LR)
for step in range(100):
    opt.zero_grad()
    loss = F.mse_loss(model(x), y)
    if not math.isfinite(loss.item()):
        print(f"the loss is {loss.item()} at step {step}")
        break
    loss.backward()
    opt.step()
print(f"last loss {loss.item():.4g}")
