"""Healthy: logistic regression with BCEWithLogits, then a softmax classifier on label-smoothed one-hot targets."""

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
x = torch.randn(800, 5)
w = torch.randn(5)
yb = (x @ w > 0).float().unsqueeze(1)
clf = nn.Linear(5, 1)
opt = torch.optim.SGD(clf.parameters(), lr=0.5)
for _ in range(100):
    idx = torch.randperm(800)[:64]
    opt.zero_grad()
    F.binary_cross_entropy_with_logits(clf(x[idx]), yb[idx]).backward()
    opt.step()

labels = (x[:, :3]).argmax(1)
soft = F.one_hot(labels, 3).float() * 0.9 + 0.1 / 3  # (800, 3) probabilities
net = nn.Sequential(nn.Linear(5, 32), nn.GELU(), nn.Linear(32, 3))
opt2 = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True)
for _ in range(100):
    idx = torch.randperm(800)[:64]
    opt2.zero_grad()
    loss = F.cross_entropy(net(x[idx]), soft[idx])
    loss.backward()
    opt2.step()
print(f"final loss {loss.item():.4f}")
