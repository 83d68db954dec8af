"""The prediction is re-wrapped as a new tensor (torch.tensor(...)): the loss no longer reaches the model."""

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
    opt.zero_grad()
    pred = model(x[idx])
    pred = torch.tensor(pred.tolist(), requires_grad=True)  # the bug: a new leaf, cut from the graph
    loss = F.mse_loss(pred, y[idx])
    loss.backward()
    opt.step()
print(f"final loss {loss.item():.4f}")
