"""Fixed: a small positive bias."""

import torch
import torch.nn as nn

torch.manual_seed(0)
x = torch.randn(512, 8)
y = (x[:, :2].sum(1) > 0).long()
model = nn.Sequential(nn.Linear(8, 64), nn.ReLU(), nn.Linear(64, 2))
BIAS = 0.01  # a small positive bias
nn.init.constant_(model[0].bias, BIAS)
opt = torch.optim.SGD(model.parameters(), lr=0.05)
for _ in range(150):
    idx = torch.randint(0, 512, (64,))
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
    loss.backward()
    opt.step()
print(f"final loss {loss.item():.4f}")
