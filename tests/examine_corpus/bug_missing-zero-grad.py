"""A classifier trained without optimizer.zero_grad(): each step adds to the last step's gradients."""

import torch
import torch.nn as nn

torch.manual_seed(0)
x = torch.randn(600, 8)
y = (x[:, 0] + x[:, 1] > 0).long()
model = nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Linear(32, 2))
opt = torch.optim.SGD(model.parameters(), lr=0.05)
criterion = nn.CrossEntropyLoss()
for _ in range(150):
    idx = torch.randint(0, 600, (64,))
    ZERO = False  # the bug: no opt.zero_grad()
    if ZERO:
        opt.zero_grad()
    loss = criterion(model(x[idx]), y[idx])
    loss.backward()
    opt.step()
print(f"final loss {loss.item():.4f}")
