"""Case 4: linear regression that only converges for small, unshuffled batches.

As posted (PyTorch Lightning, one `nn.Linear(1, 1)`): 1000 points on y = -4x + 0.05·noise,
x = linspace(0, 1, 1000); `F.mse_loss(preds, y)`, Adam lr 1e-2, 100 epochs, swept over the
batch sizes `int(x) for x in linspace(10, 1000, 100)` with shuffle on and off.

Two causes, both measured here:
- the dataset keeps the noise as (n, 1, 1), so a batch of targets is (B, 1, 1) against
  predictions (B, 1), and `mse_loss` broadcasts them to (B, B, 1): every prediction is
  compared with every target of its batch. That loss is smallest when every prediction is the
  batch's mean target (slope 0). Unshuffled small batches hold neighbouring x, whose targets
  are nearly equal, so there it barely matters; shuffled batches span the whole line.
- the budget is 100 *epochs*: batch size 10 takes 10,000 Adam steps and batch size 1000 takes
  100, and Adam moves a weight by about lr per step: 100 steps of 0.01 cannot carry the slope
  from its random start to -4, bug or no bug.

The case's run is the sweep (sweep.py: every batch size trained at once from batch means); one run
of it at `batch_size` in detail (the same steps, from the same batch means, with its shapes, PyTorch's
warning and its batch sharpness) is its task "single" (single.py). The standalone script (script.py)
is the plain implementation the tests and the benchmark check both against; the tests check the
single run against the plain PyTorch loop too (autograd, torch.optim, core.train, curvature.Probe).
"""

from core.case import Case
from core.cases.linreg import bench, charts, diagnose, script, single, sweep
from core.cases.linreg.config import PRESETS, RETIRED, WHY, LinregConfig

CASE = Case(
    name="linreg",
    short="Linear regression",
    icon=":material/trending_down:",
    emoji="📉",
    why=WHY,
    title="Linear regression converges only for small, unshuffled batches",
    symptom="Only small batches without shuffling reach the slope -4; with shuffling no batch size does.",
    page="pages/4_Linear_regression.py",
    config_cls=LinregConfig,
    presets=PRESETS,
    run=sweep.run_sweep,
    tasks={"single": single.SINGLE},
    diagnose=diagnose.diagnose,
    figures=charts.figures,
    script=script,
    bench=bench,
    check=sweep.check,
    cost=sweep.cost,
    retired=RETIRED,
    serial=lambda config: True,  # two weights per run: ops of microseconds, bound by the interpreter
)
