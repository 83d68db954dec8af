"""From the measurements to findings: one check per key, each with its evidence in numbers.

Every threshold is a property of training in general, not of a test script: a share of
units ("most": half or more), a ratio against what a healthy run gives (a shuffled batch's
target spread equals the whole's; a classifier that learned anything is below ln K), or a
scale (a loss 1e3× its start, an lr 1e-6× its peak). A check that lacks the numbers to
judge says nothing.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import asdict, dataclass

import torch

from core.examine import watch
from core.examine.monitor import Monitor

KEYS = (
    "loss-shape-broadcast",
    "missing-zero-grad",
    "probabilities-into-logits-loss",
    "lr-collapsed",
    "no-gradient",
    "parameters-not-updated",
    "batchnorm-batch-one",
    "diverged",
    "unshuffled-data",
    "dead-relu",
    "saturated-activation",
    "output-range-mismatch",
    "input-scale",
    "sum-reduction",
    "ill-conditioned",
    "loss-at-chance",
)

DEAD_SHARE = 0.5  # "most units of a ReLU layer never fire"
SATURATED_SHARE = 0.5  # most outputs of a tanh / sigmoid in its flat tails
LEARNED = 0.1  # a run whose loss fell to a tenth of its start is learning
OUTSIDE_SHARE = 0.05  # targets out of the output activation's reach
INPUT_RMS = 10.0  # 100× the second moment of standardized inputs
SPREAD_RATIO = 0.25  # within-batch target spread / the whole's; about 1 when shuffled
KAPPA = 1e4  # ≥ 5,000 steps per e-fold of the flattest direction at the largest stable lr
EXPLODED = 1e3  # loss ≥ 1e3 × its start
COLLAPSED = 1e-6  # lr < 1e-6 × its peak ...
COLLAPSED_SHARE = 0.1  # ... for a tenth of the run or more
CHANCE_BAND = 0.1  # loss within ±10% of ln K over the last half of the run


@dataclass(frozen=True)
class Finding:
    key: str
    title: str
    evidence: str  # measured, in words and numbers
    fix: str  # the one-line code change
    step: int  # the optimizer step it was first seen at (1-based)

    def to_dict(self) -> dict:
        return asdict(self)


def g(v: float) -> str:
    return f"{v:.3g}"


def diagnose(m: Monitor, losses: list[tuple[int, float]]) -> list[Finding]:
    found = [check(m, losses) for check in CHECKS]
    out = [f for f in found if f is not None]
    return sorted(out, key=lambda f: (f.step, KEYS.index(f.key)))


def broadcast(m, losses):
    b = m.broadcast
    if b is None:
        return None
    pairs, wanted = math.prod(b["broadcast"]), max(math.prod(b["input"]), math.prod(b["target"]))
    return Finding(
        "loss-shape-broadcast",
        "prediction and target shapes differ and broadcast in the loss",
        f"{b['fn']} got prediction {b['input']} and target {b['target']}: they broadcast to {b['broadcast']}, "
        f"so the loss averages {pairs:,} pairs instead of {wanted:,}",
        "loss = F.mse_loss(y_pred, y.view_as(y_pred))  # one shape for both, e.g. (B, 1) and (B, 1)",
        b["step"],
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


def probabilities(m, losses):
    checks = m.probabilities
    if not checks:
        return None
    fed = [s for s, _, by in checks if by]
    looks = [s for s, lk, _ in checks if lk]
    if not (len(fed) * 2 >= len(checks) or (len(checks) >= 3 and len(looks) == len(checks))):
        return None
    fn = m.probabilities_fn
    what = {"cross_entropy": "rows that sum to 1 in [0, 1]", "nll_loss": "rows that sum to 1 in [0, 1]"}
    fixes = {
        "cross_entropy": "loss = F.cross_entropy(logits, y)  # the raw scores: drop the softmax before the loss",
        "nll_loss": "loss = F.nll_loss(F.log_softmax(logits, dim=1), y)  # log-probabilities, not probabilities",
    }
    fix = fixes.get(fn, "loss = F.binary_cross_entropy_with_logits(logits, y)  # drop the sigmoid before the loss")
    return Finding(
        "probabilities-into-logits-loss",
        "softmax/sigmoid output fed to a loss that applies its own",
        f"{fn} got {what.get(fn, 'values all in [0, 1]')} on {len(looks)} of {len(checks)} sampled calls"
        + (f", {len(fed)} of them straight from a softmax/sigmoid" if fed else "")
        + ": it squashes them again, so the loss barely moves and its gradients shrink",
        fix,
        (fed or looks)[0],
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


def no_gradient(m, losses):
    checks = m.grad_checks
    if not checks or m.not_held or m.all_frozen:
        return None
    if not all(c["elements"] and c["missing"] >= 0.5 * c["elements"] for c in checks):
        return None
    if not any(c["none"] for c in checks) and dead_relu(m, losses) is not None:
        return None  # all-zero gradients through dead units: dead-relu says why
    c = checks[-1]
    return Finding(
        "no-gradient",
        "the loss does not reach the trained parameters",
        f"after backward {c['none']} of {c['total']} parameter tensors had no gradient and {c['zero']} an all-zero one "
        f"({c['missing']:,} of {c['elements']:,} weights) on every one of {len(checks)} sampled steps",
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
            f"{len(names)} parameter tensors ({weights:,} weights: {', '.join(names[:4])}"
            f"{', …' if len(names) > 4 else ''}) "
            "received gradients but no optimizer holds them (an optimizer built on another model instance?)",
            "optimizer = torch.optim.SGD(model.parameters(), lr=lr)  # the instance that computes the loss",
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


def batchnorm_one(m, losses):
    bn = m.bn
    if not bn["ones"] or bn["ones"] * 2 < bn["calls"]:
        return None
    where = f" {bn['module']}" if bn.get("module") else ""
    return Finding(
        "batchnorm-batch-one",
        "BatchNorm trained on batches of one sample",
        f"BatchNorm{where} normalised batches of one sample, shape {bn['shape']}, in {bn['ones']} of its "
        f"{bn['calls']} training calls: each sample by its own statistics, its level and contrast erased",
        "loader = DataLoader(data, batch_size=32, shuffle=True)  # or nn.GroupNorm / nn.LayerNorm for batches of one",
        bn["first"],
    )


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
        "optimizer = torch.optim.SGD(model.parameters(), lr=lr / 10)  # or clip: nn.utils.clip_grad_norm_(params, 1.0)",
        s,
    )


def unshuffled(m, losses):
    for fn, spread in m.spread.items():
        r = spread.ratio()
        if r is not None and r < SPREAD_RATIO:
            return Finding(
                "unshuffled-data",
                "batches arrive in an order tied to the target",
                f"{fn}'s targets spread {g(r * 100)}% as much inside a batch as across all {spread.batches} sampled "
                "batches (a shuffled batch: about 100%): each batch holds a narrow slice of the targets",
                "loader = DataLoader(data, batch_size=B, shuffle=True)  # or idx = torch.randperm(n) each epoch",
                spread.step,
            )
    return None


def dead_relu(m, losses):
    for site, windows in m.dead_windows.items():
        step, share, inputs, units = windows[-1]
        if share >= DEAD_SHARE and inputs >= 8 and units >= 2:
            first = next(s for s, sh, _, _ in windows if sh >= DEAD_SHARE)
            return Finding(
                "dead-relu",
                "most units of a ReLU layer never fire",
                f"{site}: {round(share * units)} of {units} units ({share:.0%}) gave 0 on all {inputs} inputs "
                f"of the last sampled batches (up to step {step}); a dead unit gets no gradient and never recovers",
                "x = (x - mean) / std  # inputs near unit scale; and/or a smaller lr, nn.LeakyReLU(0.01)",
                first - 4 if first > 4 else 1,
            )
    return None


def saturated(m, losses):
    shares: dict[str, list[tuple[int, float]]] = {}
    for r in m.acts:
        if r["saturated"] is not None and r["site"] not in m.output_sites:
            shares.setdefault(r["site"], []).append((r["step"], r["saturated"]))
    # Units that saturate while a run learns well are a healthy network's business (a tanh layer
    # reaching large targets); a finding needs them flat from the start, or a loss that did not fall.
    finite = [v for _, v in losses if math.isfinite(v)]
    learned = len(finite) >= 10 and statistics.median(finite[-5:]) <= LEARNED * statistics.median(finite[:3])
    for site, rows in shares.items():
        med = statistics.median(v for _, v in rows)
        from_start = min(v for _, v in rows[:3]) >= SATURATED_SHARE
        if med >= SATURATED_SHARE and len(rows) >= 3 and (from_start or not learned):
            first = next(s for s, v in rows if v >= SATURATED_SHARE)
            limit = "|tanh| > 0.97" if m.site_kind.get(site) == "tanh" else "sigmoid < 0.015 or > 0.985"
            return Finding(
                "saturated-activation",
                "tanh/sigmoid units stuck at their limits",
                f"{site}: {med:.0%} of its outputs at {limit} (median of {len(rows)} sampled steps): "
                "their gradient is nearly 0",
                "nn.init.xavier_uniform_(w)  # weights ~ 1/sqrt(fan_in), not randn; standardized inputs",
                first,
            )
    return None


def output_range(m, losses):
    checks = m.range_checks
    if not checks:
        return None
    med = statistics.median(c[1] for c in checks)
    if med < OUTSIDE_SHARE:
        return None
    _, _, act, fn = checks[0]
    lo, hi = watch.RANGES[act]
    return Finding(
        "output-range-mismatch",
        "the output activation cannot reach the targets",
        f"the prediction comes straight from a {act} (range [{g(lo)}, {g(hi)}]) but {med:.0%} of {fn}'s targets "
        f"lie outside it (median of {len(checks)} sampled steps)",
        "return self.out(h)  # a linear output for regression: no activation on the last layer",
        next(c[0] for c in checks if c[1] >= OUTSIDE_SHARE),
    )


def input_scale(m, losses):
    if not m.inputs:
        return None
    rms = statistics.median(r["rms"] for r in m.inputs)
    if rms < INPUT_RMS:
        return None
    r = m.inputs[0]
    return Finding(
        "input-scale",
        "inputs far from standardized",
        f"the first layer's input has mean {g(r['mean'])}, std {g(r['std'])}, max |x| {g(r['max'])}: RMS {g(rms)}, "
        f"{g(rms**2)}× the second moment of standardized inputs, so the first layer's steps are that much larger",
        "x = (x - mean) / std  # the training set's mean and std (images: ToTensor(), then Normalize(mean, std))",
        r["step"],
    )


def sum_reduction(m, losses):
    s = m.sum_reduction
    if s is None:
        return None
    kinds = m.optimizer_kinds
    if kinds and all(k in watch.SCALE_FREE for k in kinds):
        return None  # adaptive steps do not grow with the loss's scale
    lr = m.lr[0][1] if m.lr else None
    eff = f": lr {g(lr)} acts as {g(lr * s['batch'])} on the mean loss" if lr else ""
    return Finding(
        "sum-reduction",
        "a sum loss makes the step grow with the batch",
        f"the loss is a sum over a batch of {s['batch']} ({s['how']}): its gradient is {s['batch']}× the mean's{eff}",
        "loss = F.mse_loss(y_pred, y)  # reduction='mean' (the default), with lr × B for the same step",
        s["step"],
    )


def ill_conditioned(m, losses):
    if m.gram is None or not m.gram_rows:
        return None
    trained = set().union(*m.optimizer_params) if m.optimizer_params else set()
    if not trained or not trained <= set(m.gram_params) or m.gram_params[0] not in trained:
        return None  # not a linear model: its Hessian is not the inputs' Gram matrix
    h = m.gram / m.gram_rows
    adaptive = m.optimizer_kinds and all(k in watch.SCALE_FREE for k in m.optimizer_kinds)
    if adaptive:  # per-weight step sizes undo the features' scales: what is left is their correlation
        d = h.diagonal().clamp_min(1e-300).rsqrt()
        h = h * d[:, None] * d[None, :]
    lam = torch.linalg.eigvalsh(h)
    top = float(lam[-1])
    kept = lam[lam > top * 1e-14]  # directions the data never spans do not slow the loss
    kappa = top / float(kept[0]) if len(kept) else math.inf
    if kappa < KAPPA:
        return None
    return Finding(
        "ill-conditioned",
        "curvature spread so wide that SGD crawls",
        "this linear model's loss has the Hessian ∝ its inputs' Gram matrix XᵀX/n"
        + (" (scaled per feature, as Adam-like steps see it)" if adaptive else "")
        + f": condition number κ = {g(kappa)}; at the largest stable lr (2/λmax) the flattest direction shrinks "
        f"by 1 − 2/κ a step: ~{g(kappa / 2)} steps per e-fold",
        "features = (features - features.mean(0)) / features.std(0)  # or an orthogonal basis (Legendre on [-1, 1])",
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


CHECKS = (
    broadcast,
    missing_zero_grad,
    probabilities,
    lr_collapsed,
    no_gradient,
    not_updated,
    batchnorm_one,
    diverged,
    unshuffled,
    dead_relu,
    saturated,
    output_range,
    input_scale,
    sum_reduction,
    ill_conditioned,
    at_chance,
)
