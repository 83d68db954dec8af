"""Each run's own random numbers: nothing here or anywhere in the app seeds torch's global
generator, because one Streamlit server runs many sessions in threads."""

from __future__ import annotations

import torch


def generator(seed: int, stream: int) -> torch.Generator:
    """A CPU generator for one purpose of one run (stream 0: data, 1: init, 2: batches...).

    Separate streams keep the data the same when only the model changes. CPU generators
    make a run's data and initial weights the same on every device.
    """
    return torch.Generator(device="cpu").manual_seed(seed * 1_000 + stream)
