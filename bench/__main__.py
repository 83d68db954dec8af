"""The benchmark: every case's posted pipeline against the app's own path, on the same work.

    python -m bench                      all cases, then BENCHMARKS.md
    python -m bench --cases sine,poly    some cases
    python -m bench --repeat 5           more repeats (default 3; medians are reported)
    python -m bench --no-write           print only
    python -m bench --examine            the examiner's overhead and detections (bench/examine.py)
    python -m bench --interactions       what a person waits for in the browser, p50/p95 (bench/interactions.py)

Each case runs in its own process (so its peak resident memory is its own): the posted
pipeline and the app's path are timed interleaved, `--repeat` times each (a posted pipeline
that takes minutes may ask to be timed once: POSTED_REPEAT), and the medians are compared.
Then two trainings of the case run at once in two threads, as two sessions of the app
would, against one alone. Around the cases: the import time of `core`, the time
from `streamlit run` to the first page rendered, and, where a case counts FLOPs, this
machine's float32 matmul peak measured in the same process.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

from bench import peak_rss_mb

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- one case


def matmul_peak_gflops(threads: int, n: int = 2048, repeat: int = 8) -> float:
    """Best float32 GEMM rate of this process at `threads` threads (n x n @ n x n)."""
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b  # warm up
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * n**3 / best / 1e9


def timed(fn, state) -> float:
    t = time.perf_counter()
    fn(state)
    return time.perf_counter() - t


def run_one(name: str, repeat: int) -> dict:
    """Time one case in this process and return plain numbers."""
    import torch

    import core.runner  # noqa: F401  (imports torch._dynamo's first-use cost out of the timings)
    from core.threads import available_cores

    cores = available_cores()
    from core import registry

    mod = registry.get(name).bench
    state = mod.setup()
    default_threads = cores  # what a user's script gets: torch's default, one thread per core

    def posted(s):
        torch.set_num_threads(default_threads)
        mod.posted(s)

    # warm-up of both paths (first-call costs are not what is compared); a posted pipeline that
    # takes minutes sets POSTED_REPEAT = 1 and is timed once, without a warm-up
    posted_repeat = getattr(mod, "POSTED_REPEAT", repeat)
    if posted_repeat == repeat:
        posted(state)
    mod.app(state)
    posted_s, app_s, app_flops_s, peaks = [], [], [], []
    for i in range(repeat):  # interleaved, so drifting load hits both alike
        if i < posted_repeat:
            posted_s.append(timed(posted, state))
        if hasattr(mod, "FLOPS"):  # the peak just before each app run: the load on a shared machine drifts
            peaks.append(matmul_peak_gflops(cores))
        t = time.perf_counter()
        counted = mod.app(state)  # optionally: the seconds of the part FLOPS counts (training, not testing)
        app_s.append(time.perf_counter() - t)
        app_flops_s.append(counted if counted is not None else app_s[-1])

    out = {
        "case": name,
        "work": mod.WORK,
        "units": list(mod.UNITS),
        "posted_s": posted_s,
        "app_s": app_s,
        "cores": cores,
    }
    # more paths worth a line (e.g. the fixed preset), after the comparison: not interleaved with
    # it, because a DataLoader's worker processes (the post's num_workers=4) slowed the next app
    # run by up to 40% while they shut down
    for extra in getattr(mod, "EXTRA", ()):
        times = getattr(mod, "EXTRA_REPEAT", {}).get(extra, repeat)
        out.setdefault("extra", {})[extra] = [timed(getattr(mod, extra), state) for _ in range(times)]

    concurrent = getattr(mod, "concurrent", mod.app)

    def two_at_once() -> list[float]:
        """Two sessions start the same work together; their times, the one done first first."""
        pair = [0.0, 0.0]
        barrier = threading.Barrier(2)

        def session(i):
            barrier.wait()
            pair[i] = timed(concurrent, state)

        threads = [threading.Thread(target=session, args=(i,)) for i in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        return sorted(pair)

    alone, pairs = [], []
    for _ in range(max(3, repeat)):  # interleaved, like posted and app
        alone.append(timed(concurrent, state))
        pairs.append(two_at_once())
    out["concurrent"] = {
        "alone_s": alone,
        "pairs_s": pairs,
        "pair_s": [statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)],
    }

    if hasattr(mod, "FLOPS"):
        out["flops"] = mod.FLOPS
        out["app_flops_s"] = app_flops_s
        out["matmul_peak_gflops"] = peaks
    out["peak_rss_mb"] = peak_rss_mb()
    out["torch"] = torch.__version__
    return out


# ----------------------------------------------------------------------------- around the cases


def import_times() -> dict:
    """Fresh interpreters: `import core`, `import core.registry` (torch and every case), and
    whether torchvision was imported by the registry."""
    code = (
        "import time, sys; t = time.perf_counter(); import core; a = time.perf_counter() - t; "
        "t = time.perf_counter(); import core.registry; b = time.perf_counter() - t; "
        "print(a, b, 'torchvision' in sys.modules)"
    )
    runs = []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True)
        a, b, tv = out.stdout.split()
        runs.append((float(a), float(b), tv == "True"))
    return {
        "import_core_s": statistics.median(r[0] for r in runs),
        "import_registry_s": statistics.median(r[1] for r in runs),
        "torchvision_imported_by_registry": any(r[2] for r in runs),
    }


def cached_revisits() -> dict:
    """Seconds to re-render each case page when its result is cached (AppTest, same process):
    open the page once (trains), then time two reruns and keep the faster."""
    from streamlit.testing.v1 import AppTest

    from core import registry

    out = {}
    for case in registry.CASES.values():
        at = AppTest.from_file(str(ROOT / "app.py"), default_timeout=600)
        at.switch_page(case.page)
        at.run()
        times = []
        for _ in range(2):
            t = time.perf_counter()
            at.run()
            times.append(time.perf_counter() - t)
        out[case.name] = min(times)
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def streamlit_startup() -> dict:
    """Seconds from `streamlit run app.py` to /_stcore/health answering, and to the home
    page rendered in headless Chromium (when Chromium and Playwright are present)."""
    port = _free_port()
    start = time.monotonic()
    proc = subprocess.Popen(
        [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true", "--server.port", str(port)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    out: dict = {}
    try:
        while time.monotonic() - start < 120:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=2) as r:
                    if r.read().strip() == b"ok":
                        out["health_s"] = time.monotonic() - start
                        break
            except OSError:
                time.sleep(0.1)
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium and "health_s" in out:
            try:
                from playwright.sync_api import sync_playwright
            except ImportError:
                return out
            with sync_playwright() as p:
                b = p.chromium.launch(
                    executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
                )
                page = b.new_page()
                page.goto(f"http://127.0.0.1:{port}/")
                page.wait_for_selector(
                    '[data-testid="stMainBlockContainer"] [data-testid="stHeading"]', timeout=120_000
                )
                out["first_page_rendered_s"] = time.monotonic() - start
                b.close()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
    return out


def machine() -> dict:
    cpu = platform.processor() or "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30 if hasattr(os, "sysconf") else 0
    return {
        "cpu": cpu,
        "cores": len(os.sched_getaffinity(0)),
        "memory_gib": round(mem, 1),
        "python": platform.python_version(),
    }


# ----------------------------------------------------------------------------- report


def med(xs) -> float:
    return statistics.median(xs)


def table(results: list[dict], around: dict) -> str:
    lines = [
        "| case | work | posted (s) | app (s) | app / posted | speed-up | app throughput | "
        "two at once, each vs alone (medians) | peak RSS |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for r in results:
        posted, app = med(r["posted_s"]), med(r["app_s"])
        unit, count = r["units"]
        alone = med(r["concurrent"]["alone_s"])
        pair = r["concurrent"]["pair_s"]
        lines.append(
            f"| {r['case']} | {r['work']} | {posted:.2f} | {app:.2f} | {app / posted:.2f} | {posted / app:.1f}× | "
            f"{count / app:,.0f} {unit}/s | {pair[0] / alone:.2f}×, {pair[1] / alone:.2f}× (alone {alone:.2f} s) | "
            f"{r['peak_rss_mb']:.0f} MB |"
        )
    notes = []
    for r in results:
        for extra, times in r.get("extra", {}).items():
            against = ""
            if extra.startswith("posted"):  # another posted variant: the app's speed-up against it too
                against = f"; speed-up against it {med(times) / med(r['app_s']):.1f}×"
                if "flops" in r:
                    against += f" ({med(times) / med(r['app_flops_s']):.1f}× on the app's training steps)"
            notes.append(
                f"- {r['case']} `{extra}`: median {med(times):.2f} s ({', '.join(f'{t:.2f}' for t in times)}){against}"
            )
        if "flops" in r:
            peaks = r["matmul_peak_gflops"]  # one per app run
            peak = med(peaks)
            counted = r.get("app_flops_s", r["app_s"])
            rate = r["flops"] / med(counted) / 1e9
            whole = r["flops"] / med(r["app_s"]) / 1e9
            posted_rate = r["flops"] / med(r["posted_s"]) / 1e9
            shares = [r["flops"] / c / 1e9 / p for c, p in zip(counted, peaks, strict=True)]
            notes.append(
                f"- {r['case']}: float32 matmul peak measured in the same process just before each app run: "
                f"{', '.join(f'{p:.1f}' for p in peaks)} GFLOP/s ({r['cores']} threads). App training "
                f"{rate:.1f} GFLOP/s = **{med(shares):.0%} of peak** (median of each run against the peak "
                f"before it: {', '.join(f'{x:.0%}' for x in shares)}; training steps {med(counted):.2f} s; with "
                f"its test pass and set-up, {whole / peak:.0%}); posted pipeline {posted_rate:.1f} GFLOP/s = "
                f"{posted_rate / peak:.0%}. Speed-up on training steps alone: "
                f"**{med(r['posted_s']) / med(counted):.1f}×** (per repeat: "
                f"{', '.join(f'{p / c:.2f}×' for p, c in zip(r['posted_s'], counted, strict=False))})."
            )
        raw = {k: ", ".join(f"{t:.2f}" for t in v) for k, v in [("posted", r["posted_s"]), ("app", r["app_s"])]}
        pairs = r["concurrent"].get("pairs_s", [r["concurrent"]["pair_s"]])
        pair = "; ".join(" and ".join(f"{t:.2f}" for t in p) for p in pairs)
        notes.append(f"- {r['case']} raw times (s): posted {raw['posted']}; app {raw['app']}; two at once {pair}")
    head = [
        f"- `import core`: {around['import_core_s'] * 1000:.0f} ms; `import core.registry` (torch and every case): "
        f"{around['import_registry_s']:.2f} s; torchvision imported by it: "
        f"{'yes' if around['torchvision_imported_by_registry'] else 'no'}",
    ]
    st_ = around.get("streamlit", {})
    if st_:
        rendered = st_.get("first_page_rendered_s")
        head.append(
            f"- `streamlit run app.py` to health check answering: {st_.get('health_s', float('nan')):.1f} s"
            + (f"; to the home page rendered in headless Chromium: {rendered:.1f} s" if rendered else "")
        )
    if around.get("revisit_s"):
        head.append(
            "- a page revisited with settings already seen (cached result, AppTest rerun): "
            + ", ".join(f"{k} {v:.2f} s" for k, v in around["revisit_s"].items())
        )
    return "\n".join([*head, "", *lines, "", *notes])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--cases", help="comma-separated case names (default: every case in the registry)")
    parser.add_argument("--repeat", type=int, help="repeats (default: 3 for the cases, 5 for --interactions)")
    parser.add_argument("--no-write", action="store_true", help="do not rewrite BENCHMARKS.md")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one case in this process
    parser.add_argument("--examine", action="store_true", help="the examiner's overhead on its corpus instead")
    parser.add_argument(
        "--interactions", action="store_true", help="what a person waits for in the browser (bench/interactions.py)"
    )
    parser.add_argument("--no-interactions", action="store_true", help="the full run without the browser part")
    args = parser.parse_args(argv)
    if args.examine:
        from bench import examine

        return examine.main(args.repeat or 3, write=not args.no_write)
    if args.interactions:
        from bench import interactions
        from core import registry

        names = [n for n in (args.cases or ",".join(registry.CASES)).split(",") if n]
        return interactions.main(names, args.repeat or 5, write=not args.no_write)

    if args.one:
        print(json.dumps(run_one(args.one, args.repeat or 3)))
        return 0

    args.repeat = args.repeat or 3
    from core import registry

    benched = [name for name, case in registry.CASES.items() if case.bench is not None]
    names = [n for n in (args.cases or ",".join(benched)).split(",") if n]
    unknown = [n for n in names if n not in benched]
    if unknown:
        print(f"error: cases: no benchmark for {', '.join(unknown)}; have {', '.join(benched)}", file=sys.stderr)
        return 2
    info = machine()
    print(f"machine: {info}", flush=True)
    around = import_times()
    print(f"imports: {around}", flush=True)
    around["streamlit"] = streamlit_startup()
    print(f"streamlit: {around['streamlit']}", flush=True)
    around["revisit_s"] = cached_revisits()
    print(f"cached page revisits: {around['revisit_s']}", flush=True)
    results = []
    for name in names:
        print(f"--- {name}", flush=True)
        proc = subprocess.run(
            [sys.executable, "-m", "bench", "--one", name, "--repeat", str(args.repeat)],
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            print(proc.stderr, file=sys.stderr)
            return 1
        results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
        print(json.dumps(results[-1]), flush=True)
    report = table(results, around)
    print()
    print(report)
    if not args.no_write:
        from bench import later_sections

        torch_version = results[0]["torch"] if results else "?"
        stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
        path = ROOT / "BENCHMARKS.md"
        kept = later_sections(path.read_text() if path.exists() else "")  # --examine's and bench.sharpness's
        path.write_text(
            "# Benchmarks\n\n"
            f"Written by `python -m bench` on {stamp}: {info['cpu']}, {info['cores']} cores, "
            f"{info['memory_gib']} GiB, Python {info['python']}, torch {torch_version}. Medians of "
            f"{args.repeat} interleaved runs after one warm-up; 'speed-up' is posted / app.\n\n"
            f"{report}\n" + kept
        )
    if not args.no_interactions:
        from bench import interactions

        return interactions.main(names, 5, write=not args.no_write)
    return 0


if __name__ == "__main__":
    sys.exit(main())
