"""Fixed: weights scaled by 1 / sqrt(fan_in) (and the input scale)."""

import torch

torch.manual_seed(0)
x = 2 * torch.randn(512, 32)
y = torch.sin(x[:, :1])
STD = 1 / 32**0.5 / 2  # about 1 / sqrt(fan_in), for inputs of scale 2
w1 = (STD * torch.randn(32, 64)).requires_grad_()
w2 = (STD * torch.randn(64, 1)).requires_grad_()
opt = torch.optim.SGD([w1, w2], lr=1e-3)
for _ in range(150):
    idx = torch.randint(0, 512, (64,))
    opt.zero_grad()
    h = torch.tanh(x[idx] @ w1)  # (64, 64)
    loss = ((h @ w2 - y[idx]) ** 2).mean()
    loss.backward()
    opt.step()
print(f"final loss {loss.item():.4f}")
