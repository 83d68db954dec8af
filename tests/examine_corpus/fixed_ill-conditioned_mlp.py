"""Fixed: the two features standardized (here: both in the same units, scale 1)."""

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
u = torch.randn(1024, 2)
SCALES = torch.tensor([1.0, 1.0])  # standardized features
x = u * SCALES  # (1024, 2)
y = torch.sin(u[:, :1]) + u[:, 1:]  # (1024, 1): both features matter equally
model = nn.Sequential(nn.Linear(2, 32), nn.Tanh(), nn.Linear(32, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
for _ in range(300):
    idx = torch.randperm(1024)[:64]
    opt.zero_grad()
    loss = F.mse_loss(model(x[idx]), y[idx])
    loss.backward()
    opt.step()
print(f"final loss {F.mse_loss(model(x), y).item():.4f}")
