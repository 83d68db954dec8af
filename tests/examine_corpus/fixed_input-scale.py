"""Fixed: standardized inputs."""

import torch
import torch.nn as nn

torch.manual_seed(0)
pixels = torch.randint(0, 256, (512, 64)).float()  # raw 0..255
y = (pixels[:, :32].mean(1) > pixels[:, 32:].mean(1)).long()
SCALE = 1.0
x = (pixels - pixels.mean()) / pixels.std() * SCALE  # standardized
model = nn.Sequential(nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 2))
opt = torch.optim.Adam(model.parameters(), lr=1e-3)
for _ in range(150):
    idx = torch.randint(0, 512, (64,))
    opt.zero_grad()
    loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
    loss.backward()
    opt.step()
print(f"final loss {loss.item():.4f}")
