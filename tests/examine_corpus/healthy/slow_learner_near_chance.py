"""Healthy, if slow: a 10-class softmax regression with a small learning rate. Its loss stays within
10% of ln 10 for the whole run, but it keeps falling: slow learning, not a classifier stuck at chance."""

import torch
import torch.nn as nn

torch.manual_seed(0)
X = torch.randn(4000, 20)
y = (X[:, :10].argmax(1) + (X[:, 10] > 1.5).long()) % 10
model = nn.Linear(20, 10)
opt = torch.optim.SGD(model.parameters(), lr=0.004)
for _ in range(400):
    idx = torch.randint(0, 4000, (128,))
    loss = nn.functional.cross_entropy(model(X[idx]), y[idx])
    opt.zero_grad()
    loss.backward()
    opt.step()
print(f"final loss {loss.item():.4f} (ln 10 = 2.3026)")
