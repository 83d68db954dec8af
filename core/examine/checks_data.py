"""The findings about what the model is fed and computes: the loss call (shapes, reduction,
probabilities), the data (order, scale, range, batch size) and the activation layers. Each
check reads the Monitor's numbers after the run (findings.py)."""

from __future__ import annotations

import math
import statistics

from core.examine import watch
from core.examine.findings import (
    DEAD_SHARE,
    INPUT_RMS,
    LEARNED,
    OUTSIDE_SHARE,
    SATURATED_SHARE,
    SPREAD_RATIO,
    Finding,
    g,
)


def broadcast(m, losses):
    b = m.broadcast
    if b is None:
        return None
    pairs, wanted = math.prod(b["broadcast"]), max(math.prod(b["input"]), math.prod(b["target"]))
    at = f" at {b['at'][0]}, line {b['at'][1]}" if b.get("at") else ""
    return Finding(
        "loss-shape-broadcast",
        "prediction and target shapes differ and broadcast in the loss",
        f"{b['fn']}{at} got prediction {b['input']} and target {b['target']}: they broadcast to {b['broadcast']}, "
        f"so the loss averages {pairs:,} pairs instead of {wanted:,}",
        "loss = F.mse_loss(y_pred, y.view_as(y_pred))  # one shape for both, e.g. (B, 1) and (B, 1)",
        b["step"],
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


def unshuffled(m, losses):
    for (fn, at), spread in m.spread.items():
        r = spread.ratio()
        if r is not None and r < SPREAD_RATIO:
            where = f" (line {at[1]})" if at else ""
            return Finding(
                "unshuffled-data",
                "batches arrive in an order tied to the target",
                f"{fn}{where}: its targets spread {g(r * 100)}% as much inside a batch as across all "
                f"{spread.batches} sampled batches (a shuffled batch: about 100%): each batch holds a narrow "
                "slice of the targets",
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
