"""Healthy: a sigmoid output into nn.BCELoss, trained until confident, with a warm-up from lr 0."""

import torch
import torch.nn as nn

torch.manual_seed(0)
x = torch.randn(1000, 4)
y = ((x[:, 0] * x[:, 1]) > 0).float().unsqueeze(1)
model = nn.Sequential(nn.Linear(4, 64), nn.ReLU(), nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 1), nn.Sigmoid())
opt = torch.optim.Adam(model.parameters(), lr=3e-3)
sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, s / 50))
criterion = nn.BCELoss()
for _ in range(300):
    idx = torch.randint(0, 1000, (100,))
    opt.zero_grad()
    loss = criterion(model(x[idx]), y[idx])
    loss.backward()
    opt.step()
    sched.step()
print(f"final loss {loss.item():.4f}")
