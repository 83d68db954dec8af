"""Installing the examiner on torch, and taking it off again.

    with examine() as e:
        train()          # any PyTorch training code, unchanged
    print(e.report())

What is installed, for the duration of the `with` only: the global optimizer step pre/post
hooks and wraps of `Tensor.backward`, `Optimizer.zero_grad`, `Module.zero_grad`,
`LRScheduler.step` and `GradScaler.scale` (cheap: every step); and on the sampled steps only
(`watch.sampled`) the global module forward (pre-)hooks and a TorchFunctionMode that sees the
loss functions, activations and first layers. Routing every torch call through Python costs
a few microseconds a call, and any global module hook takes every module call off torch's fast
path, so both are put on at the end of the step before a sampled one and taken off when that
step's backward starts (what follows, backward and the optimizer's step, needs neither).
Everything is removed on exit, also when the code inside raises.

Torch's hooks are process-global: examinations are serialised by a lock, and every hook
ignores calls from other threads (a Streamlit server trains other sessions' runs in other
threads meanwhile). The TorchFunctionMode is per-thread already.
"""

from __future__ import annotations

import threading
import time

import torch
from torch.nn.modules import module as module_hooks
from torch.optim import lr_scheduler
from torch.optim import optimizer as optimizer_hooks
from torch.overrides import TorchFunctionMode

from core.examine import watch
from core.examine.monitor import Monitor

LOCK = threading.Lock()  # one examination at a time in this process: torch's hooks are global


class StopRun(BaseException):
    """Raised from the step post-hook after the last wanted step; a BaseException, so that the
    script's own `except Exception:` does not swallow it."""


class _Mode(TorchFunctionMode):
    def __init__(self, monitor: Monitor, notes: list[str]):
        super().__init__()
        self.m, self.notes = monitor, notes
        self.callers: dict = {}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        try:
            what = watch.KIND.get(func)
        except TypeError:  # an unhashable callable
            what = None
        if what is None:
            return func(*args, **kwargs)
        kind, name = what
        if kind == "layer":
            _safe(self.notes, self.m.on_layer, func, args, kwargs)
            return func(*args, **kwargs)
        if kind == "batch_norm":
            _safe(self.notes, self.m.on_batch_norm, args, kwargs)
            return func(*args, **kwargs)
        if kind == "constant":
            out = func(*args, **kwargs)
            _safe(self.notes, self.m.on_constant, out)
            return out
        if kind == "act":
            out = func(*args, **kwargs)
            _safe(self.notes, self.m.on_act, name, out)
            return out
        out = _as_the_script(func, args, kwargs, self.callers)
        _safe(self.notes, self.m.on_loss, func, name, args, kwargs, out)
        return out


def _as_the_script(func, args, kwargs, callers: dict):
    """func(*args, **kwargs) from a frame that stands at the script's line that made the call:
    torch warns at its caller's line ("Using a target size ... different to the input size"),
    which would be this module's; from there the warning names the script's line, once, as
    without the examiner (the script's own warning registry). callers: this examination's
    cache of those frames' functions, one per line of the script."""
    f = watch.script_frame()
    if f is None:
        return func(*args, **kwargs)
    key = (f.f_code.co_filename, f.f_lineno, id(f.f_globals))
    call = callers.get(key)
    if call is None:
        line = "\n" * (f.f_lineno - 1) + "lambda func, args, kwargs: func(*args, **kwargs)"
        call = callers[key] = eval(compile(line, f.f_code.co_filename, "eval"), f.f_globals)
    del f
    return call(func, args, kwargs)


def _safe(notes: list[str], fn, *args) -> None:
    """A measurement must never break the examined script: a failure becomes a note."""
    try:
        fn(*args)
    except Exception as e:
        if len(notes) < 5:
            notes.append(f"the examiner's {fn.__name__} failed once: {type(e).__name__}: {e}")


class Examiner:
    """The context manager: `examine(max_steps=None)`. After the `with`, `.report()`."""

    def __init__(self, max_steps: int | None = None, script: str = "<notebook>"):
        self.max_steps, self.script = max_steps, script
        self.monitor = Monitor()
        self.notes = self.monitor.notes
        self.stopped = False  # max_steps reached
        self.exception: dict | None = None  # set by the script runner when the code raised
        self.status: int | None = None
        self.seconds = 0.0
        self._undo: list = []
        self._mode: _Mode | None = None
        self._mode_active = False
        self._module_hooks: list = []
        self._fwd: tuple = ()
        self._in_backward = False

    def __enter__(self) -> Examiner:
        if not LOCK.acquire(timeout=600):
            raise RuntimeError("another examination is still running in this process")
        try:
            self._install()
        except BaseException:
            self._remove()
            LOCK.release()
            raise
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, etype, exc, tb) -> bool:
        self.seconds = time.perf_counter() - self._t0
        try:
            self._remove()
        finally:
            LOCK.release()
        self.stopped = self.stopped or etype is StopRun
        self._finish()
        return etype is StopRun  # `--steps N` reached: not an error

    def _install(self) -> None:
        m, me, notes = self.monitor, threading.get_ident(), self.notes

        def mine() -> bool:
            return threading.get_ident() == me

        def fwd_pre(module, args):
            if mine():
                _safe(notes, m.forward_pre, module)

        def fwd_post(module, args, out):
            if mine():
                _safe(notes, m.forward_post)

        def step_pre(opt, args, kwargs):
            if mine():
                _safe(notes, m.step_pre, opt)

        def step_post(opt, args, kwargs):
            if mine():
                _safe(notes, m.step_post, opt)
                self._detail(m.sampled)  # the next step's detail, or none
                if self.max_steps is not None and m.step >= self.max_steps:
                    self.stopped = True
                    raise StopRun

        self._fwd = (fwd_pre, fwd_post)
        for handle in (
            optimizer_hooks.register_optimizer_step_pre_hook(step_pre),
            optimizer_hooks.register_optimizer_step_post_hook(step_post),
        ):
            self._undo.append(handle.remove)

        def backward(original):
            def tensor_backward(tensor, *args, **kwargs):
                if mine() and not self._in_backward:  # the original re-dispatches to itself under the mode
                    self._detail(False)  # the step's forward is over: what follows is measured without the mode
                    _safe(notes, m.before_backward, tensor)
                    self._in_backward = True
                    try:
                        return original(tensor, *args, **kwargs)
                    finally:
                        self._in_backward = False
                return original(tensor, *args, **kwargs)

            return tensor_backward

        def opt_zero(original):
            def zero_grad(opt, *args, **kwargs):
                if mine():
                    _safe(notes, m.zeroed, opt)
                return original(opt, *args, **kwargs)

            return zero_grad

        def module_zero(original):
            def zero_grad(module, *args, **kwargs):
                if mine():
                    _safe(notes, m.module_zeroed, module)
                return original(module, *args, **kwargs)

            return zero_grad

        def sched_step(original):
            def step(sched, *args, **kwargs):
                if mine():
                    _safe(notes, m.scheduler_step, sched)
                return original(sched, *args, **kwargs)

            return step

        def scale(original):
            def scale(scaler, outputs, *args, **kwargs):
                out = original(scaler, outputs, *args, **kwargs)
                if mine():
                    _safe(notes, m.scaled, out, outputs)
                return out

            return scale

        self._patch(torch.Tensor, "backward", backward)
        self._patch(torch.amp.GradScaler, "scale", scale)
        self._patch(torch.optim.Optimizer, "zero_grad", opt_zero)
        self._patch(torch.nn.Module, "zero_grad", module_zero)
        self._patch(lr_scheduler.LRScheduler, "step", sched_step)
        if "step" in vars(lr_scheduler.ReduceLROnPlateau):
            self._patch(lr_scheduler.ReduceLROnPlateau, "step", sched_step)
        self._mode = _Mode(m, notes)
        self._detail(m.sampled)  # step 1 is sampled
        self._undo.append(lambda: self._detail(False))
        self._undo.append(self._mode.callers.clear)  # they hold the script's globals

    def _detail(self, on: bool) -> None:
        """Put the sampled steps' instruments on (the module hooks and the mode), or take them off."""
        if on == self._mode_active:
            return
        if on:
            self._module_hooks = [
                module_hooks.register_module_forward_pre_hook(self._fwd[0]),
                module_hooks.register_module_forward_hook(self._fwd[1]),
            ]
        else:
            for handle in self._module_hooks:
                handle.remove()
            self._module_hooks = []
        self._mode_on(on)

    def _mode_on(self, on: bool) -> None:
        """Push the mode, or take it off the thread's mode stack (from under any modes the
        script pushed after it, which are put back in their order)."""
        if on:
            torch.overrides._push_mode(self._mode)
            self._mode_active = True
            return
        above = []
        while torch._C._len_torch_function_stack() > 0:
            top = torch.overrides._pop_mode()
            if top is self._mode:
                break
            above.append(top)
        for mode in reversed(above):
            torch.overrides._push_mode(mode)
        self._mode_active = False

    def _patch(self, cls, name: str, wrap) -> None:
        original = vars(cls)[name]
        setattr(cls, name, wrap(original))
        self._undo.append(lambda: setattr(cls, name, original))

    def _remove(self) -> None:
        """Undo every installation, latest first; one failing undo does not skip the others."""
        errors = []
        while self._undo:
            undo = self._undo.pop()
            try:
                undo()
            except Exception as e:
                errors.append(e)
        if errors:
            raise errors[0]

    def _finish(self) -> None:
        from core.examine.findings import diagnose

        m = self.monitor
        self.losses = m.losses()
        m.release()
        self.findings = diagnose(m, self.losses)

    def report(self):
        from core.examine.report import Report

        return Report.of(self)


def examine(max_steps: int | None = None, script: str = "<notebook>") -> Examiner:
    """`with examine() as e: ...` around training code; then `e.report()`."""
    return Examiner(max_steps=max_steps, script=script)
