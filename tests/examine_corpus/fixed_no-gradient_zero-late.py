"""Fixed: zero_grad() first, then backward, then step (here model.zero_grad(), as many scripts write it)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
x = torch.randn(400, 4)
y = x.sum(1, keepdim=True)
model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
for _ in range(100):
    idx = torch.randint(0, 400, (32,))
    model.zero_grad()
    loss = F.mse_loss(model(x[idx]), y[idx])
    loss.backward()
    opt.step()
print(f"final loss {loss.item():.4f}")
