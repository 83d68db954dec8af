"""Case 3: fitting a polynomial with nn.Linear crawls, or explodes (config.py says why)."""

import dataclasses

from core.case import Case
from core.cases.poly import bench, charts, diagnose, lr_find, run, script
from core.cases.poly.config import PRESETS, SPREAD, WHY, PolyConfig

CASE = Case(
    name="poly",
    short="Polynomial fit",
    icon=":material/function:",
    emoji="📈",
    why=WHY,
    title="Fitting a polynomial with nn.Linear crawls, or explodes",
    symptom="The loss is still about 1 after 10,000 epochs, and any learning rate above about 1e-4 blows up at once.",
    page="pages/3_Polynomial_fit.py",
    config_cls=PolyConfig,
    presets=PRESETS,
    run=run.run,
    diagnose=diagnose.diagnose,
    figures=charts.figures,
    script=script,
    bench=bench,
    lr_find=lr_find.lr_find,
    check=run.check,
    cost=run.cost,
    reference=run.reference,
    # a candidate rate is checked on the full budget: the run trains its whole scan at once, in milliseconds
    trial=lambda config, lr: dataclasses.replace(config, lr=lr),
    spread=SPREAD,
    serial=lambda config: True,  # 4 weights on a few points: ops of microseconds, bound by the interpreter
)
