"""Fixed: shuffle=True."""

import torch
import torch.nn as nn
from torch.utils.data import DataLoader, TensorDataset

torch.manual_seed(0)
centres = torch.randn(4, 6) * 2
y = torch.arange(4).repeat_interleave(200)  # sorted by class, as files often come
x = centres[y] + torch.randn(800, 6)
SHUFFLE = True
loader = DataLoader(TensorDataset(x, y), batch_size=50, shuffle=SHUFFLE)
model = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Linear(32, 4))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
for _ in range(5):
    for xb, yb in loader:
        opt.zero_grad()
        loss = nn.functional.cross_entropy(model(xb), yb)
        loss.backward()
        opt.step()
print(f"final loss {loss.item():.4f}")
