"""The fused layers against PyTorch's own autograd, in float64: same values, same gradients."""

import math

import pytest
import torch
import torch.nn.functional as F

from core import kernels, nets

ACTS = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu, "identity": lambda z: z}


def tensors(n, i, h, bias, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, i, generator=g, dtype=torch.float64) * 2
    w1 = torch.randn(i, h, generator=g, dtype=torch.float64)
    b1 = torch.randn(h, generator=g, dtype=torch.float64) if bias else None
    w2 = torch.randn(h, 1, generator=g, dtype=torch.float64) / math.sqrt(h)
    b2 = torch.randn(1, generator=g, dtype=torch.float64) if bias else None
    y = torch.randn(n, 1, generator=g, dtype=torch.float64)
    return x, w1, b1, w2, b2, y


def leaves(*ts):
    return [t.clone().requires_grad_() if t is not None else None for t in ts]


def grads(loss, ts):
    present = [t for t in ts if t is not None]
    got = iter(torch.autograd.grad(loss, present))
    return [next(got) if t is not None else None for t in ts]


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("inputs", [1, 5])
def test_dense_matches_autograd(act, bias, inputs):
    x, w1, b1, *_ = tensors(50, inputs, 7, bias)
    ref = leaves(x, w1, b1)
    fused = leaves(x, w1, b1)
    a_ref = ACTS[act](F.linear(ref[0], ref[1].t(), ref[2]))
    a = nets.dense(*fused, act)
    torch.testing.assert_close(a, a_ref)
    probe = torch.randn_like(a_ref)  # a generic upstream gradient
    for g, g_ref in zip(grads((a * probe).sum(), fused), grads((a_ref * probe).sum(), ref), strict=True):
        torch.testing.assert_close(g, g_ref)


@pytest.mark.parametrize("act", list(ACTS))
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("inputs", [1, 4])
def test_head_matches_two_layers_of_autograd(act, bias, inputs):
    x, w1, b1, w2, b2, y = tensors(60, inputs, 9, bias)
    ref = leaves(x, w1, b1, w2, b2)
    fused = leaves(x, w1, b1, w2, b2)
    a_ref = ACTS[act](F.linear(ref[0], ref[1].t(), ref[2]))
    z_ref = F.linear(a_ref, ref[3].t(), ref[4])
    z, a = nets.head(*fused, act)
    torch.testing.assert_close(z, z_ref)
    torch.testing.assert_close(a, a_ref.detach())
    loss_ref = (torch.tanh(z_ref) - y).pow(2).sum()
    loss = (torch.tanh(z) - y).pow(2).sum()
    for g, g_ref in zip(grads(loss, fused), grads(loss_ref, ref), strict=True):
        torch.testing.assert_close(g, g_ref)


def test_tanh_in_float32_stays_within_rounding_of_torch_tanh():
    z = torch.linspace(-30, 30, 100_001)
    w = torch.ones(1, 1)
    a = nets.dense(z.unsqueeze(1), w, None, "tanh").squeeze(1)
    assert (a - torch.tanh(z)).abs().max().item() < 3e-7


def test_default_init_is_nn_linear_init():
    """Same generator state, same numbers: nn.Linear draws from the global generator, so
    compare under a forked global state."""
    for fan_in, fan_out in [(1, 128), (3072, 300), (300, 10)]:
        g = torch.Generator().manual_seed(7)
        w, b = nets.init_layer(fan_in, fan_out, bias=True, init="default", generator=g)
        with torch.random.fork_rng():
            torch.manual_seed(7)
            layer = torch.nn.Linear(fan_in, fan_out)
        torch.testing.assert_close(w, layer.weight.detach().t(), rtol=0, atol=0)
        torch.testing.assert_close(b, layer.bias.detach(), rtol=0, atol=0)


def test_randn_init_is_the_posted_torch_randn():
    g = torch.Generator().manual_seed(3)
    w, b = nets.init_layer(1, 128, bias=False, init="randn", generator=g)
    torch.testing.assert_close(w, torch.randn(1, 128, generator=torch.Generator().manual_seed(3)), rtol=0, atol=0)
    assert b is None


def test_xavier_bound():
    w, b = nets.init_layer(100, 50, bias=True, init="xavier", generator=torch.Generator().manual_seed(0))
    assert w.abs().max() <= math.sqrt(6 / 150) and w.std() > 0.5 * math.sqrt(2 / 150)
    assert torch.count_nonzero(b) == 0


# The compiled pair (core/kernels.py): one input, float32, on the CPU. Its oracle is float64 autograd;
# the tolerances are float32's (the kernel sums each row's 128 terms in float32, as torch's matmul does).
KERNEL_ACTS = list(kernels.ACTS)


@pytest.mark.skipif(kernels.numba is None, reason="numba is not installed")
@pytest.mark.parametrize("act", KERNEL_ACTS)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("input_grad", [False, True])
def test_the_compiled_head_matches_float64_autograd(act, bias, input_grad):
    x, w1, b1, w2, b2, y = tensors(500, 1, 128, bias, seed=3)
    ref = leaves(x, w1, b1, w2, b2)
    fused = [t.float().clone().requires_grad_() if t is not None else None for t in (x, w1, b1, w2, b2)]
    if not input_grad:
        ref[0].requires_grad_(False)
        fused[0].requires_grad_(False)
    assert kernels.applies(fused[0], fused[1], act)
    a_ref = ACTS[act](F.linear(ref[0], ref[1].t(), ref[2]))
    z_ref = F.linear(a_ref, ref[3].t(), ref[4])
    z, a = nets.head(*fused, act)
    torch.testing.assert_close(a.double(), a_ref.detach(), atol=3e-7, rtol=1e-6)
    torch.testing.assert_close(z.double(), z_ref.detach(), atol=1e-5, rtol=1e-5)
    loss_ref = (torch.tanh(z_ref) - y).pow(2).sum()
    loss = (torch.tanh(z) - y.float()).pow(2).sum()
    present = [i for i, t in enumerate(ref) if t is not None and t.requires_grad]
    got = torch.autograd.grad(loss, [fused[i] for i in present])
    want = torch.autograd.grad(loss_ref, [ref[i] for i in present])
    for g, g_ref in zip(got, want, strict=True):
        torch.testing.assert_close(g.double(), g_ref, atol=1e-4, rtol=1e-4)


@pytest.mark.skipif(kernels.numba is None, reason="numba is not installed")
def test_the_compiled_tanh_stays_within_rounding_of_torch_tanh():
    z = torch.linspace(-30, 30, 100_001).unsqueeze(1)
    a = nets.head(z, torch.ones(1, 1), None, torch.ones(1, 1), None, "tanh")[1].squeeze(1)
    assert (a.double() - torch.tanh(z.squeeze(1).double())).abs().max().item() < 3e-7


LOSSES = {  # separable losses of the output z, with and without an output tanh
    "sse": lambda z, y: (z - y).pow(2).sum(),
    "mean-tanh": lambda z, y: (torch.tanh(z) - y).pow(2).mean(),
    "l1": lambda z, y: (z - y).abs().mean(),
    "l1-tanh": lambda z, y: (torch.tanh(z) - y).abs().sum(),
}


@pytest.mark.skipif(kernels.numba is None, reason="numba is not installed")
@pytest.mark.parametrize("act", KERNEL_ACTS)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("loss", list(LOSSES))
def test_the_compiled_hessian_vector_product_matches_float64_double_backward(act, bias, loss):
    """head_hessian's H v against PyTorch's double backward of the same loss, in float64, for random
    directions: the sharpness measurement's product."""
    x, w1, b1, w2, b2, y = tensors(400, 1, 64, bias, seed=5)
    weights = [t for t in (w1, b1, w2, b2) if t is not None]
    ref = [t.clone().requires_grad_() for t in weights]
    it = iter(ref)
    w1r, b1r, w2r, b2r = (next(it) if t is not None else None for t in (w1, b1, w2, b2))
    z_ref = F.linear(ACTS[act](F.linear(x, w1r.t(), b1r)), w2r.t(), b2r)
    g = torch.autograd.grad(LOSSES[loss](z_ref, y), ref, create_graph=True)
    product = kernels.head_hessian(
        *(t.float() if t is not None else None for t in (x, w1, b1, w2, b2)), act, lambda z: LOSSES[loss](z, y.float())
    )
    gen = torch.Generator().manual_seed(7)
    for _ in range(3):
        vs = [torch.randn(t.shape, generator=gen, dtype=torch.float64) for t in weights]
        want = torch.autograd.grad(g, ref, vs, retain_graph=True, allow_unused=True)
        it = iter(vs)
        got = product([next(it).float() if t is not None else None for t in (w1, b1, w2, b2)])
        assert [h is None for h in got] == [t is None for t in (w1, b1, w2, b2)]
        got = [h for h in got if h is not None]
        scale = max(float(h.abs().max()) for h in want if h is not None)
        for h, h_ref in zip(got, want, strict=True):
            h_ref = torch.zeros_like(h.double()) if h_ref is None else h_ref
            assert h.shape == h_ref.shape
            torch.testing.assert_close(h.double(), h_ref, atol=1e-5 * scale, rtol=1e-4)


def test_the_compiled_head_is_used_only_where_it_applies(monkeypatch):
    x32, w32 = torch.zeros(4, 1), torch.zeros(1, 3)
    assert not kernels.applies(x32.double(), w32.double(), "tanh")  # float64: the torch path
    assert not kernels.applies(torch.zeros(4, 2), torch.zeros(2, 3), "tanh")  # two inputs
    assert not kernels.applies(x32, w32, "sigmoid")  # no compiled sigmoid
    monkeypatch.setenv("CLINIC_KERNELS", "0")
    assert not kernels.applies(x32, w32, "tanh")
    monkeypatch.setenv("CLINIC_KERNELS", "1")
    assert kernels.applies(x32, w32, "tanh") == (kernels.numba is not None)


@pytest.mark.skipif(kernels.numba is None, reason="numba is not installed")
@pytest.mark.parametrize("act", KERNEL_ACTS)
def test_the_compiled_head_saturates_and_keeps_nan_as_torch_does(act):
    """A diverging run's inf and NaN, and a saturated unit's exact +-1 (so 1 - a^2 is 0 there, as in
    torch): where they differ, the two paths detect divergence at different steps."""
    z = torch.tensor([[math.nan], [math.inf], [-math.inf], [9.5], [-20.0], [1e30]])
    a = nets.head(z, torch.ones(1, 1), None, torch.ones(1, 1), None, act)[1]
    torch.testing.assert_close(a, ACTS[act](z), equal_nan=True, atol=0, rtol=0)


# A whole training step on the compiled layer (kernels.HeadStep) and the optimizer steps written out
# (kernels.updater). Oracles: float64 autograd of the same loss; torch's own optimizers.
STEP_LOSSES = {
    "sse": lambda t, y: (t - y).pow(2).sum(),
    "mse": lambda t, y: (t - y).pow(2).mean(),
    "l1": lambda t, y: (t - y).abs().mean(),
}


@pytest.mark.skipif(kernels.numba is None, reason="numba is not installed")
@pytest.mark.parametrize("act", KERNEL_ACTS)
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("loss", list(STEP_LOSSES))
@pytest.mark.parametrize("out_tanh", [False, True])
def test_a_compiled_training_step_is_autograds_loss_and_gradients(act, bias, loss, out_tanh):
    x, w1, b1, w2, b2, y = tensors(301, 1, 64, bias, seed=11)  # odd: the parts differ in size
    ref = leaves(w1, b1, w2, b2)
    z_ref = F.linear(ACTS[act](F.linear(x, ref[0].t(), ref[1])), ref[2].t(), ref[3])
    t_ref = torch.tanh(z_ref) if out_tanh else z_ref
    loss_ref = STEP_LOSSES[loss](t_ref, y)
    want = torch.autograd.grad(loss_ref, [t for t in ref if t is not None])
    weights = [t.float().clone().requires_grad_() if t is not None else None for t in (w1, b1, w2, b2)]
    step = kernels.HeadStep(x.float(), y.float(), *weights, act, loss, out_tanh)
    got_loss, got_mse = step()
    assert got_loss == pytest.approx(loss_ref.item(), rel=1e-5)
    assert got_mse == pytest.approx((t_ref - y).pow(2).mean().item(), rel=1e-5)
    torch.testing.assert_close(step.z.double(), z_ref.detach(), atol=1e-5, rtol=1e-5)
    got = [w.grad for w in weights if w is not None]
    scale = max(float(g.abs().max()) for g in want)
    for g, g_ref in zip(got, want, strict=True):
        torch.testing.assert_close(g.double(), g_ref, atol=1e-5 * scale, rtol=1e-4)


@pytest.mark.skipif(kernels.numba is None, reason="numba is not installed")
def test_a_compiled_step_gives_the_same_bits_in_series_and_at_once(monkeypatch):
    """The parts run one after the other or on two threads (numba's prange), and the way is chosen as the
    run goes: the numbers must not depend on it."""
    x, w1, b1, w2, b2, y = tensors(4000, 1, 128, True, seed=2)

    def five_steps(parallel: bool, together: bool):
        monkeypatch.setattr(kernels.Faster, "pick", lambda self: together)
        weights = [t.float().clone().requires_grad_() for t in (w1, b1, w2, b2)]
        step = kernels.HeadStep(x.float(), y.float(), *weights, "tanh", "mse", False)
        out = []
        for _ in range(5):
            out.append(step(parallel))
            with torch.no_grad():
                for w in weights:
                    w -= 0.1 * w.grad
        return out, [w.detach().clone() for w in weights]

    serial = five_steps(False, False)
    for run in (five_steps(True, True), five_steps(True, False)):
        assert run[0] == serial[0]
        for w, w_ref in zip(run[1], serial[1], strict=True):
            assert torch.equal(w, w_ref)


@pytest.mark.skipif(kernels.numba is None, reason="numba is not installed")
@pytest.mark.parametrize("loss", ["mean-tanh", "sse"])
def test_a_compiled_hessian_product_gives_the_same_bits_in_series_and_at_once(monkeypatch, loss):
    """The sharpness's product over the parts one after the other (no `ways`, or `ways` picking the
    series) or at once on two threads: the same bits, Hv_c included."""
    x, w1, b1, w2, b2, y = tensors(4000, 1, 128, True, seed=6)
    weights = [t.float() for t in (w1, b1, w2, b2)]
    gen = torch.Generator().manual_seed(8)
    vs = [torch.randn(t.shape, generator=gen) for t in weights]

    def products(ways, together):
        monkeypatch.setattr(kernels.Faster, "pick", lambda self: together)
        product = kernels.head_hessian(x.float(), *weights, "tanh", lambda z: LOSSES[loss](z, y.float()), ways=ways)
        return [product(vs) for _ in range(2)]

    serial = products(None, True)  # without ways: in series whatever pick says
    for got in (products(kernels.Faster(), True), products(kernels.Faster(), False)):
        for hs, hs_ref in zip(got, serial, strict=True):
            for h, h_ref in zip(hs, hs_ref, strict=True):
                assert torch.equal(h, h_ref)
    assert any(float(h.abs().max()) > 0 for h in serial[0])


@pytest.mark.skipif(kernels.numba is None, reason="numba is not installed")
def test_a_compiled_step_without_a_thread_safe_layer_runs_in_series(monkeypatch):
    x, w1, b1, w2, b2, y = tensors(200, 1, 16, True, seed=4)
    weights = [t.float().clone().requires_grad_() for t in (w1, b1, w2, b2)]
    step = kernels.HeadStep(x.float(), y.float(), *weights, "tanh", "sse", True)
    want = step(False)

    def no_layer(*args):
        raise ValueError("No threading layer could be loaded.")

    monkeypatch.setattr(step, "k", step.k._replace(steps=no_layer))
    monkeypatch.setattr(kernels, "_no_parallel", type(kernels._no_parallel)())  # this test's own flag
    monkeypatch.setattr(kernels.Faster, "pick", lambda self: True)
    assert step(True) == want
    assert not kernels._parallel_works()


def test_the_faster_way_is_chosen_followed_and_rechecked():
    """Faster tries the other way first, keeps the faster, leaves it the call after it slows down (a busy
    second core) and comes back once it is fast again."""
    ways = kernels.Faster(period=50, window=3)
    used = []
    for call in range(400):
        busy = 150 <= call < 250  # the parallel way waits for a core taken by another process
        cost = {True: 10.0 if busy else 1.0, False: 2.0}
        way = ways.pick()
        used.append(way)
        ways.record(way, cost[way] + 0.01 * (call % 3))
    assert used[:3] == [False] * 3 and all(used[3:50])  # tried, then kept the faster
    assert 0 < used[3:150].count(False) <= 6  # tried again now and then, less often while it loses
    assert used[150] and not any(used[151:250][:40])  # left at once; tried again later, at a cost
    slow_trials = used[151:250].count(True)
    assert slow_trials <= 6
    back = used.index(True, 250)
    assert back < 250 + 60 and used[back:].count(True) > 0.95 * len(used[back:])  # back to the fast way


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05),
    "momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9),
    "adam": lambda p: torch.optim.Adam(p, lr=0.01),
    "adam-fused": lambda p: torch.optim.Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6, fused=True),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01, alpha=0.9),
}


@pytest.mark.skipif(kernels.numba is None, reason="numba is not installed")
@pytest.mark.parametrize("name", list(OPTIMIZERS))
@pytest.mark.parametrize("grads_kept", [False, True])
def test_the_compiled_optimizer_step_is_torchs(name, grads_kept):
    """30 steps with the compiled update against 30 of torch's step(), on gradients of three scales,
    fresh tensors each step or written into the same .grad; then torch's step() continues from the state
    the compiled one left (it is torch's own state)."""
    g = torch.Generator().manual_seed(1)
    start = [torch.randn(6, 5, generator=g), torch.randn(5, generator=g)]
    grads = [[torch.randn(t.shape, generator=g) * 10.0 ** (s % 3 - 1) for t in start] for s in range(35)]
    ref = [t.clone().requires_grad_() for t in start]
    ours = [t.clone().requires_grad_() for t in start]
    opt_ref, opt = OPTIMIZERS[name](ref), OPTIMIZERS[name](ours)
    update = kernels.updater(opt)
    assert update is not None
    for s in range(35):
        for p, d in zip(ref, grads[s], strict=True):
            p.grad = d.clone()
        for p, d in zip(ours, grads[s], strict=True):
            if grads_kept and p.grad is not None:
                p.grad.copy_(d)
            else:
                p.grad = d.clone()
        opt_ref.step()
        update() if s < 30 else opt.step()
    for p, p_ref in zip(ours, ref, strict=True):
        torch.testing.assert_close(p, p_ref, atol=1e-6, rtol=1e-5)
        for key, value in opt_ref.state[p_ref].items():
            torch.testing.assert_close(opt.state[p][key], value, atol=1e-6, rtol=1e-5)


def test_the_compiled_optimizer_step_is_used_only_where_it_applies(monkeypatch):
    p = [torch.zeros(3, requires_grad=True)]
    assert kernels.updater(torch.optim.AdamW(p, lr=0.1)) is None  # decoupled weight decay
    assert kernels.updater(torch.optim.Adam(p, lr=0.1, weight_decay=0.1)) is None
    assert kernels.updater(torch.optim.Adam(p, lr=0.1, amsgrad=True)) is None
    assert kernels.updater(torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True)) is None
    assert kernels.updater(torch.optim.RMSprop(p, lr=0.1, centered=True)) is None
    assert kernels.updater(torch.optim.LBFGS(p)) is None
    assert kernels.updater(torch.optim.SGD([torch.zeros(3, dtype=torch.float64, requires_grad=True)], lr=0.1)) is None
    monkeypatch.setenv("CLINIC_KERNELS", "0")
    assert kernels.updater(torch.optim.SGD(p, lr=0.1)) is None
    monkeypatch.setenv("CLINIC_KERNELS", "1")
    assert (kernels.updater(torch.optim.SGD(p, lr=0.1)) is not None) == (kernels.numba is not None)


@pytest.mark.parametrize("act", ["tanh", "sigmoid", "relu"])
def test_the_compiled_count_of_flat_activations_is_torchs(act, monkeypatch):
    """sine's saturation count through the compiled pass against its torch count (CLINIC_KERNELS=0), on
    values at and next to each threshold in float32, NaN and infinities included."""
    from core.cases.sine.run import saturated

    edges = torch.tensor([0.99, -0.99, 0.005, 0.995, 0.0, -0.0, 0.5, 1.0, -1.0], dtype=torch.float32)
    near = torch.cat([edges, torch.nextafter(edges, edges + 1), torch.nextafter(edges, edges - 1)])
    special = torch.tensor([math.nan, math.inf, -math.inf])
    spread = torch.rand(4000 * 128, generator=torch.Generator().manual_seed(0)) * 2 - 1
    a = torch.cat([near, special, torch.sigmoid(spread * 6) if act == "sigmoid" else spread])
    compiled = kernels.count_flat(a, act)
    assert compiled is not None and saturated(a, act).item() == compiled
    monkeypatch.setenv("CLINIC_KERNELS", "0")
    assert kernels.count_flat(a, act) is None
    assert saturated(a, act).item() == compiled and 0 < compiled < a.numel()
    monkeypatch.delenv("CLINIC_KERNELS")
    assert kernels.count_flat(a.double(), act) is None and kernels.count_flat(a, "identity") is None


@pytest.mark.skipif(kernels.numba is None, reason="numba is not installed")
@pytest.mark.parametrize("avx512", [True, False])
def test_numba_compiles_for_the_whole_vector_width_unless_told(monkeypatch, avx512):
    """On an AVX-512 CPU the kernels are compiled without LLVM's preference for 256-bit vectors; on others,
    or where NUMBA_CPU_FEATURES says otherwise, numba's own choice stands."""
    from llvmlite import binding

    class Features(dict):
        def flatten(self):
            return ",".join(("+" if on else "-") + name for name, on in self.items())

    monkeypatch.setattr(binding, "get_host_cpu_features", lambda: Features(avx2=True, avx512f=avx512))
    monkeypatch.setattr(kernels.numba.config, "CPU_FEATURES", None)
    monkeypatch.delenv("NUMBA_CPU_FEATURES", raising=False)
    kernels._full_vector_width()
    features = kernels.numba.config.CPU_FEATURES
    assert features == ("+avx2,+avx512f,-prefer-256-bit" if avx512 else None)
    monkeypatch.setattr(kernels.numba.config, "CPU_FEATURES", None)
    monkeypatch.setenv("NUMBA_CPU_FEATURES", "+avx2")  # numba reads it itself
    kernels._full_vector_width()
    features = kernels.numba.config.CPU_FEATURES
    assert features is None


@pytest.mark.skipif(kernels.numba is None, reason="numba is not installed")
def test_numba_keeps_its_choice_where_llvm_cannot_read_the_cpu(monkeypatch):
    from llvmlite import binding

    def unreadable():
        raise RuntimeError("failed to get host cpu features")

    monkeypatch.setattr(binding, "get_host_cpu_features", unreadable)
    monkeypatch.setattr(kernels.numba.config, "CPU_FEATURES", None)
    monkeypatch.delenv("NUMBA_CPU_FEATURES", raising=False)
    kernels._full_vector_width()
    features = kernels.numba.config.CPU_FEATURES
    assert features is None
