"""The examiner's overhead and detections: `python -m bench --examine`.

Each script of the examiner's test corpus (tests/examine_corpus: a bug script and its fixed
twin per finding key, and the healthy scripts) and the four cases' exported scripts on the
tests' budgets runs in this process, plain (exec as __main__) and under the examiner
(`core.examine.script.run`), interleaved, `--repeat` times after a warm-up, with one torch
thread; the medians give the ratio. Then the per-key detection table. The section it writes
into BENCHMARKS.md is kept when `python -m bench` rewrites the rest.
"""

from __future__ import annotations

import contextlib
import datetime
import io
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench import replace_section

ROOT = Path(__file__).resolve().parents[1]
CORPUS = ROOT / "tests" / "examine_corpus"
HEADING = "## The examiner (`python -m bench --examine`)"
CAUSES = {  # what each case's failing script must be told (tests/test_examine.py asserts the same)
    "sine": {"saturated-activation", "sum-reduction"},
    "cifar": {"input-scale", "dead-relu", "loss-at-chance"},
    "poly": {"ill-conditioned"},
    "linreg": {"loss-shape-broadcast", "unshuffled-data"},
}


def scripts(folder: Path) -> list[Path]:
    """The corpus, and the cases' exported scripts (failing and fixed) written into `folder`."""
    from core.examine import demo

    paths = sorted(CORPUS.glob("*.py")) + sorted((CORPUS / "healthy").glob("*.py"))
    for name in CAUSES:
        for preset in (None, "fixed"):
            text = demo.demo_script(name, preset)
            text = demo.small_stand_in(text) if name == "cifar" else text
            p = folder / f"case_{name}_{preset or 'posted'}.py"
            p.write_text(text)
            paths.append(p)
    return paths


def plain(path: Path) -> tuple[float, float]:
    """-> (wall seconds, CPU seconds of this process)."""
    import torch

    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
        t, c = time.perf_counter(), time.process_time()
        code = compile(path.read_text(), str(path), "exec")  # as `python SCRIPT.py` does, and the examiner
        exec(code, {"__name__": "__main__", "__file__": str(path)})
        return time.perf_counter() - t, time.process_time() - c


def examined(path: Path):
    """-> (wall seconds, CPU seconds, the report)."""
    import torch

    from core.examine import script

    with torch.random.fork_rng(devices=[]), contextlib.redirect_stdout(io.StringIO()):
        t, c = time.perf_counter(), time.process_time()
        report = script.run(path, [], quiet_traceback=True, own_process_state=False)
        return time.perf_counter() - t, time.process_time() - c, report


def measure(paths: list[Path], repeat: int) -> list[dict]:
    rows = []
    for p in paths:
        plain(p), examined(p)  # warm-up: imports, first-call costs
        a, b, ca, cb, report = [], [], [], [], None
        for _ in range(repeat):
            wall, cpu = plain(p)
            a.append(wall)
            ca.append(cpu)
            wall, cpu, report = examined(p)
            b.append(wall)
            cb.append(cpu)
        row = {"script": p.name, "steps": report.steps, "plain": min(ca), "examined": min(cb)}
        row["ratio"] = row["examined"] / row["plain"]  # CPU time, best against best: other jobs only add to it
        row["wall_ratio"] = min(b) / min(a)
        row["keys"] = [f.key for f in report.findings]
        rows.append(row)
        print(
            f"{p.name:45s} {row['plain']:7.3f} s {row['examined']:7.3f} s {row['ratio']:5.2f}x {row['keys']}",
            flush=True,
        )
    return rows


def section(rows: list[dict], repeat: int) -> str:
    from core.examine import KEYS

    by = {r["script"]: r for r in rows}
    worst = max(rows, key=lambda r: r["ratio"])
    lines = [
        HEADING,
        "",
        f"Written on {datetime.datetime.now().strftime('%Y-%m-%d %H:%M')}: every script plain and under "
        f"`python -m core examine`'s examiner, in one process with one torch thread, {repeat} interleaved "
        "runs each after a warm-up. The times are this process's CPU seconds, the best of the runs: on a "
        "shared machine other jobs stretch the wall time of both variants by more than the examiner costs, "
        "and the CPU time a single-threaded run uses is what the examiner adds to (the best wall-time ratio "
        "is beside it). Target: at most 1.5× on every script. "
        f"Worst: {worst['script']}, "
        f"{worst['ratio']:.2f}×; median of all {len(rows)}: {statistics.median(r['ratio'] for r in rows):.2f}×. "
        f"Load average when it ended: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.",
        "",
        "| script | steps | plain (CPU s) | examined (CPU s) | ratio | wall-time ratio | findings |",
        "| --- | ---: | ---: | ---: | ---: | ---: | --- |",
    ]
    for r in rows:
        found = ", ".join(r["keys"]) or "none"
        lines.append(
            f"| {r['script']} | {r['steps']} | {r['plain']:.3f} | {r['examined']:.3f} | {r['ratio']:.2f}× "
            f"| {r['wall_ratio']:.2f}× | {found} |"
        )
    lines += ["", "| key | twin | bug script: detected | fixed twin: no finding |", "| --- | --- | --- | --- |"]
    twins = sorted(p.stem.removeprefix("bug_") for p in CORPUS.glob("bug_*.py"))
    for k in KEYS:
        for t in [t for t in twins if t.split("_")[0] == k]:
            bug, fixed = by.get(f"bug_{t}.py"), by.get(f"fixed_{t}.py")
            detected, clean = bool(bug and k in bug["keys"]), bool(fixed and not fixed["keys"])
            lines.append(f"| {k} | {t} | {'yes' if detected else 'NO'} | {'yes' if clean else 'NO'} |")
    lines += ["", "| case script | must name | named | fixed script's findings |", "| --- | --- | --- | --- |"]
    for name, causes in CAUSES.items():
        posted, fixed = by[f"case_{name}_posted.py"], by[f"case_{name}_fixed.py"]
        named, after = ", ".join(posted["keys"]), ", ".join(fixed["keys"]) or "none"
        lines.append(f"| {name} | {', '.join(sorted(causes))} | {named} | {after} |")
    return "\n".join(lines) + "\n"


def main(repeat: int, write: bool) -> int:
    import torch

    torch.set_num_threads(1)
    sys.path.insert(0, str(ROOT))
    with tempfile.TemporaryDirectory() as tmp:
        rows = measure(scripts(Path(tmp)), repeat)
    text = section(rows, repeat)
    print()
    print(text)
    if write:
        path = ROOT / "BENCHMARKS.md"
        old = path.read_text() if path.exists() else "# Benchmarks\n"
        path.write_text(replace_section(old, HEADING, text))
    return 0
