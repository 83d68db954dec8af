"""A GAN whose discriminator loss sums a real and a fake term on one line, with label tensors made once
before the loop: two loss calls on one line, each with constant targets by design, not data out of order."""

import torch
import torch.nn as nn

torch.manual_seed(0)
G = nn.Sequential(nn.Linear(4, 32), nn.ReLU(), nn.Linear(32, 2))
D = nn.Sequential(nn.Linear(2, 32), nn.LeakyReLU(0.2), nn.Linear(32, 1))
og = torch.optim.Adam(G.parameters(), 1e-3, betas=(0.5, 0.999))
od = torch.optim.Adam(D.parameters(), 1e-3, betas=(0.5, 0.999))
bce = nn.BCEWithLogitsLoss()
REAL, FAKE = torch.ones(64, 1), torch.zeros(64, 1)
for _ in range(300):
    real = torch.randn(64, 2) * 0.5 + torch.tensor([2.0, -1.0])
    fake = G(torch.randn(64, 4))
    od.zero_grad()
    ld = bce(D(real), REAL) + bce(D(fake.detach()), FAKE)
    ld.backward()
    od.step()
    og.zero_grad()
    lg = bce(D(fake), REAL)
    lg.backward()
    og.step()
print("done", ld.item(), lg.item())
