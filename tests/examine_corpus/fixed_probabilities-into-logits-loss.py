"""Fixed: the network returns logits; CrossEntropyLoss applies log_softmax itself."""

import torch
import torch.nn as nn

torch.manual_seed(0)
x = torch.randn(600, 10)
y = x[:, :4].argmax(1)  # 4 classes
layers = [nn.Linear(10, 32), nn.ReLU(), nn.Linear(32, 4)]
# the logits go to the loss as they are
model = nn.Sequential(*layers)
opt = torch.optim.Adam(model.parameters(), lr=1e-2)
criterion = nn.CrossEntropyLoss()
for _ in range(150):
    idx = torch.randint(0, 600, (64,))
    opt.zero_grad()
    loss = criterion(model(x[idx]), y[idx])
    loss.backward()
    opt.step()
print(f"final loss {loss.item():.4f}")
