"""Statistics read later: a sampled step's numbers stay tensors (no `.item()`, no device sync in
the training loop) and are read in one transfer per device when the examination ends."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable

import torch


class Later:
    def __init__(self):
        self.items: list[tuple[torch.Tensor, Callable[[list[float]], None]]] = []

    def put(self, t: torch.Tensor, use: Callable[[list[float]], None]) -> None:
        """use(values) is called with the tensor's elements as floats, at `read()`."""
        self.items.append((t.detach().reshape(-1), use))

    def row(self, row: dict, keys: tuple[str, ...], t: torch.Tensor) -> None:
        """row[keys[i]] = t[i] (t: one element per key)."""
        self.put(t, lambda v: row.update(zip(keys, v, strict=True)))

    def read(self) -> None:
        by_device: dict[torch.device, list[int]] = defaultdict(list)
        for i, (t, _) in enumerate(self.items):
            by_device[t.device].append(i)
        for idx in by_device.values():
            flat = torch.cat([self.items[i][0].double() for i in idx]).tolist()  # one transfer per device
            at = 0
            for i in idx:
                t, use = self.items[i]
                use(flat[at : at + t.numel()])
                at += t.numel()
        self.items = []
