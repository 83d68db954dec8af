"""What the sharpness measurement costs: each case's default run with it and without it.

    python -m bench.sharpness                 every case, 3 interleaved repeats
    python -m bench.sharpness --cases sine --repeat 5

For each case's default budget (the run the page opens on; for linreg the run shown in detail,
since the sweep itself is not measured), the run is timed with its sharpness measurements and
with none (the case's SHARPNESS_MEASUREMENTS set to 0), interleaved. On a shared machine whose
load drifts, the wall times of the two runs can differ by more than the measurement costs, so
the time spent inside `curvature.top_eigenvalue` during the measured run is also recorded: the
overhead is that time over the rest of the same run. Prints one Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import statistics
import time
from pathlib import Path

from bench import replace_section

os.environ.setdefault("CLINIC_OFFLINE", "1")  # CIFAR: the stand-in when CIFAR-10 is not on disk
BENCHMARKS = Path(__file__).resolve().parents[1] / "BENCHMARKS.md"
HEADING = "## The sharpness measurement"


def defaults():
    """case -> (module, config, what in words[, task]): the run each page opens on."""
    from core import registry
    from core.cases.cifar import run as cifar  # its SHARPNESS_MEASUREMENTS
    from core.cases.linreg import config as linreg_config
    from core.cases.linreg import single
    from core.cases.poly import config as poly_config
    from core.cases.poly import sharpness as poly_sharpness
    from core.cases.sine import config as sine  # where its SHARPNESS_MEASUREMENTS lives

    cifar_cfg = registry.get("cifar").page_preset("as-posted")
    if os.environ.get("CLINIC_OFFLINE") == "1":
        cifar_cfg = dataclasses.replace(cifar_cfg, dataset="synthetic")
    return {
        "sine": (sine, sine.AS_POSTED, "as-posted: 3000 full-batch steps"),
        "cifar": (cifar, cifar_cfg, f"as-posted quick view ({cifar_cfg.dataset}): 400 steps of 250"),
        "poly": (poly_sharpness, poly_config.AS_POSTED, "as-posted: the 29-rate scan, 1000 epochs"),
        "linreg": (single, linreg_config.AS_POSTED, "as-posted detail run: 10,000 Adam steps, B = 10", single.SINGLE),
    }


def main(argv=None) -> int:
    import torch

    from core import curvature, device, registry, runner

    parser = argparse.ArgumentParser(prog="python -m bench.sharpness", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="sine,cifar,poly,linreg")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="put the table in BENCHMARKS.md (its own section)")
    args = parser.parse_args(argv)

    inside = [0.0]
    measure = curvature.top_eigenvalue

    def timed(*a, **kw):
        t = time.perf_counter()
        try:
            return measure(*a, **kw)
        finally:
            inside[0] += time.perf_counter() - t

    curvature.top_eigenvalue = timed
    cpu = device.pick("cpu")
    rows = []
    for name in args.cases.split(","):
        module, config, what, *task = defaults()[name]
        case, count = registry.get(name), module.SHARPNESS_MEASUREMENTS
        with_it, without, shares, measured = [], [], [], 0
        for rep in range(args.repeat + 1):  # the first round warms up
            for m in (count, 0):
                module.SHARPNESS_MEASUREMENTS = m
                inside[0] = 0.0
                result = runner.execute(case, config, cpu, task=task[0] if task else None)
                if rep == 0:
                    continue
                if m:
                    with_it.append(result.seconds)
                    shares.append(inside[0] / (result.seconds - inside[0]))
                    measured = len(result.frames["sharpness"])
                else:
                    without.append(result.seconds)
        module.SHARPNESS_MEASUREMENTS = count
        a, b = statistics.median(with_it), statistics.median(without)
        rows.append(
            f"| {name} | {what} | {measured} | {b:.2f} | {a:.2f} | {a / b - 1:+.0%} | {statistics.median(shares):.0%} |"
        )
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    lines = [
        f"Written by `python -m bench.sharpness` on {stamp}: torch {torch.__version__}, {os.cpu_count()} CPUs "
        f"shared with other jobs, medians of {args.repeat} interleaved repeats after one warm-up. 'time measuring' "
        "is the time inside the measurement over the rest of the same run (robust to the machine's load "
        "drifting between runs); the wall-time change compares whole runs.",
        "",
        "| case | default run | measured steps | without (s) | with (s) | wall-time change | time measuring |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        *rows,
    ]
    print("\n".join(lines))
    if args.write:
        BENCHMARKS.write_text(replace_section(BENCHMARKS.read_text(), HEADING, f"{HEADING}\n\n" + "\n".join(lines)))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
