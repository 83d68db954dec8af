"""What the examiner measures while a script trains: the hooks call these methods.

Cheap counters every step (the loss, the learning rates, the loss calls' shapes, the
batch size); detailed statistics on sampled steps only (`watch.sampled`: gradient norms,
update / weight ratios, activation shares, input statistics, target spreads). Nothing
here decides anything: `findings.py` reads the numbers at the end.
"""

from __future__ import annotations

import math
from collections import defaultdict

import torch

from core.examine import watch


def _item(t: torch.Tensor) -> float:
    return float(t.detach().float().mean())


def _units(out: torch.Tensor) -> torch.Tensor:
    """(units,) bool: which units fired (> 0) on any input. Units: dim 1 for (B, F) and
    (B, C, H, W); the last dim for (B, T, F) sequences."""
    if out.dim() <= 1:  # one value per sample: a single unit
        return (out > 0).any().reshape(1)
    dim = out.dim() - 1 if out.dim() == 3 else 1
    return (out > 0).transpose(0, dim).reshape(out.shape[dim], -1).any(1)


class Spread:
    """Target spread inside batches against across all batches seen: for a batch drawn at
    random the within-batch (unbiased) spread matches the whole; sorted data's is far narrower.
    Class indices use the Gini impurity (the variance of one-hot vectors); numbers the total
    variance over a target's columns (a (B, K) one-hot or soft target: per class)."""

    def __init__(self):
        self.batches, self.within, self.step = 0, 0.0, 0
        self.counts: torch.Tensor | None = None  # classes: pooled counts
        self.n, self.s, self.ss = 0, None, None  # numbers: pooled per-column moments

    def add(self, target: torch.Tensor, step: int) -> None:
        b = target.shape[0] if target.dim() else 1
        if b < 2:
            return
        t = target.detach().reshape(-1)
        if not t.is_floating_point():
            counts = torch.bincount(t.long().clamp_min(0)).double().cpu()
            p = counts / counts.sum()
            within = float(1 - (p * p).sum())
            if self.counts is None or len(self.counts) < len(counts):
                grown = torch.zeros(len(counts), dtype=torch.float64)
                if self.counts is not None:
                    grown[: len(self.counts)] += self.counts
                self.counts = grown
            self.counts[: len(counts)] += counts
        else:
            t = target.detach().reshape(b, -1).double()  # (samples, columns)
            if self.s is not None and self.s.shape[0] != t.shape[1]:
                return  # another kind of target (a second loss of another width)
            within = float(t.var(0, unbiased=False).sum())
            s, ss = t.sum(0).cpu(), (t * t).sum(0).cpu()
            self.n += b
            self.s, self.ss = (s, ss) if self.s is None else (self.s + s, self.ss + ss)
        self.within += within * b / (b - 1)
        self.batches += 1
        if self.batches == 8:  # enough batches to judge from
            self.step = step

    def ratio(self) -> float | None:
        """Mean within-batch spread / the spread of everything seen (about 1 when shuffled)."""
        if self.batches < 8:
            return None
        if self.counts is not None:
            p = self.counts / self.counts.sum()
            whole = float(1 - (p * p).sum())
        else:
            mean = self.s / self.n
            whole = float((self.ss / self.n - mean * mean).sum())
        return self.within / self.batches / whole if whole > 1e-12 else None


class Monitor:
    def __init__(self):
        self.step = 0  # optimizer steps completed (the most stepped optimizer's count)
        self.opt_steps: dict[int, int] = defaultdict(int)
        self.optimizers: dict[int, torch.optim.Optimizer] = {}
        self.names: dict[int, str] = {}  # id(parameter or module) -> its qualified name
        self.roots: dict[int, torch.nn.Module] = {}  # modules called at top level with grad enabled
        self.depth = 0
        self.stack: list[torch.nn.Module] = []
        self.notes: list[str] = []
        # per step
        self.loss: list[tuple[int, torch.Tensor]] = []  # (step, loss at backward)
        self.chance: dict[int, float | None] = {}  # sampled step -> ln K when its loss was a classification loss
        self.lr: list[tuple[int, float]] = []
        self.lr_ratio: list[tuple[int, float]] = []  # the smallest lr / its group's peak so far
        self.lr_peak: dict[tuple[int, int], float] = {}
        self.sched_steps: dict[str, int] = defaultdict(int)
        self._step_losses: list[torch.Tensor] = []
        self._ordinal = 0
        self._input_seen = False
        self.batch = None  # the current step's model-input batch size
        self.last_act = None  # (tensor, kind, site) of the latest activation
        self.last_loss = None  # (tensor, info) of the latest loss call
        self.pending_loss = None  # the latest loss value not yet backpropagated
        # sampled
        self.layers: list[dict] = []  # step, layer, grad_norm, update_ratio
        self.acts: list[dict] = []  # step, site, kind, dead, saturated, mean, std
        self.inputs: list[dict] = []  # step, mean, std, rms, max
        self.site_kind: dict[str, str] = {}
        self.window: dict[str, list] = {}  # relu site -> [fired units so far, inputs, batches]
        self.dead_windows: dict[str, list[tuple[int, float, int, int]]] = defaultdict(list)
        self.grad_checks: list[dict] = []  # step, none, zero, total, elements (per check of an optimizer)
        self.not_held: dict[str, int] = {}  # parameter name -> weights, for grads no optimizer holds
        self.frozen: list[str] = []  # plain tensors with requires_grad False in an optimizer
        self.all_frozen = False
        self._snap: dict[int, list[torch.Tensor]] = {}
        self._rows_from = 0
        # missing zero_grad: optimizer -> stepped and not zeroed since / grads found still set at a backward
        self.dirty: dict[int, bool] = {}
        self.suspect: dict[int, int] = {}
        self.accumulated: list[int] = []
        # loss calls
        self.loss_calls: dict[tuple, dict] = {}
        self.broadcast: dict | None = None
        self.sum_reduction: dict | None = None
        self.probabilities: list[tuple[int, bool, bool]] = []  # step, looks like probabilities, fed by softmax/sigmoid
        self.probabilities_fn = ""
        self.range_checks: list[tuple[int, float, str, str]] = []  # step, share outside, activation, loss
        self.spread: dict[str, Spread] = defaultdict(Spread)
        self.bn = {"calls": 0, "ones": 0, "first": None}
        self.first_loss: float | None = None
        self.sharpness: dict | None = None  # measured once, when the loss has grown 10× (divergence evidence)
        self.output_sites: set[str] = set()
        # linear-model curvature: the Gram matrix of the first layer's inputs
        self.gram: torch.Tensor | None = None
        self.gram_params: tuple[int, ...] = ()
        self.gram_rows = 0
        # kept after release(): what the optimizers were
        self.optimizer_kinds: list[str] = []
        self.optimizer_params: list[set[int]] = []

    # --- helpers
    @property
    def current(self) -> int:
        return self.step + 1

    def is_sampled(self) -> bool:
        return watch.sampled(self.current)

    def name_params(self, root: torch.nn.Module) -> None:
        if id(root) in self.roots:
            return
        self.roots[id(root)] = root
        for n, m in root.named_modules():  # "hidden (Linear)", "1 (ReLU)"; the root by its class
            self.names.setdefault(id(m), f"{n} ({type(m).__name__})" if n else type(m).__name__)
        for n, p in root.named_parameters():
            self.names.setdefault(id(p), n)

    def param_name(self, p: torch.Tensor, group: int, j: int) -> str:
        return self.names.get(id(p)) or f"group {group} param {j} {tuple(p.shape)}"

    # --- modules
    def forward_pre(self, module: torch.nn.Module) -> None:
        if self.depth == 0 and torch.is_grad_enabled():
            self.name_params(module)
        self.depth += 1
        self.stack.append(module)

    def forward_post(self) -> None:
        self.depth = max(0, self.depth - 1)
        if self.stack:
            self.stack.pop()

    # --- torch calls
    def on_act(self, kind: str, out) -> None:
        if not isinstance(out, torch.Tensor) or not out.requires_grad:  # a model's, not data preparation
            return
        self._ordinal += 1
        where = self.names.get(id(self.stack[-1]), "") if self.stack else ""
        site = f"{kind} #{self._ordinal}" + (f" in {where}" if where else "")
        self.site_kind.setdefault(site, kind)
        self.last_act = (out, kind, site)
        if kind == "softmax" or not self.is_sampled() or out.numel() == 0:
            return
        o = out.detach()
        row = {"step": self.current, "site": site, "kind": kind, "dead": None, "saturated": None}
        row["mean"], row["std"] = _item(o), float(o.float().std()) if o.numel() > 1 else 0.0
        if kind == "relu":
            fired = _units(o)
            row["dead"] = 1 - _item(fired)
            w = self.window.setdefault(site, [torch.zeros_like(fired), 0, 0])
            if w[0].shape != fired.shape:
                w[:] = [torch.zeros_like(fired), 0, 0]
            w[0] |= fired
            w[1] += o.shape[0] if o.dim() > 1 else 1
            w[2] += 1
            if w[2] == 5:  # a window of 5 sampled batches: units that fired on none of their inputs
                self.dead_windows[site].append((self.current, 1 - _item(w[0]), w[1], fired.numel()))
                w[:] = [torch.zeros_like(fired), 0, 0]
        elif kind == "tanh":
            row["saturated"] = _item(o.abs() > 0.97)
        elif kind == "sigmoid":
            row["saturated"] = _item((o < 0.015) | (o > 0.985))
        self.acts.append(row)

    def on_layer(self, func, args, kwargs) -> None:
        if self._input_seen or not args or not torch.is_grad_enabled():
            return
        x = args[0]
        if not isinstance(x, torch.Tensor) or not x.is_floating_point() or x.requires_grad or x.dim() == 0:
            return
        if not any(isinstance(w, torch.Tensor) and w.requires_grad for w in (*args[1:3], *kwargs.values())):
            return  # data preparation (a fixed projection), not a trained layer
        self._input_seen = True
        self.batch = x.shape[0] if x.dim() > 1 else 1
        if not self.is_sampled():
            return
        xd = x.detach()
        stats = torch.stack([xd.mean(), xd.square().mean(), xd.abs().amax()]).double().tolist()  # one transfer
        mean, square, top = stats
        std = math.sqrt(max(square - mean * mean, 0.0))
        self.inputs.append({"step": self.current, "mean": mean, "std": std, "rms": math.sqrt(square), "max": top})
        weight = args[1] if len(args) > 1 else kwargs.get("weight")
        bias = args[2] if len(args) > 2 else kwargs.get("bias")
        if watch.LAYERS.get(func) == "linear" and isinstance(weight, torch.Tensor) and x.shape[-1] <= 256:
            trained = {id(p) for o in self.optimizers.values() for p in _params(o) if p.requires_grad}
            if trained - {id(weight), id(bias)}:
                return  # more than this one layer trains: not a linear model, no Gram matrix needed
            a = xd.double().reshape(-1, x.shape[-1])
            if bias is not None:
                a = torch.cat([a, torch.ones(len(a), 1, dtype=a.dtype, device=a.device)], 1)
            g = (a.T @ a).cpu()
            ids = (id(weight),) + ((id(bias),) if bias is not None else ())
            if self.gram is None or self.gram.shape != g.shape or self.gram_params != ids:
                self.gram, self.gram_params, self.gram_rows = g, ids, len(a)
            else:
                self.gram += g
                self.gram_rows += len(a)

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
        elif family == "binary" and reduction == "mean" and self.is_sampled() and bool(((y == 0) | (y == 1)).all()):
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
        if not self.is_sampled():
            return
        fed = self.last_act if self.last_act is not None and _same(x, self.last_act[0]) else None
        if func in watch.WANTS_LOGITS and x.numel() >= 2:
            self._check_probabilities(func, x, fed)
        if fed is not None and family == "binary" and func is not watch.F.binary_cross_entropy_with_logits:
            self.output_sites.add(fed[2])  # a sigmoid into BCELoss: near 0 and 1 means confident, not stuck
        if family == "regression" and fed is not None and fed[1] in watch.RANGES and y.is_floating_point():
            lo, hi = watch.RANGES[fed[1]]
            outside = _item((y < lo) | (y > hi))
            self.range_checks.append((self.current, outside, fed[1], fn))
        if family in ("class", "binary") or y.is_floating_point():
            self.spread[fn].add(y, self.current)

    def _check_probabilities(self, func, x, fed) -> None:
        xd = x.detach()
        in_unit = bool((xd.min() >= 0) & (xd.max() <= 1))
        if func is watch.F.binary_cross_entropy_with_logits:
            looks = in_unit and xd.numel() >= 16
        else:
            looks = in_unit and x.dim() >= 2 and bool(((xd.sum(1) - 1).abs() < 1e-3).all())
        by_act = fed is not None and fed[1] in ("softmax", "sigmoid")
        self.probabilities.append((self.current, looks, by_act))
        self.probabilities_fn = watch.loss_name(func)

    # --- backward and steps
    def before_backward(self, root) -> None:
        if not isinstance(root, torch.Tensor):
            return
        if root.numel() == 1:
            self._step_losses.append(root.detach().reshape(()))
            if self.is_sampled() and root.requires_grad:
                self._watch_growth(root)
        self.pending_loss = None
        loss = self.last_loss
        if self.is_sampled() and self.current not in self.chance:
            self.chance[self.current] = loss[1].get("chance") if loss is not None and loss[0] is root else None
        if loss is not None and loss[0] is root:
            info = loss[1]
            if info["reduction"] == "sum" and info["batch"] > 1 and self.sum_reduction is None:
                how = f"{info['fn']}(reduction='sum')"
                self.sum_reduction = {"step": self.current, "batch": info["batch"], "how": how}
        elif root.grad_fn is not None and root.grad_fn.name() == "SumBackward0" and self.sum_reduction is None:
            sizes = tuple(getattr(root.grad_fn, "_saved_self_sym_sizes", ()))
            if sizes and self.batch and self.batch > 1 and sizes[0] == self.batch:
                self.sum_reduction = {"step": self.current, "batch": self.batch, "how": f".sum() over {sizes}"}
        for oid, dirty in self.dirty.items():  # grads left over from the last step at this backward?
            if dirty and oid not in self.suspect and self.is_sampled():
                grads = [p.grad for p in _params(self.optimizers[oid]) if p.grad is not None]
                if grads and bool(torch.stack(torch._foreach_norm(grads)).sum() > 0):
                    self.suspect[oid] = self.current
        self.last_act, self.last_loss, self._ordinal, self.stack, self.depth = None, None, 0, [], 0

    def _watch_growth(self, root: torch.Tensor) -> None:
        """On a sampled step whose loss has grown 10× past the first: the sharpness (the loss's
        top Hessian eigenvalue, core/curvature.py) against the optimizer's stability line, once.
        Measured here, before the script's backward, while the step's graph is still whole."""
        value = float(root.detach())
        if self.first_loss is None:
            self.first_loss = value
            return
        if self.sharpness is not None or not self.optimizers or not math.isfinite(value):
            return
        if not (self.first_loss > 0 and value >= 10 * self.first_loss):
            return
        from core import curvature

        opt = next(iter(self.optimizers.values()))
        params = [p for p in _params(opt) if p.requires_grad]
        pre = curvature.preconditioner(opt, params)
        g = torch.Generator().manual_seed(0)  # evidence, not a fit: 1% is precise enough, and cheaper
        s = curvature.top_eigenvalue(lambda: root, params, precondition=pre, generator=g, iters=12, tol=1e-2)
        self.sharpness = {"step": self.current, "value": s.value, "line": curvature.stability_limit(opt)}
        self.sharpness["optimizer"] = type(opt).__name__

    def zeroed(self, params: set[int] | None, opt=None) -> None:
        for oid in list(self.dirty):
            if (opt is not None and oid == id(opt)) or (
                params is not None and any(id(p) in params for p in _params(self.optimizers[oid]))
            ):
                self.dirty[oid] = False
                self.suspect.pop(oid, None)

    def step_pre(self, opt: torch.optim.Optimizer) -> None:
        oid = id(opt)
        if oid not in self.optimizers:
            self.optimizers[oid] = opt
            self.dirty[oid] = False
            params = _params(opt)
            frozen = [p for p in params if not p.requires_grad]
            self.all_frozen = self.all_frozen or (bool(params) and len(frozen) == len(params))
            plain = [p for p in frozen if not isinstance(p, torch.nn.Parameter)]
            self.frozen += [f"{tuple(p.shape)} tensor" for p in plain]
        if oid in self.suspect and self.dirty.get(oid):
            self.accumulated.append(self.suspect.pop(oid))
        if self.opt_steps[oid] == self.step:  # the lead optimizer: log the learning rates once a step
            ratios = []
            for g, group in enumerate(opt.param_groups):
                lr = float(group.get("lr", 0.0))
                peak = self.lr_peak[(oid, g)] = max(self.lr_peak.get((oid, g), 0.0), lr)
                ratios.append(lr / peak if peak > 0 else 1.0)
                if g == 0:
                    self.lr.append((self.current, lr))
            if ratios:
                self.lr_ratio.append((self.current, min(ratios)))
        if self.is_sampled():
            self._check_grads(opt)

    def _check_grads(self, opt) -> None:
        rows, grads, weights = [], [], []
        none = zero = elements = missing = 0
        for g, group in enumerate(opt.param_groups):
            for j, p in enumerate(group["params"]):
                if not p.requires_grad:
                    continue
                elements += p.numel()
                if p.grad is None:
                    none += 1
                    missing += p.numel()
                    continue
                rows.append(self.param_name(p, g, j))
                grads.append(p.grad)
                weights.append(p)
        norms = torch.stack(torch._foreach_norm([gr.float() for gr in grads])).tolist() if grads else []
        for n, p in zip(norms, weights, strict=True):
            if n == 0:
                zero += 1
                missing += p.numel()
        total = none + len(grads)
        self.grad_checks.append({"step": self.current, "none": none, "zero": zero, "total": total, "missing": missing})
        self.grad_checks[-1]["elements"] = elements
        self._rows_from = len(self.layers)  # this check's rows, for step_post's update ratios
        for name, n in zip(rows, norms, strict=True):
            self.layers.append({"step": self.current, "layer": name, "grad_norm": n, "update_ratio": None})
        if sum(p.numel() for p in weights) <= 50_000_000:
            self._snap[id(opt)] = [p.detach().clone() for p in weights]
        held = {id(p) for o in self.optimizers.values() for p in _params(o)}
        for root in self.roots.values():
            for n, p in root.named_parameters():
                if id(p) not in held and p.grad is not None and p.requires_grad:
                    self.not_held[n] = p.numel()

    def step_post(self, opt) -> None:
        oid = id(opt)
        self.opt_steps[oid] += 1
        self.dirty[oid] = True
        before = self._snap.pop(oid, None)
        if self.opt_steps[oid] <= self.step:  # not the lead optimizer: its step is not a new step
            return
        self.step = self.opt_steps[oid]
        if len(self._step_losses) == 1:
            self.loss.append((self.step, self._step_losses[0]))
        elif self._step_losses:  # several backward calls a step (accumulation): their mean
            self.loss.append((self.step, torch.stack(self._step_losses).float().mean()))
        self._step_losses = []
        if before is not None:
            after = [p.detach() for p in _params(opt) if p.requires_grad and p.grad is not None]
            if after and len(after) == len(before):
                delta = torch._foreach_norm(torch._foreach_sub(after, before))
                size = torch._foreach_norm(before)
                ratios = (torch.stack(delta) / torch.stack(size).clamp_min(1e-12)).tolist()
                rows = self.layers[self._rows_from :]
                for r, v in zip(rows, ratios, strict=False):
                    r["update_ratio"] = v
        self._ordinal, self._input_seen, self.last_act, self.stack, self.depth = 0, False, None, [], 0

    def scheduler_step(self, sched) -> None:
        if self.step > 0:
            self.sched_steps[type(sched).__name__] += 1

    def losses(self) -> list[tuple[int, float]]:
        """(step, loss) for every step, from the tensors kept at backward (one transfer)."""
        if not self.loss:
            return []
        values = torch.stack([t.detach().float().cpu() for _, t in self.loss]).tolist()
        return [(s, v) for (s, _), v in zip(self.loss, values, strict=True)]

    def release(self) -> None:
        """Drop every reference to the script's objects (modules, optimizers, tensors)."""
        self.optimizer_kinds = [type(o).__name__ for o in self.optimizers.values()]
        self.optimizer_params = [{id(p) for p in _params(o) if p.requires_grad} for o in self.optimizers.values()]
        self.optimizers, self.roots, self._snap, self.stack = {}, {}, {}, []
        self.last_act = self.last_loss = None
        for site, w in self.window.items():  # the last, partial window counts too (2 batches or more)
            if w[2] >= 2:
                self.dead_windows[site].append((self.current - 1, 1 - _item(w[0]), w[1], w[0].numel()))
            w[0] = None


def _params(opt) -> list[torch.Tensor]:
    return [p for group in opt.param_groups for p in group["params"]]


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """a is b, or a view of it (a .squeeze(), a .view())."""
    try:
        return a is b or (a.numel() == b.numel() and a.data_ptr() == b.data_ptr() and a.device == b.device)
    except RuntimeError:
        return False
