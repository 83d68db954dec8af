"""Fixed: one permutation for inputs and labels."""

import torch
import torch.nn as nn

torch.manual_seed(0)
centres = torch.randn(5, 10) * 2
labels = torch.randint(0, 5, (1000,))
inputs = centres[labels] + torch.randn(1000, 10)
perm_x = torch.randperm(1000)
perm_y = perm_x  # one permutation for both
x, y = inputs[perm_x], labels[perm_y]
model = nn.Sequential(nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 5))
opt = torch.optim.SGD(model.parameters(), lr=0.02)
for _ in range(200):
    idx = torch.randint(0, 1000, (64,))
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
    loss.backward()
    opt.step()
print(f"final loss {loss.item():.4f}")
