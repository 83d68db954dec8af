"""What the examiner measures while a script trains: the hooks call these methods.

Cheap counters every step (the loss tensor at backward, the learning rates, which optimizer
stepped and whether its gradients were zeroed); detailed statistics on sampled steps only
(`watch.sampled`: gradient norms, update / weight ratios, and through calls.py the activation
shares, input statistics, loss calls and target spreads). A sampled step's numbers stay tensors
until the examination ends (`later.Later`): no device sync inside the training loop, except one
read of a sampled step's loss (the divergence check). Nothing here decides anything: the
findings modules read the numbers at the end.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict

import torch

from core.examine import conditioning, watch
from core.examine.calls import Calls
from core.examine.findings import KAPPA

MAX_SNAPSHOT = 50_000_000  # weights copied before a sampled step for its update / weight ratios
# A Hessian-vector product costs about 3 training steps (a forward, a backward and a double backward).
# A measurement is made only once the run so far is 4 times its cost or more (<= 25% extra).
HVP_STEPS, BUDGET = 3, 4
SHARPNESS_ITERS = 12  # the divergence evidence: power iterations at most


def _params(opt) -> list[torch.Tensor]:
    return [p for group in opt.param_groups for p in group["params"]]


class Monitor(Calls):
    def __init__(self):
        super().__init__()
        self.step = 0  # optimizer steps completed (the most stepped optimizer's count)
        self.sampled = watch.sampled(1)  # is the step under way (self.current) a sampled one?
        self.quick = False  # steps 2-5 took under watch.QUICK_STEP each: sample steps 6-100 more thinly
        self._t1 = 0.0  # when step 1 ended
        self.opt_steps: dict[int, int] = defaultdict(int)
        self.optimizers: dict[int, torch.optim.Optimizer] = {}
        self.names: dict[int, str] = {}  # id(parameter or module) -> its qualified name
        self.roots: dict[int, torch.nn.Module] = {}  # modules called at top level with grad enabled
        self.depth = 0
        self.stack: list[torch.nn.Module] = []
        self.notes: list[str] = []
        self._cache: dict = {}  # per optimizer / module / optimizer set: their parameter lists
        # per step
        self.loss: list[tuple[int, torch.Tensor]] = []  # (step, loss at backward)
        self.chance: dict[int, float | None] = {}  # sampled step -> ln K when its loss was a classification loss
        self.lr: list[tuple[int, float]] = []
        self.lr_ratio: list[tuple[int, float]] = []  # the smallest lr / its group's peak so far
        self.lr_peak: dict[tuple[int, int], float] = {}
        self.sched_steps: dict[str, int] = defaultdict(int)
        self._step_losses: list[torch.Tensor] = []
        self.unscaled: tuple[torch.Tensor, torch.Tensor] | None = None  # (scaler.scale(loss), loss): AMP
        self.scaled_losses = 0
        # sampled
        self.layers: list[dict] = []  # step, layer, grad_norm, update_ratio
        self.grad_checks: list[dict] = []  # step, none, zero, total, missing, elements (per check of an optimizer)
        self.not_held: dict[str, int] = {}  # parameter name -> weights, for grads no optimizer holds
        self.frozen: list[str] = []  # plain tensors with requires_grad False in an optimizer
        self.all_frozen = False
        self._snap: dict[int, tuple] = {}
        # missing zero_grad: optimizer -> stepped and not zeroed since / grads found still set at a backward
        self.dirty: dict[int, bool] = {}
        self.suspect: dict[int, tuple[int, torch.Tensor]] = {}
        self._accumulated: list[tuple[int, torch.Tensor]] = []
        self.accumulated: list[int] = []
        self.sum_reduction: dict | None = None
        # zero_grad between backward and step: the backward calls so far, and per optimizer that count when it was
        # zeroed and when it last stepped; zeroed after the latest backward since its last step = its grads cleared
        self.backwards = 0
        self._zeroed_at: dict[int, int] = {}
        self._stepped_at: dict[int, int] = {}
        self.first_loss: float | None = None
        self.sharpness: dict | None = None  # measured once, when the loss has grown 10× (divergence evidence)
        self.input_curvature: dict | None = None  # a non-linear model's, measured once (conditioning.py)
        # kept after release(): what the optimizers were
        self.optimizer_kinds: list[str] = []
        self.optimizer_params: list[set[int]] = []

    # --- helpers
    @property
    def current(self) -> int:
        return self.step + 1

    def name_params(self, root: torch.nn.Module) -> None:
        if id(root) in self.roots:
            return
        self.roots[id(root)] = root
        for n, m in root.named_modules():  # "hidden (Linear)", "1 (ReLU)"; the root by its class
            self.names.setdefault(id(m), f"{n} ({type(m).__name__})" if n else type(m).__name__)
        for n, p in root.named_parameters():
            self.names.setdefault(id(p), n)

    def trained_ids(self) -> set[int]:
        """The ids of every optimizer's parameters that require grad (cached per optimizer set)."""
        key = ("trained", len(self.optimizers))
        if key not in self._cache:
            self._cache[key] = {id(p) for o in self.optimizers.values() for p in _params(o) if p.requires_grad}
        return self._cache[key]

    def _opt_params(self, opt) -> list[tuple[str, torch.Tensor]]:
        """(name, parameter) of an optimizer's parameters that require grad (cached)."""
        n = sum(len(group["params"]) for group in opt.param_groups)
        key = ("opt", id(opt))
        if self._cache.get(key, (None,))[0] != n:
            named = [
                (self.names.get(id(p)) or f"group {g} param {j} {tuple(p.shape)}", p)
                for g, group in enumerate(opt.param_groups)
                for j, p in enumerate(group["params"])
                if p.requires_grad
            ]
            self._cache[key] = (n, named)
        return self._cache[key][1]

    # --- modules (sampled steps only: the hooks are installed with the TorchFunctionMode)
    def forward_pre(self, module: torch.nn.Module) -> None:
        if self.depth == 0 and torch.is_grad_enabled():
            self.name_params(module)
        self.depth += 1
        self.stack.append(module)

    def forward_post(self) -> None:
        self.depth = max(0, self.depth - 1)
        if self.stack:
            self.stack.pop()

    # --- backward and steps
    def scaled(self, out, loss) -> None:
        """GradScaler.scale(loss) -> out: out.backward() is loss's backward, scaled (AMP)."""
        if isinstance(out, torch.Tensor) and isinstance(loss, torch.Tensor) and out is not loss:
            self.unscaled = (out, loss)

    def before_backward(self, root) -> None:
        if not isinstance(root, torch.Tensor):
            return
        loss = root
        self.backwards += 1
        if self.unscaled is not None and self.unscaled[0] is root:  # scaler.scale(loss).backward()
            loss = self.unscaled[1]
            self.scaled_losses += 1
        self.unscaled = None
        if loss.numel() == 1:
            self._step_losses.append(loss.detach())
            if self.sampled and loss.requires_grad:
                self._watch_growth(loss)
                if self.input_curvature is None and self.gram_rows >= 256:
                    self._measure_conditioning(loss)
        self.pending_loss = None
        last = self.last_loss
        mine = last is not None and last[0] is loss
        if self.sampled and self.current not in self.chance:
            self.chance[self.current] = last[1].get("chance") if mine else None
        if self.sum_reduction is None:
            self._check_sum(loss, last[1] if mine else None)
        if self.sampled:
            for oid, dirty in self.dirty.items():  # grads left over from the last step at this backward?
                if dirty and oid not in self.suspect:
                    grads = [p.grad for p in _params(self.optimizers[oid]) if p.grad is not None]
                    if grads:
                        self.suspect[oid] = (self.current, torch.stack(torch._foreach_norm(grads)).sum())
        self.last_act, self.last_loss, self._ordinal, self.stack, self.depth = None, None, 0, [], 0

    def _check_sum(self, loss: torch.Tensor, info: dict | None) -> None:
        if info is not None:
            if info["reduction"] == "sum" and info["batch"] > 1:
                how = f"{info['fn']}(reduction='sum')"
                self.sum_reduction = {"step": self.current, "batch": info["batch"], "how": how}
        elif loss.grad_fn is not None and loss.grad_fn.name() == "SumBackward0":
            sizes = tuple(getattr(loss.grad_fn, "_saved_self_sym_sizes", ()))
            if sizes and self.batch and self.batch > 1 and sizes[0] == self.batch:
                self.sum_reduction = {"step": self.current, "batch": self.batch, "how": f".sum() over {sizes}"}

    def _watch_growth(self, loss: torch.Tensor) -> None:
        """On a sampled step whose loss has grown 10× past the first: the sharpness (the loss's
        top Hessian eigenvalue, core/curvature.py) against the optimizer's stability line, once.
        Measured here, before the script's backward, while the step's graph is still whole."""
        if self.sharpness is not None and self.first_loss is not None:
            return
        value = float(loss.detach())  # sync point: one read on a sampled step
        if self.first_loss is None:
            self.first_loss = value
            return
        if not self.optimizers or not math.isfinite(value) or not (0 < 10 * self.first_loss <= value):
            return
        if self.step < BUDGET * HVP_STEPS * (SHARPNESS_ITERS + 1):
            return  # a short run: the measurement would cost more than a quarter of it
        from core import curvature

        opt = next(iter(self.optimizers.values()))
        params = [p for p in _params(opt) if p.requires_grad]
        pre = curvature.preconditioner(opt, params)
        g = torch.Generator().manual_seed(0)  # evidence, not a fit: 1% is precise enough, and cheaper
        s = curvature.top_eigenvalue(
            lambda: loss, params, precondition=pre, generator=g, iters=SHARPNESS_ITERS, tol=1e-2
        )
        value, line = s.value, curvature.stability_limit(opt)  # both relative to the base lr (a schedule's start)
        base, lr = float(opt.defaults.get("lr", 0.0)), float(opt.param_groups[0]["lr"])
        if type(opt).__name__ not in watch.SCALE_FREE and base > 0 and lr > 0:  # in this step's lr: plain λmax, 2/lr
            value, line = value * base / lr, line * base / lr
        self.sharpness = {"step": self.current, "value": value, "line": line}
        self.sharpness["optimizer"] = type(opt).__name__

    def adaptive(self) -> bool:
        """Every optimizer scales its steps per weight (Adam-like)."""
        kinds = [type(o).__name__ for o in self.optimizers.values()] or self.optimizer_kinds
        return bool(kinds) and all(k in watch.SCALE_FREE for k in kinds)

    def _measure_conditioning(self, loss: torch.Tensor) -> None:
        """A non-linear model whose inputs' Gram matrix is ill-conditioned: is its loss? The Hessian
        restricted to the first layer's input directions (conditioning.py), once, on this step's batch."""
        if self.linear_model or self.first_weight is None or not self.optimizers:
            return  # a linear model's Hessian is its Gram matrix (checks_training.py)
        if self.step < BUDGET * HVP_STEPS * (self.first_weight.shape[-1] + 1):
            return  # one product per input feature, and the gradient's graph: later
        self.input_curvature = {"step": self.current, "kappa": None}
        gram = self.gram / self.gram_rows
        gram_kappa = conditioning.kappa(conditioning.scaled(gram) if self.adaptive() else gram)
        self.input_curvature["gram"] = gram_kappa
        if gram_kappa < KAPPA:
            return  # well-conditioned inputs: the measurement is not spent
        params = [p for p in _params(next(iter(self.optimizers.values()))) if p.requires_grad]
        a = conditioning.input_hessian(loss, params, self.first_weight)
        if a is not None:
            a = conditioning.scaled(a) if self.adaptive() else a
            self.input_curvature["kappa"] = conditioning.kappa(a, magnitude=True)
            self.input_curvature["features"] = a.shape[0]

    def zeroed(self, opt) -> None:
        oid = id(opt)
        self._zeroed_at[oid] = self.backwards
        if self.dirty.get(oid):
            self.dirty[oid] = False
            self.suspect.pop(oid, None)

    def module_zeroed(self, module: torch.nn.Module) -> None:
        """model.zero_grad(): the optimizers holding any of its parameters count as zeroed."""
        key = ("module", id(module), len(self.optimizers))
        if key not in self._cache:
            ids = {id(p) for p in module.parameters()}
            self._cache[key] = [o for o, opt in self.optimizers.items() if any(id(p) in ids for p in _params(opt))]
        for oid in self._cache[key]:
            self._zeroed_at[oid] = self.backwards
            if self.dirty[oid]:
                self.dirty[oid] = False
                self.suspect.pop(oid, None)

    def step_pre(self, opt: torch.optim.Optimizer) -> None:
        oid = id(opt)
        if oid not in self.optimizers:
            self._new_optimizer(opt)
        if oid in self.suspect and self.dirty.get(oid):
            self._accumulated.append(self.suspect.pop(oid))
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
        if self.sampled:
            self._check_grads(opt)

    def _new_optimizer(self, opt) -> None:
        self.optimizers[id(opt)] = opt
        self.dirty[id(opt)] = False
        params = _params(opt)
        frozen = [p for p in params if not p.requires_grad]
        self.all_frozen = self.all_frozen or (bool(params) and len(frozen) == len(params))
        plain = [p for p in frozen if not isinstance(p, torch.nn.Parameter)]
        self.frozen += [f"{tuple(p.shape)} tensor" for p in plain]

    def _check_grads(self, opt) -> None:
        named = self._opt_params(opt)
        rows, grads, weights, without = [], [], [], []  # without: the names of parameters with no gradient
        none = missing = elements = 0
        for name, p in named:
            elements += p.numel()
            if p.grad is None:
                none += 1
                missing += p.numel()
                without.append(name)
                continue
            rows.append({"step": self.current, "layer": name, "grad_norm": None, "update_ratio": None})
            grads.append(p.grad if p.grad.dtype == torch.float32 else p.grad.float())
            weights.append(p)
        check = {"step": self.current, "none": none, "zero": 0, "total": len(named), "missing": missing}
        oid, n = id(opt), self.backwards  # zeroed after the latest backward, which came after its last step?
        check["zeroed_late"] = n > self._stepped_at.get(oid, 0) and self._zeroed_at.get(oid) == n
        check["elements"], check["without"] = elements, without[:8]
        self.grad_checks.append(check)
        self.layers += rows
        if grads:
            n = len(grads)
            flat = [w.detach() if w.dtype == torch.float32 else w.detach().float() for w in weights]

            def use(norms, rows=rows, weights=weights, check=check, n=n):
                for r, v, w, p in zip(rows, norms[:n], norms[n:], weights, strict=True):
                    r["grad_norm"], r["weight_norm"] = v, w
                    if v == 0:
                        check["zero"] += 1
                        check["missing"] += p.numel()

            self.later.put(torch.stack(torch._foreach_norm(grads + flat)), use)  # one op for both
            if sum(p.numel() for p in weights) <= MAX_SNAPSHOT:
                self._snap[id(opt)] = (weights, [w.clone() for w in flat], rows)
        key = ("held", len(self.optimizers))
        if key not in self._cache:
            self._cache[key] = {id(p) for o in self.optimizers.values() for p in _params(o)}
        held = self._cache[key]
        for root in self.roots.values():
            key = ("root", id(root))
            if key not in self._cache:
                self._cache[key] = list(root.named_parameters())
            for n, p in self._cache[key]:
                if p.grad is not None and p.requires_grad and id(p) not in held:
                    self.not_held[n] = p.numel()

    def step_post(self, opt) -> None:
        oid = id(opt)
        self._stepped_at[oid] = self.backwards
        self.opt_steps[oid] += 1
        self.dirty[oid] = True
        snap = self._snap.pop(oid, None)
        if self.opt_steps[oid] <= self.step:  # not the lead optimizer: its step is not a new step
            return
        self.step = self.opt_steps[oid]
        if self.step == 1:
            self._t1 = time.perf_counter()
        elif self.step == 5:
            self.quick = (time.perf_counter() - self._t1) / 4 < watch.QUICK_STEP
        self.sampled = watch.sampled(self.step + 1, self.quick)
        if len(self._step_losses) == 1:
            self.loss.append((self.step, self._step_losses[0]))
        elif self._step_losses:  # several backward calls a step (accumulation): their mean
            self.loss.append((self.step, torch.stack([t.float().reshape(()) for t in self._step_losses]).mean()))
        self._step_losses = []
        if snap is not None:
            weights, before, rows = snap
            after = [w.detach() if w.dtype == torch.float32 else w.detach().float() for w in weights]

            def use(v, rows=rows):
                for r, x in zip(rows, v, strict=True):
                    r["update_ratio"] = x / max(r.pop("weight_norm", 0.0), 1e-12)

            self.later.put(torch.stack(torch._foreach_norm(torch._foreach_sub(after, before))), use)
        self._ordinal, self._input_seen, self.last_act, self.stack, self.depth = 0, False, None, [], 0

    def scheduler_step(self, sched) -> None:
        if self.step > 0:
            self.sched_steps[type(sched).__name__] += 1

    def losses(self) -> list[tuple[int, float]]:
        """(step, loss) for every step, from the tensors kept at backward (one transfer)."""
        if not self.loss:
            return []
        values = torch.stack([t.detach().float().reshape(()).cpu() for _, t in self.loss]).tolist()
        return [(s, v) for (s, _), v in zip(self.loss, values, strict=True)]

    def release(self) -> None:
        """Read the deferred statistics; drop every reference to the script's objects."""
        self.optimizer_kinds = [type(o).__name__ for o in self.optimizers.values()]
        self.optimizer_params = [{id(p) for p in _params(o) if p.requires_grad} for o in self.optimizers.values()]
        for site, w in self.window.items():  # the last, partial window counts too (2 batches or more)
            if w[2] >= 2:
                self._close_window(site, self.current - 1)
        for step, t in self._accumulated:
            self.later.put(t, lambda v, step=step: v[0] > 0 and self.accumulated.append(step))
        self.later.read()
        self.accumulated.sort()
        self.gram = self.gram.cpu() if self.gram is not None else None
        self.first_weight = None
        self.optimizers, self.roots, self._snap, self.stack, self._cache = {}, {}, {}, [], {}
        self.last_act = self.last_loss = self.unscaled = None
        self.window, self.suspect, self._accumulated = {}, {}, []
