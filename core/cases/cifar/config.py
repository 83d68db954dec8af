"""Case 2's settings, each declared once, and its presets: the post's table as small diffs.

As posted: 3072-300-10, ReLU, no biases, PyTorch's default init, ToTensor() pixels in
[0, 1], cross-entropy, SGD lr 0.02 momentum 0.9 weight decay 1e-4, batch 250 shuffled,
20 epochs.
"""

from __future__ import annotations

import dataclasses
import math
import types
from dataclasses import dataclass

from core.case import Cost
from core.cases.cifar.data import CIFAR10_FOLDER, DATA_DIR_ENV, PIXELS, SOURCES, SYNTHETIC_SIZES
from core.settings import knob


def _g(value: float) -> float:
    """A value as the settings' text boxes show it (6 significant digits), so presets round-trip."""
    return float(f"{value:g}")


S = 255.0  # the post's input scale
INV_S, INV_S2 = _g(1 / S), _g(1 / S**2)  # 0.00392157 and 1.53787e-05


@dataclass(frozen=True)
class CifarConfig:
    dataset: str = knob(
        "cifar10",
        "cifar10 (downloaded on first use), folder (your images in data_root), synthetic (the offline stand-in)",
        choices=SOURCES,
    )
    data_root: str = knob(
        "",
        f"cifar10: the folder for {CIFAR10_FOLDER}/ (empty: ${DATA_DIR_ENV} or ~/.cache/convergence-clinic); "
        "folder: the folder that holds train/<class>/… and test/<class>/…. "
        "Typed only, inside the allowed folders (never from a link)",
        in_url=False,
    )
    train_size: int = knob(0, "train on the first this-many training images (0 = all of them)", lo=0, hi=1_000_000)
    test_size: int = knob(0, "test on the first this-many test images (0 = all of them)", lo=0, hi=1_000_000)
    input_scale: float = knob(
        1.0, "multiply ToTensor()'s [0, 1] pixels by this (the post's bug: 255)", lo=0, hi=1e6, lo_open=True
    )
    normalize: str = knob(
        "none", "none (as posted) or standardize each colour channel", choices=("none", "standardize")
    )
    hidden: int = knob(300, "hidden units (the post: 300)", lo=1, hi=4096)
    bias: bool = knob(False, "give both layers a bias")  # the post's layers have none
    layer1_init_scale: float = knob(1.0, "multiply layer 1's initial weights by this", lo=0, hi=1e3, lo_open=True)
    layer2_init_scale: float = knob(1.0, "multiply layer 2's initial weights by this", lo=0, hi=1e3, lo_open=True)
    lr: float = knob(0.02, "SGD learning rate", lo=0, hi=10, lo_open=True)
    layer1_lr_scale: float = knob(1.0, "layer 1 learns at lr times this", lo=0, hi=1e3, lo_open=True)
    layer2_lr_scale: float = knob(1.0, "layer 2 learns at lr times this", lo=0, hi=1e3, lo_open=True)
    layer1_wd_scale: float = knob(
        1.0, "layer 1's weight decay is weight_decay times this (the s² rule: s²)", lo=0, hi=1e6
    )
    layer2_wd_scale: float = knob(1.0, "layer 2's weight decay is weight_decay times this", lo=0, hi=1e6)
    momentum: float = knob(0.9, "SGD momentum", lo=0, hi=0.999)
    weight_decay: float = knob(1e-4, "SGD weight decay (L2 on every parameter)", lo=0, hi=1)
    batch_size: int = knob(250, "images per step; the last batch of an epoch may be smaller", lo=1, hi=10_000)
    epochs: int = knob(20, "passes over the training images", lo=1, hi=200)
    # initial weights and batch order (the data set itself is fixed)
    seed: int = knob(0, "random seed for the initial weights and the batch order", lo=0, hi=2**31 - 1)


AS_POSTED = CifarConfig()
X255 = dataclasses.replace(AS_POSTED, input_scale=S)
PRESETS = {
    "as-posted": AS_POSTED,
    "x255": X255,
    "x255-lr": dataclasses.replace(X255, layer1_lr_scale=INV_S, layer2_lr_scale=INV_S),
    "x255-init-lr": dataclasses.replace(
        X255, layer1_init_scale=INV_S, layer2_init_scale=INV_S, layer1_lr_scale=INV_S, layer2_lr_scale=INV_S
    ),
    "x255-lr2": dataclasses.replace(X255, layer1_lr_scale=INV_S2, layer2_lr_scale=INV_S2),
    # the s² rule: layer 1 starts s times smaller and learns s² times slower, and its weight decay is s² times
    # larger (so lr · weight_decay, the decay per step, is as posted); layer 2 as posted
    "x255-rule": dataclasses.replace(X255, layer1_init_scale=INV_S, layer1_lr_scale=INV_S2, layer1_wd_scale=S**2),
    # ours: standardised inputs (which also makes any input_scale harmless) and biases; on the
    # stand-in's quick view (5,000 images, seed 0) 56.8% against as-posted's 50.6% (lr 0.01: 55.7%)
    "fixed": dataclasses.replace(AS_POSTED, normalize="standardize", bias=True),
}

WHY = {
    "as-posted": "The post's MLP on inputs in [0, 1]: about 50% test accuracy.",
    "x255": "The post's failure: inputs × 255 make each SGD step move layer 1's pre-activations 255² as far.",
    "x255-lr": "The poster's first fix, lr / 255 on both layers: trains again, but only to about 43%.",
    "x255-init-lr": "The poster's second fix: initial weights / 255 and lr / 255; the accuracy comes back.",
    "x255-lr2": "lr / 255² on both layers, which the poster found also works.",
    "x255-rule": "The s² rule: layer 1 starts s times smaller, learns s² times slower, decays s² times more; "
    "it is the as-posted run again.",
    "fixed": "Ours: standardised inputs (any input scale is then harmless) and biases.",
}

# The post's table, in its order, with what the poster reported for each row (short: a table cell).
POST_TABLE = {
    "as-posted": "about 50%",
    "x255": "no longer converges; outputs all zero",
    "x255-lr": "trains, but only about 43%",
    "x255-init-lr": "the accuracy comes back",
    "x255-lr2": "also works (surprised the poster)",
    "x255-rule": "not in the post: the s² rule",
}
# What each row changes from as-posted; "×255" is the inputs, "L1" layer 1 (short: a table cell).
CHANGES = {
    "as-posted": "inputs in [0, 1]",
    "x255": "inputs ×255",
    "x255-lr": "×255; lr / 255 (both layers)",
    "x255-init-lr": "×255; init and lr / 255 (both)",
    "x255-lr2": "×255; lr / 255² (both layers)",
    "x255-rule": "×255; L1: init / 255, lr / 255², wd ×255²",
}

# What a preset button changes; the data, the budget and the seed stay as the user set them.
DATA_AND_BUDGET = ("dataset", "data_root", "train_size", "test_size", "epochs", "seed")
# The page's first view: 20 epochs of 5,000 images, tested after each epoch on 2,000 (a test
# pass over all 10,000 costs as much as training an epoch of 5,000): ~4 s on the 2-core CPU.
QUICK = types.MappingProxyType({"train_size": 5_000, "test_size": 2_000, "epochs": 20})  # read-only
POSTED_BUDGET = types.MappingProxyType({"train_size": 0, "test_size": 0, "epochs": 20})  # all images, as posted
BUDGETS = {"Quick view": QUICK, "Posted budget": POSTED_BUDGET}  # the page's two budget buttons


def budget_text(config: CifarConfig) -> str:
    """The data and budget in words: 'the first 5,000 training images × 20 epochs, tested on ...'."""
    train = f"the first {config.train_size:,} training images" if config.train_size else "all training images"
    test = f"the first {config.test_size:,} test images" if config.test_size else "all test images"
    posted = all(getattr(config, k) == v for k, v in POSTED_BUDGET.items())
    return f"{train} × {config.epochs} epochs, tested on {test}" + (" (the posted budget)" if posted else "")


def budget_help(budget) -> str:
    """A budget button's tooltip: the budget and its estimated cost."""
    config = CifarConfig(**budget)
    return f"{budget_text(config)}: about {cost(config).seconds:.0f} s on a 2-core CPU (estimated)"


def with_budget(recipe: CifarConfig, config: CifarConfig) -> CifarConfig:
    """`recipe`'s model and optimizer with `config`'s data, budget and seed."""
    return dataclasses.replace(recipe, **{k: getattr(config, k) for k in DATA_AND_BUDGET})


def recipe_name(config: CifarConfig) -> str | None:
    """The preset whose recipe (everything but data, budget and seed) `config` follows, if any."""
    return next((name for name, p in PRESETS.items() if with_budget(p, config) == config), None)


def reference(config: CifarConfig) -> CifarConfig:
    """The as-posted run on the same data and budget: the comparison drawn on every chart."""
    return with_budget(AS_POSTED, config)


def table_configs(config: CifarConfig) -> dict[str, CifarConfig]:
    """The post's rows with this config's data, budget and seed."""
    return {name: with_budget(PRESETS[name], config) for name in POST_TABLE}


# ---------------------------------------------------------------------------- cost and limits

MAX_FLOPS = 40e12  # ~10 posted runs: about 6 minutes on the 2-core CPU


def cost(config: CifarConfig) -> Cost:
    """Seconds on the 2-core CPU: per step a fixed part (the optimizer, the batch's gather and
    conversion: what dominates at batch 1) and the matmuls (6 FLOPs per weight per image, at
    ~120 GFLOP/s, measured), the test pass each epoch, and the data set's first load."""
    n = config.train_size or SYNTHETIC_SIZES[0]  # CIFAR-10 and the stand-in have 50,000
    m = config.test_size or SYNTHETIC_SIZES[1]
    weights = PIXELS * config.hidden + config.hidden * 10
    steps = config.epochs * math.ceil(n / config.batch_size)
    overhead, matmuls = steps * 1e-3, 6 * weights * n * config.epochs / 1.2e11
    test = config.epochs * 2 * weights * m / 1.2e11
    if overhead > matmuls:  # small batches: the number of steps is the cost
        return Cost.measured(1.5 + overhead + matmuls + test, "batch_size", "raise batch_size or lower epochs")
    return Cost.measured(1.5 + overhead + matmuls + test, "epochs")


def check(config: CifarConfig) -> list[str]:
    problems = []
    if config.dataset == "folder" and not config.data_root.strip():
        problems.append("data_root: give the folder that holds train/<class>/… and test/<class>/… (dataset = folder)")
    if config.train_size and config.batch_size > config.train_size:
        problems.append(f"batch_size: must be <= train_size ({config.train_size})")
    images = config.train_size or 50_000  # CIFAR-10's and the stand-in's size when 0 (all)
    flops = 4 * (PIXELS * config.hidden + config.hidden * 10) * images * config.epochs
    if flops > MAX_FLOPS:
        problems.append(
            f"epochs: {config.epochs} epochs of {images:,} images through {config.hidden} hidden units is "
            f"{flops / 1e12:.0f} TFLOP, over the {MAX_FLOPS / 1e12:.0f} this app allows (the posted run: 3.7)"
        )
    return problems
