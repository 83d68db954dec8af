"""Fixed: the mean loss (and an lr for it)."""

import torch
import torch.nn as nn

torch.manual_seed(0)
x = torch.randn(1024, 6)
y = x @ torch.randn(6, 1) * 0.5
model = nn.Sequential(nn.Linear(6, 32), nn.Tanh(), nn.Linear(32, 1))
REDUCTION = "mean"
criterion = nn.MSELoss(reduction=REDUCTION)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
for _ in range(150):
    idx = torch.randint(0, 1024, (128,))
    opt.zero_grad()
    loss = criterion(model(x[idx]), y[idx])
    loss.backward()
    opt.step()
print(f"final loss {loss.item():.4f}")
