"""Case 1: a shallow tanh network fits sin(x) badly (Cross Validated question 320289)."""

from core.case import Case
from core.cases.sine import bench, charts, config, diagnose, run, script  # modules: `run` stays the module

CASE = Case(
    name="sine",
    short="Sine fit",
    icon=":material/airwave:",
    emoji="〰️",
    why=config.WHY,
    title="A shallow tanh network fits sin(x) badly",
    symptom="The fit wiggles in the first two units of x, then goes flat; the loss curve jumps around.",
    page="pages/1_Sine_fit.py",
    config_cls=config.SineConfig,
    presets=config.PRESETS,
    run=run.run,
    diagnose=diagnose.diagnose,
    figures=charts.figures,
    script=script,
    bench=bench,
    lr_find=run.lr_find,
    check=config.check,
    cost=config.cost,
    reference=config.reference,
    trial=config.trial,
    spread=config.SPREAD,
)
