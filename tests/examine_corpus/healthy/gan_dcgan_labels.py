"""A GAN in the DCGAN tutorial's style: one label tensor refilled with 1s and 0s (label.fill_) through a
helper that calls the loss; each call site sees constant targets by design, not data out of order."""

import torch
import torch.nn as nn

torch.manual_seed(0)
G = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2))
D = nn.Sequential(nn.Linear(2, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1), nn.Sigmoid())
og = torch.optim.Adam(G.parameters(), 2e-4, betas=(0.5, 0.999))
od = torch.optim.Adam(D.parameters(), 2e-4, betas=(0.5, 0.999))
criterion = nn.BCELoss()


def d_loss(x, target):
    return criterion(D(x).view(-1), target)


for _ in range(300):
    real = torch.randn(64, 2) * 0.5 + torch.tensor([2.0, -1.0])
    label = torch.full((64,), 1.0)
    od.zero_grad()
    errD_real = d_loss(real, label)
    errD_real.backward()
    fake = G(torch.randn(64, 4))
    label.fill_(0.0)
    errD_fake = d_loss(fake.detach(), label)
    errD_fake.backward()
    od.step()
    og.zero_grad()
    label.fill_(1.0)
    errG = d_loss(fake, label)
    errG.backward()
    og.step()
print("done")
