"""The headless CLI over the same code as the pages.

    python -m core list [--json]
    python -m core run CASE [--preset NAME] [--set KEY=VALUE ...] [--device auto|cpu|cuda|mps] [--history]
                           [--max-seconds S] [--task NAME]
    python -m core script CASE [--preset NAME] [--set KEY=VALUE ...]
    python -m core figures CASE [--preset NAME] [--set KEY=VALUE ...] [--device ...] [--task NAME] --out DIR
    python -m core examine SCRIPT.py [--json] [--out DIR] [--steps N] [-- ARGS ...]

`run` prints exactly one JSON object on stdout; `script` prints a standalone Python
script that reproduces the run with plain PyTorch; `figures` writes the page's charts as
PNG and SVG; `examine` runs a training script under the examiner (core/examine) and
prints its findings (with --json, the report as the last line of stdout). A bad setting
exits with status 2 and one line on stderr that names the
setting and what it allows.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from typing import Any

from core.settings import SettingError, to_text


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # one line, status 2, like a bad setting
        self.exit(2, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m core", description="Convergence Clinic: the cases, headless.")
    sub = parser.add_subparsers(dest="command", required=True)
    p_list = sub.add_parser("list", help="every case, its presets and its settings")
    p_list.add_argument("--json", action="store_true", help="print JSON instead of text")
    p_run = sub.add_parser("run", help="train one case and print one JSON object")
    p_script = sub.add_parser("script", help="print a standalone script that reproduces the run")
    p_fig = sub.add_parser("figures", help="write the page's charts as PNG and SVG")
    for p in (p_run, p_script, p_fig):
        p.add_argument("case")
        p.add_argument("--preset", default="as-posted")
        p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE")
    for p in (p_run, p_fig):
        p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
        p.add_argument(
            "--max-seconds",
            type=float,
            default=None,
            help="refuse a run whose estimated cost is over this many seconds (default: no limit)",
        )
        p.add_argument("--task", help="a second job of the case on the same settings (linreg: single)")
    p_run.add_argument("--history", action="store_true", help="include the per-step history")
    p_fig.add_argument("--out", required=True, help="folder for the PNG and SVG files")
    p_ex = sub.add_parser("examine", help="run a training script under the examiner and diagnose it")
    p_ex.add_argument("script", help="the training script, run as __main__; its own arguments after --")
    p_ex.add_argument("--json", action="store_true", help="also print the report as JSON, the last line of stdout")
    p_ex.add_argument("--out", help="folder for the run record (JSON), for the 'Your run' page")
    p_ex.add_argument("--steps", type=positive_int, help="stop the script after this many optimizer steps")
    return parser


def positive_int(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1 (got {n})")
    return n


def parse_sets(sets: list[str]) -> dict[str, str]:
    out = {}
    for item in sets:
        key, eq, value = item.partition("=")
        if not eq or not key.strip():
            raise SettingError(item, "expected KEY=VALUE")
        out[key.strip()] = value
    return out


def cmd_list(as_json: bool) -> str:
    from core import registry

    cases = [
        {
            "case": c.name,
            "title": c.title,
            "symptom": c.symptom,
            "presets": list(c.presets),
            "settings": c.describe(),
        }
        for c in registry.CASES.values()
    ]
    if as_json:
        return json.dumps(cases, indent=2)
    lines = []
    for c in cases:
        lines += [f"{c['case']}: {c['title']}", f"  presets: {', '.join(c['presets'])}", "  settings:"]
        for s in c["settings"]:
            lines.append(f"    {s['name']:<20} {s['type']:<7} default {s['default']:<12} {s['allowed']}  {s['help']}")
        lines.append("")
    return "\n".join(lines)


def configured(args):
    from core import registry

    case = registry.get(args.case)
    return case, case.configure(args.preset, parse_sets(args.sets))


def cmd_run(args) -> dict[str, Any]:
    from core import device as device_
    from core import runner

    case, config = configured(args)
    task = case.task(args.task) if args.task else None
    device = device_.pick(args.device)
    result = runner.execute(case, config, device, task=task, max_seconds=args.max_seconds)
    out = {
        "case": case.name,
        "preset": args.preset,
        **({"task": args.task} if task else {}),
        "config": {k: to_text(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(config).items()},
        "device": result.device,
        "seconds": round(result.seconds, 4),
        "metrics": dict(result.metrics),
    }
    if args.history:
        out["history"] = result.history.to_dict(orient="list")
    from core.export import jsonable

    return jsonable(out)


def cmd_figures(args) -> dict[str, Any]:
    """The page's charts for this run (with the as-posted run overlaid when it differs; a task's charts alone)."""
    from pathlib import Path

    from core import device as device_
    from core import figures, runner

    case, config = configured(args)
    task = case.task(args.task) if args.task else None
    device = device_.pick(args.device)
    runs = {"current": runner.execute(case, config, device, task=task, max_seconds=args.max_seconds)}
    configs = {"current": config}
    reference = case.comparison(config) if task is None else None
    if reference is not None:
        runs["as-posted"] = runner.execute(case, reference, device, max_seconds=args.max_seconds)
        configs["as-posted"] = reference
    # as the page's export: each run named by its settings in the legend, and a caption of the data
    names, line = figures.report_names(case, configs), figures.caption(case, config, runs["current"])
    paths = figures.write(figures.charts_for(case, runs), Path(args.out), case.file_stem(config), names, line)
    return {"case": case.name, "preset": args.preset, "device": str(device), "files": [str(p) for p in paths]}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    script_args = []
    if argv[:1] == ["examine"] and "--" in argv:  # the script's own arguments
        cut = argv.index("--")
        argv, script_args = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    if args.command == "examine":
        from core.examine import script

        return script.main(args, script_args)
    try:
        if args.command == "list":
            print(cmd_list(args.json))
        elif args.command == "script":
            from core import export

            print(export.script(*configured(args)), end="")
        elif args.command == "figures":
            print(json.dumps(cmd_figures(args)))
        else:
            print(json.dumps(cmd_run(args), allow_nan=False))
    except SettingError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
