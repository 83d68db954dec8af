"""Fixed: the scheduler steps once per epoch."""

import torch
import torch.nn as nn
import torch.nn.functional as F

torch.manual_seed(0)
x = torch.randn(640, 5)
y = x @ torch.randn(5, 1)
model = nn.Sequential(nn.Linear(5, 16), nn.ReLU(), nn.Linear(16, 1))
opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
sched = torch.optim.lr_scheduler.StepLR(opt, step_size=2, gamma=0.1)
PER_BATCH = False  # once per epoch
for _ in range(10):
    for i in range(0, 640, 32):
        opt.zero_grad()
        loss = F.mse_loss(model(x[i : i + 32]), y[i : i + 32])
        loss.backward()
        opt.step()
        if PER_BATCH:
            sched.step()
    if not PER_BATCH:
        sched.step()
print(f"final loss {loss.item():.4f}, lr {opt.param_groups[0]['lr']:.2e}")
