"""Case 2: a CIFAR-10 MLP stops learning when its inputs are multiplied by 255.

config.py the settings and presets · data.py, synthetic.py, cache.py the images · model.py the
network · run.py one run · rule.py the s² rule and the post's table · diagnose.py · charts.py ·
script.py the standalone script (the tests' oracle) · bench.py the benchmark.
"""

import dataclasses

from core.case import Case
from core.cases.cifar import bench, charts, config, diagnose, run, script

CASE = Case(
    name="cifar",
    short="CIFAR ×255",
    icon=":material/image:",
    emoji="🖼️",
    why=config.WHY,
    title="A CIFAR-10 MLP stops learning when inputs are multiplied by 255",
    symptom="~50% test accuracy with inputs in [0, 1]; with inputs × 255 it no longer converges, lr / 255 gets 43%.",
    page="pages/2_CIFAR_x255.py",
    config_cls=config.CifarConfig,
    presets=config.PRESETS,
    run=run.run,
    diagnose=diagnose.diagnose,
    figures=charts.figures,
    script=script,
    bench=bench,
    lr_find=run.lr_find,
    check=config.check,
    cost=config.cost,
    heavy=lambda config: True,  # big matmuls: worth the cores (core/threads.py)
    reference=config.reference,
    first_view=config.QUICK,  # the page opens on the quick view; links carry a different budget explicitly
    recipe=config.recipe_name,
    # a candidate rate is checked on a quarter of the epochs (at least one)
    trial=lambda config, lr: dataclasses.replace(config, lr=lr, epochs=max(1, config.epochs // 4)),
)
