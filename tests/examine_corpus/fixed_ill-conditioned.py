"""Fixed: decorrelated features (the difference carries the information)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
a, b = torch.randn(512, 1), torch.randn(512, 1)
DECORRELATE = True  # independent features
x = torch.cat([a, b if DECORRELATE else a + 0.01 * b], 1)
y = 2 * a - b + 0.05 * torch.randn(512, 1)
model = nn.Linear(2, 1)
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for _ in range(200):
    opt.zero_grad()
    loss = F.mse_loss(model(x), y)
    loss.backward()
    opt.step()
print(f"final loss {loss.item():.4f}")
