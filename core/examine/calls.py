"""What the examiner measures at the torch calls of a sampled step (the TorchFunctionMode in
hooks.py calls these): activations (dead and saturated shares), the model's input (its scale,
a linear model's Gram matrix), batch norm's batch size, and the loss calls (shapes, reduction,
probabilities fed to a logits loss, the targets' range and spread inside a batch).

A few tensor operations a call, no device sync: the numbers are read when the examination
ends (`later.Later`). Nothing here decides anything: the findings modules read the numbers.
"""

from __future__ import annotations

import math
import weakref
from collections import defaultdict

import torch

from core.examine import watch
from core.examine.later import Later

SPREAD_MIN = 6  # sampled batches of one loss call site before its order is judged (steps 1-5 and 20)
SPREAD_BATCHES = 40  # enough sampled batches to judge the targets' order from; later ones are not read
PROBABILITY_CHECKS = 20  # loss calls checked for probabilities fed to a logits loss; the input's kind does not change


def _units(out: torch.Tensor) -> torch.Tensor:
    """(units,) bool: which units fired (> 0) on any input. Units: dim 1 for (B, F) and
    (B, C, H, W); the last dim for (B, T, F) sequences. One reduction (the largest value per
    unit), then a comparison on the units alone: two small ops, not a comparison of the whole."""
    if out.dim() <= 1:  # one value per sample: a single unit
        return (out.amax() > 0).reshape(1)
    unit = out.dim() - 1 if out.dim() == 3 else 1
    return out.amax(dim=tuple(d for d in range(out.dim()) if d != unit)) > 0


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """a is b, or a view of it (a .squeeze(), a .view())."""
    try:
        return a is b or (a.numel() == b.numel() and a.data_ptr() == b.data_ptr() and a.device == b.device)
    except RuntimeError:
        return False


class Spread:
    """Target spread inside batches against across all batches seen: for a batch drawn at
    random the within-batch (unbiased) spread matches the whole; sorted data's is far narrower.
    Class indices use the Gini impurity (the variance of one-hot vectors); numbers the total
    variance over a target's columns (a (B, K) one-hot or soft target: per class). Sums stay
    tensors on the targets' device; `ratio()` reads them once."""

    def __init__(self):
        self.batches, self.step = 0, 0
        self.within: torch.Tensor | float = 0.0
        self.counts: torch.Tensor | None = None  # classes: pooled counts
        self.n, self.s, self.ss = 0, None, None  # numbers: pooled per-column moments

    def add(self, target: torch.Tensor, step: int) -> None:
        b = target.shape[0] if target.dim() else 1
        if b < 2 or self.batches >= SPREAD_BATCHES:
            return
        if not target.is_floating_point():
            counts = torch.bincount(target.detach().reshape(-1).long().clamp_min(0)).double()
            p = counts / counts.sum()
            within = 1 - (p * p).sum()
            if self.counts is None or len(self.counts) < len(counts):
                grown = counts.new_zeros(len(counts))
                if self.counts is not None:
                    grown[: len(self.counts)] += self.counts
                self.counts = grown
            self.counts[: len(counts)] += counts
        else:
            t = target.detach().reshape(b, -1).double()  # (samples, columns)
            if self.s is not None and self.s.shape[0] != t.shape[1]:
                return  # another kind of target (a second loss of another width)
            within = t.var(0, unbiased=False).sum()
            s, ss = t.sum(0), (t * t).sum(0)
            self.n += b
            self.s, self.ss = (s, ss) if self.s is None else (self.s + s, self.ss + ss)
        self.within = self.within + within * (b / (b - 1))
        self.batches += 1
        if self.batches == SPREAD_MIN:  # enough batches to judge from
            self.step = step

    def ratio(self) -> float | None:
        """Mean within-batch spread / the spread of everything seen (about 1 when shuffled)."""
        if self.batches < SPREAD_MIN:
            return None
        if self.counts is not None:
            p = self.counts / self.counts.sum()
            whole = float(1 - (p * p).sum())
        else:
            mean = self.s / self.n
            whole = float((self.ss / self.n - mean * mean).sum())
        return float(self.within) / self.batches / whole if whole > 1e-12 else None


class Calls:
    """The torch-call half of the Monitor (monitor.py): its fields and the mode's callbacks."""

    def __init__(self):
        self.later = Later()
        self._ordinal = 0
        self._input_seen = False
        self.batch = None  # the current step's model-input batch size
        self.last_act = None  # (tensor, kind, site) of the latest activation
        self.last_loss = None  # (tensor, info) of the latest loss call
        self.pending_loss = None  # the latest loss value not yet backpropagated
        self.acts: list[dict] = []  # step, site, kind, dead, saturated, mean, std
        self.inputs: list[dict] = []  # step, mean, std, rms, max
        self.site_kind: dict[str, str] = {}
        self.window: dict[str, list] = {}  # relu site -> [fired units so far, inputs, batches]
        self.dead_windows: dict[str, list[list]] = defaultdict(list)  # [step, share, inputs, units]
        self.loss_calls: dict[tuple, dict] = {}
        self.broadcast: dict | None = None
        self.probabilities: list[list] = []  # [step, looks like probabilities, fed by softmax/sigmoid]
        self.probabilities_fn = ""
        self.range_checks: list[list] = []  # [step, share outside, activation, loss]
        # per loss call site (function, script line and offset): a GAN's discriminator sees all-ones targets at one
        # call and all-zeros at the next, each by design; data out of order narrows every batch of one site
        self.spread: dict[tuple, Spread] = defaultdict(Spread)
        self.constants: weakref.WeakValueDictionary = weakref.WeakValueDictionary()  # id -> tensor of torch.ones & co
        self.bn = {"calls": 0, "ones": 0, "first": None}
        self.output_sites: set[str] = set()
        # linear-model curvature: the Gram matrix of the first layer's inputs
        self.gram: torch.Tensor | None = None
        self.gram_params: tuple[int, ...] = ()
        self.gram_rows = 0
        self.linear_model = False
        self.first_weight: torch.Tensor | None = None  # a non-linear model's first Linear: its input curvature

    def on_constant(self, out) -> None:
        if isinstance(out, torch.Tensor):
            self.constants[id(out)] = out

    def on_act(self, kind: str, out) -> None:
        if not isinstance(out, torch.Tensor) or not out.requires_grad:  # a model's, not data preparation
            return
        self._ordinal += 1
        where = self.names.get(id(self.stack[-1]), "") if self.stack else ""
        site = f"{kind} #{self._ordinal}" + (f" in {where}" if where else "")
        self.site_kind.setdefault(site, kind)
        self.last_act = (out, kind, site)
        if kind == "softmax" or out.numel() < 2:
            return
        o = out.detach()
        row = {"step": self.current, "site": site, "kind": kind, "dead": None, "saturated": None}
        std, mean = torch.std_mean(o if o.is_floating_point() else o.float())
        if kind == "relu":
            fired = _units(o)
            self.later.row(row, ("mean", "std", "dead"), torch.stack([mean, std, 1 - fired.float().mean()]))
            w = self.window.setdefault(site, [torch.zeros_like(fired), 0, 0])
            if w[0].shape != fired.shape:
                w[:] = [torch.zeros_like(fired), 0, 0]
            w[0] |= fired
            w[1] += o.shape[0] if o.dim() > 1 else 1
            w[2] += 1
            if w[2] == 5:  # a window of 5 sampled batches: units that fired on none of their inputs
                self._close_window(site, self.current)
        else:
            stuck = o.abs() > 0.97 if kind == "tanh" else (o < 0.015) | (o > 0.985)
            self.later.row(row, ("mean", "std", "saturated"), torch.stack([mean, std, stuck.float().mean()]))
        self.acts.append(row)

    def _close_window(self, site: str, step: int) -> None:
        w = self.window[site]
        entry = [step, None, w[1], w[0].numel()]
        self.later.put(1 - w[0].float().mean(), lambda v: entry.__setitem__(1, v[0]))
        self.dead_windows[site].append(entry)
        w[:] = [torch.zeros_like(w[0]), 0, 0]

    def on_layer(self, func, args, kwargs) -> None:
        if self._input_seen or not args or not torch.is_grad_enabled():
            return
        x = args[0]
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.requires_grad or x.dim() == 0:
            return
        weight = args[1] if len(args) > 1 else kwargs.get("weight")
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        if not any(isinstance(w, torch.Tensor) and w.requires_grad for w in (weight, bias, *kwargs.values())):
            return  # data preparation (a fixed projection), not a trained layer
        self._input_seen = True
        self.batch = x.shape[0] if x.dim() > 1 else 1
        xd = x.detach()
        var, mean = torch.var_mean(xd, correction=0)
        row = {"step": self.current}

        def use(v, row=row):
            mean, var, top = v[0], max(v[1], 0.0), v[2]
            row.update(mean=mean, std=math.sqrt(var), rms=math.sqrt(var + mean * mean), max=top)

        self.later.put(torch.stack([mean, var, xd.abs().amax()]), use)
        self.inputs.append(row)
        if watch.LAYERS.get(func) == "linear" and isinstance(weight, torch.Tensor) and x.shape[-1] <= 256:
            ids = (id(weight),) + ((id(bias),) if bias is not None else ())
            self.linear_model = not self.trained_ids() - set(ids)  # only this one layer trains
            a = xd.double().reshape(-1, x.shape[-1])
            if bias is not None and self.linear_model:
                a = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype, device=a.device)], 1)
            g = a.T @ a
            if self.gram is None or self.gram.shape != g.shape or self.gram_params != ids:
                self.gram, self.gram_params, self.gram_rows = g, ids, len(a)
            else:
                self.gram += g
                self.gram_rows += len(a)
            self.first_weight = weight

    def on_batch_norm(self, args, kwargs) -> None:
        training = args[5] if len(args) > 5 else kwargs.get("training", False)
        x = args[0] if args else None
        if not training or not isinstance(x, torch.Tensor) or x.dim() < 2:
            return
        self.bn["calls"] += 1
        if x.shape[0] == 1:
            self.bn["ones"] += 1
            self.bn["first"] = self.bn["first"] or self.current
            self.bn.setdefault("shape", tuple(x.shape))
            if self.stack:
                self.bn.setdefault("module", self.names.get(id(self.stack[-1]), type(self.stack[-1]).__name__))

    def on_loss(self, func, family: str, args, kwargs, out) -> None:
        if len(args) < 2 or not isinstance(out, torch.Tensor) or not torch.is_grad_enabled():
            return
        x, y = args[0], args[1]
        if not isinstance(x, torch.Tensor) or not isinstance(y, torch.Tensor):
            return
        fn = watch.loss_name(func)
        reduction = kwargs.get("reduction", "mean")
        key = (fn, tuple(x.shape), tuple(y.shape), reduction)
        call = self.loss_calls.setdefault(key, {"first_step": self.current, "count": 0})
        call["count"] += 1
        info = {"fn": fn, "family": family, "reduction": reduction, "batch": x.shape[0] if x.dim() else 1}
        if family == "class" and x.dim() >= 2 and x.shape[1] >= 2 and reduction == "mean":
            info["chance"] = math.log(x.shape[1])  # a uniform guess over K classes
        elif family == "binary" and reduction == "mean" and bool(((y == 0) | (y == 1)).all()):
            info["chance"] = math.log(2)  # hard 0/1 labels only: soft targets have another floor
        self.last_loss = (out, info)
        self.pending_loss = (self.current, out.detach())
        if family == "regression" and x.shape != y.shape and self.broadcast is None:
            try:
                both = torch.broadcast_shapes(x.shape, y.shape)
            except RuntimeError:
                both = None
            if both is not None and math.prod(both) > max(x.numel(), y.numel()):
                self.broadcast = {"step": self.current, "fn": fn, "input": tuple(x.shape), "target": tuple(y.shape)}
                self.broadcast["broadcast"] = tuple(both)
                self.broadcast["at"] = watch.script_line()
        fed = self.last_act if self.last_act is not None and _same(x, self.last_act[0]) else None
        if func in watch.WANTS_LOGITS and x.numel() >= 2:
            self._check_probabilities(func, x, fed)
        if fed is not None and family == "binary" and func is not watch.F.binary_cross_entropy_with_logits:
            self.output_sites.add(fed[2])  # a sigmoid into BCELoss: near 0 and 1 means confident, not stuck
        if family == "regression" and fed is not None and fed[1] in watch.RANGES and y.is_floating_point():
            lo, hi = watch.RANGES[fed[1]]
            check = [self.current, None, fed[1], fn]
            self.later.put(((y < lo) | (y > hi)).float().mean(), lambda v: check.__setitem__(1, v[0]))
            self.range_checks.append(check)
        if (family in ("class", "binary") or y.is_floating_point()) and self.constants.get(id(y)) is not y:
            self.spread[(fn, watch.script_site())].add(y, self.current)

    def _check_probabilities(self, func, x, fed) -> None:
        if len(self.probabilities) >= PROBABILITY_CHECKS:
            return
        logits = func is watch.F.binary_cross_entropy_with_logits
        check = [self.current, False, fed is not None and fed[1] in ("softmax", "sigmoid")]
        self.probabilities.append(check)
        self.probabilities_fn = watch.loss_name(func)
        if not logits and x.dim() < 2:
            return  # one sample's class scores: no rows to sum
        xd = x.detach()
        # in [0, 1] (and rows summing to 1 for class scores): a few reductions, compared when read
        parts = [*torch.aminmax(xd)] + ([] if logits else [*torch.aminmax(xd.sum(1))])
        big = xd.numel() >= 16

        def use(v, check=check, big=big):
            inside = v[0] >= 0 and v[1] <= 1
            check[1] = inside and (big if logits else abs(v[2] - 1) < 1e-3 and abs(v[3] - 1) < 1e-3)

        self.later.put(torch.stack(parts).float(), use)
