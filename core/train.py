"""The shared training loop, and the plain-data shapes every case returns.

One flat loop: zero_grad -> forward (the case's `loss_fn`) -> backward -> step. It
records the loss of every step, optionally per-layer gradient norms, update/weight ratios
and the loss's sharpness on a sample of steps (`core.curvature.Probe`), stops at the first
non-finite loss, and returns numpy arrays and data frames, never live tensors.

Sync points: losses are written into a tensor on the device and only read back every
`check_every` steps (one `.item()` per check), so a GPU is not stalled every step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

TICK_S = 0.5  # progress (and a chance to stop) at least this often, however long an epoch is


@dataclass(frozen=True)
class Progress:
    step: int  # steps done so far
    total: int  # steps planned
    loss: np.ndarray  # loss of every step so far (a copy)
    name: str = "loss"  # what `loss` is, for the live chart (a case may report another unit, e.g. MSE)


ProgressFn = Callable[[Progress], None]


@dataclass(frozen=True)
class History:
    loss: np.ndarray  # (steps_run,) loss of each step that had a finite loss, float64
    diverged_at: int | None  # 1-based step whose loss was first NaN or inf; None if none
    layers: pd.DataFrame | None  # step, layer, grad_norm, update_ratio (when tracked)

    @property
    def steps_run(self) -> int:
        return len(self.loss)


@dataclass(frozen=True)
class RunResult:
    """What a case's run returns: plain numbers and tables, safe to cache and share.

    Treat it as read-only: cached results are shared between sessions.
    """

    metrics: Mapping[str, object]  # the CLI's "metrics": JSON-ready numbers, bools, strings
    history: pd.DataFrame  # one row per step (at least `step` and `loss`)
    frames: Mapping[str, pd.DataFrame] = field(default_factory=dict)  # tables for the charts
    seconds: float = 0.0  # wall time of the run, filled in by the runner
    device: str = "cpu"


def train(
    params: Mapping[str, torch.Tensor],
    optimizer: torch.optim.Optimizer,
    loss_fn: Callable[[int], torch.Tensor | float],
    steps: int,
    *,
    check_every: int = 50,
    track_every: int = 0,
    on_progress: ProgressFn | None = None,
    sharpness: Callable[[int], None] | None = None,
    grads_set: bool = False,
    update: Callable[[], None] | None = None,
) -> History:
    """Run `steps` optimizer steps; `loss_fn(step)` does the forward pass of step `step`.

    params: the trained tensors by layer name (for the per-layer records).
    track_every: record gradient norms and update/weight ratios every k steps (0: never).
    on_progress: called at every check (every `check_every` steps, and at least every TICK_S
    seconds whatever the step's cost); it may raise to interrupt (Streamlit's rerun does, and
    so does the Stop button), in which case nothing is returned and nothing half-done escapes.
    sharpness: called with the 1-based step after each optimizer step (a `curvature.Probe`,
    which measures on its own schedule at the weights the step left).
    grads_set: `loss_fn` writes every weight's gradient itself (a backward written out by hand); the
    loop then calls neither zero_grad() nor backward(), and the loss may be a plain float.
    update: the optimizer's step, where it is written out (core/kernels.py's `updater`); else
    optimizer.step().
    """
    names = list(params)
    tensors = [params[n] for n in names]
    device = tensors[0].device
    losses = torch.full((steps,), float("nan"), dtype=torch.float64, device=device)
    # a plain float (a backward written out) is written through numpy on the CPU: 0.1 us, not torch's 1.7
    cells = losses.numpy() if device.type == "cpu" else None
    tracked: list[tuple[int, torch.Tensor]] = []  # (step, (n_params, 2) grad norm, update ratio)
    needs_closure = isinstance(optimizer, torch.optim.LBFGS)
    step_weights = update or optimizer.step
    checked = 0  # losses[:checked] are known to be finite
    diverged_at = None
    next_tick = time.monotonic() + TICK_S
    # the weights before a tracked step: allocated once (a fresh 3.7 MB copy per record cost
    # ~150 page faults each in case 2)
    before = [torch.empty_like(t) for t in tensors] if track_every else []

    for step in range(steps):
        track = track_every > 0 and step % track_every == 0
        if track:
            for b, t in zip(before, tensors, strict=True):
                b.copy_(t.detach())
        if needs_closure:  # L-BFGS re-evaluates the loss itself, several times per step

            def closure(step=step):
                optimizer.zero_grad(set_to_none=True)
                loss = loss_fn(step)
                loss.backward()
                return loss

            loss = optimizer.step(closure)
        elif grads_set:
            loss = loss_fn(step)  # forward and gradients
            step_weights()
        else:
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(step)  # forward
            loss.backward()
            step_weights()
        if cells is not None and isinstance(loss, float):
            cells[step] = loss
        else:
            losses[step] = loss if isinstance(loss, float) else loss.detach()
        if sharpness is not None:
            sharpness(step + 1)
        if track:
            tracked.append((step + 1, _layer_record(tensors, before)))

        due = (step + 1) % check_every == 0 or step + 1 == steps
        if due or (on_progress is not None and time.monotonic() >= next_tick):  # at least every TICK_S
            chunk = losses[checked : step + 1]
            bad = ~torch.isfinite(chunk)
            if bad.any():  # sync point: one read per check
                diverged_at = checked + int(bad.nonzero()[0, 0]) + 1
                break
            checked = step + 1
            if on_progress is not None:
                on_progress(Progress(checked, steps, losses[:checked].to("cpu", copy=True).numpy()))
                next_tick = time.monotonic() + TICK_S

    steps_run = diverged_at - 1 if diverged_at is not None else checked
    loss = losses[:steps_run].cpu().numpy()
    return History(loss=loss, diverged_at=diverged_at, layers=_layers_frame(names, tracked, steps_run))


def _layer_record(tensors: list[torch.Tensor], before: list[torch.Tensor]) -> torch.Tensor:
    """(n_params, 2): each tensor's gradient norm and |update| / |weight| for this step.
    Overwrites `before` (the weights before the step) with minus the update."""
    rows = []
    for t, b in zip(tensors, before, strict=True):
        g = t.grad
        grad_norm = torch.linalg.vector_norm(g) if g is not None else torch.zeros((), device=t.device)
        weight_norm = torch.linalg.vector_norm(b).clamp_min(1e-30)
        ratio = torch.linalg.vector_norm(b.sub_(t.detach())) / weight_norm
        rows.append(torch.stack([grad_norm.double(), ratio.double()]))
    return torch.stack(rows)


def _layers_frame(names: list[str], tracked: list[tuple[int, torch.Tensor]], steps_run: int):
    tracked = [(s, r) for s, r in tracked if s <= steps_run]
    if not tracked:
        return None
    values = torch.stack([r for _, r in tracked]).cpu().numpy()  # (records, n_params, 2)
    steps = np.repeat([s for s, _ in tracked], len(names))
    return pd.DataFrame(
        {
            "step": steps,
            "layer": np.tile(names, len(tracked)),
            "grad_norm": values[:, :, 0].ravel(),
            "update_ratio": values[:, :, 1].ravel(),
        }
    )


def history_frame(history: History, **columns: np.ndarray) -> pd.DataFrame:
    """The per-step table: step (from 1), loss, and any extra per-step columns."""
    n = history.steps_run
    frame = pd.DataFrame({"step": np.arange(1, n + 1), "loss": history.loss})
    for name, values in columns.items():
        frame[name] = values[:n]
    return frame
