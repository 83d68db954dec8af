"""Fixed: the optimizer holds the trained model's parameters."""

import torch
import torch.nn as nn
import torch.nn.functional as F


class Net(nn.Module):
    def __init__(self):
        super().__init__()
        self.hidden = nn.Linear(4, 16)
        self.out = nn.Linear(16, 1)

    def forward(self, x):
        return self.out(F.relu(self.hidden(x)))


torch.manual_seed(0)
x = torch.randn(400, 4)
y = x.sum(1, keepdim=True)
model = Net()
opt = torch.optim.SGD(model.parameters(), lr=0.05)
for _ in range(100):
    idx = torch.randint(0, 400, (32,))
    opt.zero_grad()
    model.zero_grad()
    loss = F.mse_loss(model(x[idx]), y[idx])
    loss.backward()
    opt.step()
print(f"final loss {loss.item():.4f}")
