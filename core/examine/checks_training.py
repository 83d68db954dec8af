"""The findings about how the run trains: gradients, steps, learning rates, the loss's course
and its curvature. Each check reads the Monitor's numbers after the run (findings.py)."""

from __future__ import annotations

import math
import statistics

from core.examine import conditioning
from core.examine.checks_data import dead_relu
from core.examine.findings import (
    CHANCE_BAND,
    COLLAPSED,
    COLLAPSED_SHARE,
    EXPLODED,
    KAPPA,
    STILL_FALLING,
    Finding,
    g,
)


def grad_norms(m) -> list[tuple[int, float]]:
    by_step: dict[int, float] = {}
    for r in m.layers:
        by_step[r["step"]] = by_step.get(r["step"], 0.0) + r["grad_norm"] ** 2
    return [(s, math.sqrt(v)) for s, v in sorted(by_step.items())]


def missing_zero_grad(m, losses):
    if len(m.accumulated) < 2:
        return None
    norms = grad_norms(m)
    (s0, g0), (s1, g1) = norms[0], norms[-1]
    growth = f"; the gradient norm went from {g(g0)} at step {s0} to {g(g1)} at step {s1}"
    return Finding(
        "missing-zero-grad",
        "gradients accumulate across optimizer steps",
        f"at the backward of {len(m.accumulated)} sampled steps (from step {m.accumulated[0]}) the parameters still "
        f"held the previous step's gradients: no zero_grad() between the steps" + (growth if len(norms) > 1 else ""),
        "optimizer.zero_grad()  # every step, before loss.backward()",
        m.accumulated[0],
    )


def lr_collapsed(m, losses):
    ratios = m.lr_ratio
    low = [s for s, r in ratios if r < COLLAPSED]
    if len(ratios) < 10 or len(low) < COLLAPSED_SHARE * len(ratios):
        return None
    lr = dict(m.lr)
    peak = max(lr.values(), default=0.0)
    sched = ", ".join(f"{k}.step() {v} times" for k, v in m.sched_steps.items())
    return Finding(
        "lr-collapsed",
        "the learning rate decays to almost nothing",
        f"the learning rate fell below 1e-6 × its peak at step {low[0]} (peak {g(peak)}, last {g(m.lr[-1][1])}); "
        f"{len(low)} of {len(ratios)} steps ran at such a rate"
        + (f" ({sched} in {m.step} optimizer steps)" if sched else ""),
        "scheduler.step()  # once per epoch, after the epoch's batches (or size the schedule in batches)",
        low[0],
    )


def listed(names: list[str], most: int = 4) -> str:
    """The first `most` names, comma-separated, with an ellipsis when there are more."""
    return ", ".join(names[:most]) + (", …" if len(names) > most else "")


def optimizer(m) -> str:
    """The script's (first) optimizer's class name where torch.optim has it, for a fix in its terms; else SGD."""
    import torch

    kind = m.optimizer_kinds[0] if m.optimizer_kinds else "SGD"
    return kind if isinstance(getattr(torch.optim, kind, None), type) else "SGD"


def no_gradient(m, losses):
    checks = m.grad_checks
    if not checks or m.not_held or m.all_frozen:
        return None
    if not all(c["elements"] and c["missing"] >= 0.5 * c["elements"] for c in checks):
        return None
    if not any(c["none"] for c in checks) and dead_relu(m, losses) is not None:
        return None  # all-zero gradients through dead units: dead-relu says why
    c = checks[-1]
    if all(k.get("zeroed_late") for k in checks):
        return Finding(
            "no-gradient",
            "the loss does not reach the trained parameters",
            f"zero_grad() ran after loss.backward() and before optimizer.step() on every one of {len(checks)} "
            f"sampled steps: the step found no gradient (None or all zeros) for {c['missing']:,} of {c['elements']:,} "
            "weights, so it moved nothing",
            "optimizer.zero_grad(); loss.backward(); optimizer.step()  # zero first, then backward, then step",
            checks[0]["step"],
        )
    names = c.get("without", [])
    which = f": {listed(names)}" if names else ""
    return Finding(
        "no-gradient",
        "the loss does not reach the trained parameters",
        f"after backward {c['none']} of {c['total']} parameter tensors had no gradient{which}; {c['zero']} had an "
        f"all-zero one ({c['missing']:,} of {c['elements']:,} weights) on every one of {len(checks)} sampled steps",
        "loss = criterion(model(x), y)  # from the model's output tensor: no .detach(), .item() or torch.tensor(...)",
        checks[0]["step"],
    )


def not_updated(m, losses):
    step = m.grad_checks[0]["step"] if m.grad_checks else 1
    if m.not_held:
        names = list(m.not_held)
        weights = sum(m.not_held.values())
        return Finding(
            "parameters-not-updated",
            "parameters the loss depends on never change",
            f"{len(names)} parameter tensors ({weights:,} weights: {listed(names)}) "
            "received gradients but no optimizer holds them (an optimizer built on another model instance?)",
            f"optimizer = torch.optim.{optimizer(m)}(model.parameters(), lr=lr)  # the instance that computes the loss",
            step,
        )
    if m.frozen or m.all_frozen:
        what = f"{len(m.frozen)} tensors in the optimizer ({', '.join(m.frozen[:3])})"
        what = what if m.frozen else "all its parameters"
        return Finding(
            "parameters-not-updated",
            "parameters the loss depends on never change",
            f"requires_grad is False for {what}: they get no gradient and the optimizer never moves them",
            "w = torch.randn(n_in, n_out, requires_grad=True)  # or nn.Parameter(...)",
            step,
        )
    return None


def diverged(m, losses):
    values = list(losses)
    if m.pending_loss is not None:  # a loss computed and not backpropagated (the script stopped on it)
        values.append((m.pending_loss[0], float(m.pending_loss[1].float().mean())))
    if not values:
        return None
    start = values[0][1]
    for s, v in values:
        if not math.isfinite(v):
            what = f"the loss was {v} at step {s} (it started at {g(start)})"
            break
        if math.isfinite(start) and start > 0 and abs(v) >= EXPLODED * start:
            what = f"the loss reached {g(v)} at step {s}, {g(v / start)}× its start ({g(start)})"
            break
    else:
        return None
    sharp = m.sharpness
    if sharp and math.isfinite(sharp["value"]) and math.isfinite(sharp["line"]):
        kind = "top Hessian eigenvalue" + (", preconditioned" if sharp["optimizer"] != "SGD" else "")
        what += (
            f"; at step {sharp['step']} the sharpness ({kind}) "
            f"was {g(sharp['value'])} against {sharp['optimizer']}'s stability line {g(sharp['line'])}"
            f"{': past it' if sharp['value'] > sharp['line'] else ''}"
        )
    return Finding(
        "diverged",
        "the loss went to NaN/inf or exploded",
        what,
        f"optimizer = torch.optim.{optimizer(m)}(model.parameters(), lr=lr / 10)  # or clip: "
        "nn.utils.clip_grad_norm_(params, 1.0)",
        s,
    )


def ill_conditioned(m, losses):
    fix = "features = (features - features.mean(0)) / features.std(0)  # or an orthogonal basis (Legendre on [-1, 1])"
    adaptive = m.adaptive()
    how = " (scaled per feature, as Adam-like steps see it)" if adaptive else ""
    crawl = "at the largest stable lr (2/λmax) the flattest direction shrinks by 1 − 2/κ a step"
    c = m.input_curvature
    if c is not None and c.get("kappa") is not None:  # a non-linear model: its Hessian, measured
        if c["kappa"] < KAPPA:
            return None
        return Finding(
            "ill-conditioned",
            "curvature spread so wide that SGD crawls",
            f"the loss's Hessian along the first layer's {c['features']} input directions, measured at step "
            f"{c['step']} ({c['features']} Hessian-vector products on that step's batch){how}, has condition number "
            f"κ = {g(c['kappa'])} (the inputs' Gram matrix: {g(c['gram'])}): {crawl}: ~{g(c['kappa'] / 2)} steps "
            "per e-fold",
            fix,
            c["step"],
        )
    if m.gram is None or not m.gram_rows or not m.linear_model:
        return None
    trained = set().union(*m.optimizer_params) if m.optimizer_params else set()
    if not trained or not trained <= set(m.gram_params) or m.gram_params[0] not in trained:
        return None  # not a linear model: its Hessian is not the inputs' Gram matrix
    h = m.gram / m.gram_rows
    kappa = conditioning.kappa(conditioning.scaled(h) if adaptive else h)
    if kappa < KAPPA:
        return None
    return Finding(
        "ill-conditioned",
        "curvature spread so wide that SGD crawls",
        f"this linear model's loss has the Hessian ∝ its inputs' Gram matrix XᵀX/n{how}: condition number "
        f"κ = {g(kappa)}; {crawl}: ~{g(kappa / 2)} steps per e-fold",
        fix,
        m.grad_checks[0]["step"] if m.grad_checks else 1,
    )


def at_chance(m, losses):
    kinds = {c for s, c in m.chance.items() if s > m.step / 2}  # the late sampled steps' loss: one classification loss
    if m.step < 20 or len(kinds) != 1 or None in kinds:
        return None
    chance = kinds.pop()
    late = [(s, v) for s, v in losses if s > m.step / 2 and math.isfinite(v)]
    if len(late) < 5:
        return None
    med = statistics.median(v for _, v in late)
    if abs(med / chance - 1) > CHANCE_BAND:
        return None
    early, recent = (
        statistics.median(v for _, v in late[: len(late) // 2]),
        statistics.median(v for _, v in late[-(len(late) // 4 or 1) :]),
    )
    if early - recent > STILL_FALLING * chance:  # near ln K but still going down: slow learning, not stuck
        return None
    classes = round(math.exp(chance))
    since = late[0][0]
    for s, v in reversed(losses):
        if abs(v / chance - 1) > CHANCE_BAND:
            break
        since = s
    return Finding(
        "loss-at-chance",
        "a classifier's loss stays near ln K",
        f"over the last half of the run (steps {late[0][0]}-{late[-1][0]}) the loss's median is {g(med)}, "
        f"{med / chance:.0%} of ln {classes} = {g(chance)}, the loss of a uniform guess over {classes} classes",
        "x = (x - mean) / std; lr = lr / 10  # a classifier stuck at chance: check the other findings first",
        since,
    )
