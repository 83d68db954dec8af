"""Fixed: targets (B, 1), the shape of the predictions."""

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
x = torch.randn(512, 3)
y = x @ torch.tensor([1.0, -2.0, 0.5]) + 0.1 * torch.randn(512)  # (512,)
TARGET = y.unsqueeze(1)  # (B, 1), as the predictions
model = nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1))
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
for _ in range(150):
    idx = torch.randint(0, 512, (32,))
    opt.zero_grad()
    loss = F.mse_loss(model(x[idx]), TARGET[idx])  # (32, 1) vs (32, 1)
    loss.backward()
    opt.step()
print(f"final loss {loss.item():.4f}")
