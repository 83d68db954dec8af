"""What a person waits for: `python -m bench --interactions` (also part of the full `python -m bench`).

Starts `streamlit run app.py` on a free port, drives headless Chromium through each case page's
standard interactions, and times each from the person's action (the click, the key, the page
request) to two moments, measured in the page's own clock:

    first   the first change inside the page's main block (a node added or removed, text changed):
            the live training panel, a chart, a metric
    final   the last such change before the app is idle (no script run in progress and nothing
            changing for QUIET_S): the final charts painted, the compared runs and seed set included
    current when the page starts training what it trains after the current run's charts (a progress
            bar "… (the current run is drawn)": the comparison, pins, the seed set); the final time
            where nothing trains after

Each repeat starts a fresh server, so "open (cold)" and "preset … (uncached)" train, and their second
occurrence ("cached") reads the result cache. Where the interaction trains a run, its time is also
given against the same run's training time measured in this process (`runner.execute`, one run),
so the figures keep their meaning on a loaded machine. Results: p50 and p95 per page and
interaction, into BENCHMARKS.md's "## Interaction latency" section with the machine and its load.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import math
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

from core.ui.runs import AFTER_DRAWN

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Interaction latency"
QUIET_S = 1.5  # idle: no run in progress and no change in the main block for this long
NOTHING_S = 10.0  # an action after which nothing changes and nothing runs for this long changed nothing
ACTION_TIMEOUT_S = 600  # one interaction, at most (a CIFAR run under heavy load); longer is recorded as such
VIEWPORT = {"width": 1440, "height": 1000}
TARGETS = {  # issue 17, p95 on a quiet 2-core CPU (seconds)
    "cached": 0.5,  # anything already computed: to painted
    "first": 0.5,  # first visible change after any action
    "run": 2.0,  # sine, poly, linreg runs: to final charts
    "cifar": 6.0,  # CIFAR quick view: to final charts
}

# Installed into every document before Streamlit's own scripts: records, in performance.now()
# milliseconds, the last user action (t0), the first and the last change in the main block after it,
# and the last moment a script run was in progress (Streamlit's status widget shown).
_PROBE = """
(() => {
  const AFTER_DRAWN = AFTER_DRAWN_TEXT;
  const s = window.__clinic = {t0: 0, first: null, last: null, running: 0, changes: 0, current: null};
  const after = () => [...document.querySelectorAll('[data-testid="stProgress"]')]
    .some((p) => p.textContent.includes(AFTER_DRAWN));  // textContent: no forced layout
  const inMain = (n) => {
    const e = n && (n.nodeType === 1 ? n : n.parentElement);
    return e && e.closest && e.closest('[data-testid="stMainBlockContainer"]');
  };
  const seen = () => { const t = performance.now(); if (s.first === null) s.first = t; s.last = t; s.changes++; };
  new MutationObserver((list) => {
    for (const m of list) {
      if ((m.type === 'childList' || m.type === 'characterData') && inMain(m.target)) {
        seen();
        if (s.current === null && after()) s.current = performance.now();
        return;
      }
    }
  }).observe(document, {childList: true, characterData: true, subtree: true});
  setInterval(() => {
    if (document.querySelector('[data-testid="stStatusWidget"]')) s.running = performance.now();
  }, 20);
  const act = () => { s.t0 = performance.now(); s.first = null; s.last = null; s.changes = 0; s.current = null; };
  window.addEventListener('pointerdown', act, true);
  window.addEventListener('keydown', (e) => { if (e.key === 'Enter' || e.key.startsWith('Arrow')) act(); }, true);
})();
"""


@dataclasses.dataclass
class Timing:
    page: str
    action: str
    first_s: float | None  # None: nothing in the main block changed
    final_s: float
    train_s: float | None = None  # the same run's training time in this process, where it trains one
    kind: str = "cached"  # which target applies: cached, run or cifar
    current_s: float | None = None  # the current run's charts drawn, where runs train after them; else final_s

    @property
    def drawn_s(self) -> float:
        """Until the current run's charts are drawn: what the run targets are about."""
        return self.final_s if self.current_s is None else min(self.current_s, self.final_s)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def server(env: dict[str, str] | None = None) -> Iterator[tuple[str, subprocess.Popen]]:
    """A fresh `streamlit run app.py` (empty caches), with `env` added to this process's environment;
    yields its URL and its process (tests/test_browser.py starts its servers here too)."""
    port = _free_port()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "streamlit", "run", "app.py", "--server.headless", "true",
             "--server.port", str(port), "--server.address", "127.0.0.1"],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **(env or {})},
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while True:
                try:
                    with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as r:
                        if r.read().strip() == b"ok":
                            break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    raise RuntimeError(f"streamlit did not come up:\n{log.read()[-2000:]}")
                time.sleep(0.2)
            yield url, proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()


def settle(page, timeout_s: float = ACTION_TIMEOUT_S) -> tuple[float | None, float, float | None]:
    """Wait until the app is idle after an action; return (first change, final change, current run
    drawn) in seconds after it, in the page's clock; (None, timeout_s, None) when it is not idle by then."""
    time.sleep(0.3)  # the rerun's request leaves the browser
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        s = page.evaluate("() => ({...window.__clinic, now: performance.now()})")
        busy = page.locator('[data-testid="stStatusWidget"]').count() > 0
        latest = max(s["last"] or 0, s["running"], s["t0"])
        # nothing seen yet: on a loaded machine the rerun may take a while to start; wait up to NOTHING_S
        began = s["first"] is not None or s["running"] > s["t0"] or s["now"] - s["t0"] > NOTHING_S * 1000
        if began and not busy and s["now"] - latest > QUIET_S * 1000:
            final = max(s["last"] or s["t0"], s["running"]) - s["t0"]
            first = None if s["first"] is None else s["first"] - s["t0"]
            current = None if s["current"] is None else max(s["current"] - s["t0"], 0) / 1000
            return (None if first is None else first / 1000), max(final, 0) / 1000, current
        time.sleep(0.1)
    return None, timeout_s, None  # not idle within the limit: recorded at the limit (the table shows it)


def open_page(page, url: str, ready: str = "") -> tuple[float | None, float, float | None]:
    """Navigate and settle; t0 is the navigation's start (0 in the new document's clock). ready: a
    selector the finished page has (its "Pin this run"): on a loaded machine a new session may pause
    between its first elements and its run, which would otherwise read as idle."""
    page.goto(url)
    page.wait_for_function("() => window.__clinic !== undefined")
    page.evaluate("() => { const s = window.__clinic; s.t0 = 0; }")
    page.wait_for_selector(
        ready or '[data-testid="stMainBlockContainer"] [data-testid="stHeading"]', timeout=ACTION_TIMEOUT_S * 1000
    )
    return settle(page)


RESET = "() => { const s = window.__clinic; s.t0 = performance.now(); s.first = s.last = s.current = null; }"


def css_key(key: str) -> str:
    """The class Streamlit gives an element with this key (its frontend's own rule)."""
    return ".st-key-" + re.sub(r"[^a-zA-Z0-9_-]", "-", key.strip())


def click(page, locator) -> tuple[float | None, float, float | None]:
    locator.first.scroll_into_view_if_needed()
    page.evaluate(RESET)
    locator.first.click()
    return settle(page)


def nudge_lr(page, case_name: str) -> tuple[float | None, float, float | None] | None:
    """Move the learning rate one notch: a slider's arrow key where the page has one, else the
    typed value times 10^0.1 (one notch of a log slider with ten per decade)."""
    slider = page.locator(f'{css_key(case_name + ".lr_slider")} input[type="range"]')  # the log slider's thumb
    if slider.count():
        slider.first.focus()
        page.keyboard.press("ArrowRight")
        return settle(page)
    box = page.locator(f"{css_key(case_name + '.lr')} input")
    if not box.count():
        return None
    value = float(box.first.input_value())
    box.first.fill(f"{value * 10**0.1:.3g}")
    page.evaluate(RESET)
    box.first.press("Enter")
    return settle(page)


def revisit(page, case) -> tuple[float | None, float, float | None]:
    """To the home page and back through the sidebar's links (no page load: the same session and
    frontend); the time of the way back, whose results are all cached."""
    links = page.locator('[data-testid="stSidebar"] a')
    click(page, links.filter(has_text="Home"))
    return click(page, links.filter(has_text=case.short))


def training_seconds(case, config) -> float:
    """One run of these settings in this process (the page's cache is not involved)."""
    import dataclasses

    import torch

    from core import runner

    if getattr(config, "dataset", None) == "cifar10":  # never a download here: the stand-in, of the same size
        config = dataclasses.replace(config, dataset="synthetic")
    t = time.perf_counter()
    runner.execute(case, config, torch.device("cpu"))
    return time.perf_counter() - t


def page_interactions(page, url: str, case, repeat: int, train: Callable) -> list[Timing]:
    """Every standard interaction of one case page, in order, on a fresh server."""
    path = re.sub(r"^\d+_", "", Path(case.page).stem)
    run_kind = "cifar" if case.name == "cifar" else "run"
    out: list[Timing] = []

    def add(action, t, kind="cached", config=None):
        if t is None:
            return
        first, final, current = t
        trained = train(config) if config is not None else None
        out.append(Timing(case.name, action, first, final, trained, kind, current))

    ready = css_key(case.name + "._pin")
    add("open (cold)", open_page(page, f"{url}/{path}", ready), run_kind, case.page_preset("as-posted"))
    add("open (cached)", open_page(page, f"{url}/{path}", ready))
    add("revisit (sidebar)", revisit(page, case))
    presets = [p for p in case.presets if p != "as-posted"]
    for name in presets:
        button = page.locator(f"{css_key(f'{case.name}.load.{name}')} button")
        if button.count():
            add(f"preset {name} (uncached)", click(page, button), run_kind, case.page_preset(name))
    for name in ["as-posted", *presets[:1]]:  # back to runs already computed
        button = page.locator(f"{css_key(f'{case.name}.load.{name}')} button")
        if button.count():
            add(f"preset {name} (cached)", click(page, button))
    fix = page.locator(f"[class*='st-key-{case.name}-fix-'] button")
    if fix.count():
        add("diagnosis fix", click(page, fix), run_kind)
    add("lr one notch", nudge_lr(page, case.name), run_kind)
    pin = page.locator(f"{css_key(case.name + '._pin')} button")
    if pin.count():
        add("pin", click(page, pin))
    export = page.get_by_text("Export: data, a standalone script", exact=False)
    if export.count():
        add("export panel", click(page, export))
    finder = page.locator(f"{css_key(case.name + '._lr_find_go')} button")
    if finder.count() and not finder.first.is_visible():  # inside a closed expander: open it first
        page.locator('[data-testid="stExpander"]', has=finder).locator("summary").first.click()
        finder.first.wait_for(state="visible")
    if finder.count():
        add("range test", click(page, finder), run_kind)
    return out


def home_page(browser, url: str) -> list[Timing]:
    """The home page opened by URL twice (its second load: the browser's own caches warm): what any page
    load costs before a page has anything to train or draw (Streamlit's frontend starting, the session's
    first script run), the floor under every "open" row."""
    context = browser.new_context(viewport=VIEWPORT)
    context.add_init_script(_PROBE.replace("AFTER_DRAWN_TEXT", json.dumps(AFTER_DRAWN)))
    page = context.new_page()
    try:
        out = []
        for label in ("first load", "reload"):
            first, final, current = open_page(page, url)
            out.append(Timing("home", f"open ({label})", first, final, current_s=current))
        return out
    finally:
        context.close()


def counts(names: list[str], repeat: int) -> dict[str, int]:
    """Repeats per page: `sine:2` asks for 2 repeats of sine, a bare name for `repeat`."""
    out = {}
    for item in names:
        name, _, n = item.partition(":")
        out[name] = int(n) if n else repeat
    return out


def measure(
    names: list[str], repeat: int, log: Callable[[str], None] = print, after: Callable | None = None
) -> tuple[list[Timing], dict]:
    """Every page's interactions, `repeat` times (or as `counts` says); `after(timings, info)` is
    called after each page (the report so far is written then, so a long run that is cut short
    still leaves its figures)."""
    from playwright.sync_api import sync_playwright

    from core import registry

    chromium = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if not chromium:
        raise RuntimeError("no chromium on PATH: the interaction benchmark needs a real browser")
    trained: dict = {}

    def train(case):
        def of(config):
            key = (case.name, config)
            if key not in trained:  # once per settings: the ratio's denominator
                trained[key] = training_seconds(case, config)
            return trained[key]

        return of

    timings: list[Timing] = []
    load = [os.getloadavg()[0]]
    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path=chromium, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        try:
            per_page = counts(names, repeat)
            for r in range(max(per_page.values())):
                with server({"CLINIC_OFFLINE": "1"}) as (url, _):
                    got = home_page(browser, url)  # the floor: a page load with nothing to train or draw
                    timings += got
                    for name in [n for n, k in per_page.items() if k > r]:
                        case = registry.get(name)
                        context = browser.new_context(viewport=VIEWPORT)
                        context.add_init_script(_PROBE.replace("AFTER_DRAWN_TEXT", json.dumps(AFTER_DRAWN)))
                        page = context.new_page()
                        try:
                            got = page_interactions(page, url, case, repeat, train(case))
                        finally:
                            context.close()
                        for t in got:
                            log(
                                f"repeat {r + 1} {t.page:6s} {t.action:32s} "
                                f"{_s(t.first_s)} {_s(t.drawn_s)} {_s(t.final_s)}"
                            )
                        timings += got
                        load.append(os.getloadavg()[0])
                        if after is not None:
                            after(timings, {"load": load})
        finally:
            browser.close()
    return timings, {"load": load}


def _s(x: float | None) -> str:
    return "   -  " if x is None else f"{x:6.2f}"


def percentile(xs: list[float], q: float) -> float:
    """The q-th percentile by linear interpolation (numpy's default), of a short list."""
    xs = sorted(xs)
    k = (len(xs) - 1) * q / 100
    lo, hi = math.floor(k), math.ceil(k)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def table(timings: list[Timing]) -> str:
    rows = {}
    for t in timings:
        rows.setdefault((t.page, t.action), []).append(t)
    lines = [
        "| page | interaction | n | first change p50 / p95 (s) | current run drawn p50 / p95 (s) | "
        "final p50 / p95 (s) | drawn / training (p50) | target p95 | met |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | :---: |",
    ]
    for (page, action), ts in rows.items():
        firsts = [t.first_s for t in ts if t.first_s is not None]
        finals, drawn = [t.final_s for t in ts], [t.drawn_s for t in ts]
        ratios = [t.drawn_s / t.train_s for t in ts if t.train_s]
        target = TARGETS[ts[0].kind]
        p95_first = percentile(firsts, 95) if firsts else None
        # the targets are about the current run: the comparison and the seed set must not delay it
        met = percentile(drawn, 95) <= target and (p95_first is None or p95_first <= TARGETS["first"])
        first = f"{percentile(firsts, 50):.2f} / {p95_first:.2f}" if firsts else "no change"
        final = f"{percentile(finals, 50):.2f} / {percentile(finals, 95):.2f}"
        current = f"{percentile(drawn, 50):.2f} / {percentile(drawn, 95):.2f}"
        lines.append(
            f"| {page} | {action} | {len(ts)} | {first} | {current} | {final} | "
            f"{f'{percentile(ratios, 50):.2f}' if ratios else '-'} | {target:g} | {'yes' if met else 'no'} |"
        )
    return "\n".join(lines)


def report(timings: list[Timing], info: dict, machine: dict, repeat: int) -> str:
    stamp = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    load = info["load"]
    return "\n".join(
        [
            HEADING,
            "",
            f"Written by `python -m bench --interactions` on {stamp}: {machine['cpu']}, {machine['cores']} cores, "
            f"headless Chromium at {VIEWPORT['width']}×{VIEWPORT['height']}, each repeat (n) on a fresh "
            f"server. Load average (1 min) during the run: {min(load):.1f} to {max(load):.1f}. Times run from the "
            "action to the first change in the page's main block; to the current run's charts drawn (the moment "
            "the page starts training its comparison, pins or seed set after them; otherwise the final time); "
            f"and to its last change before the app is idle ({QUIET_S:g} s quiet). *drawn / training* divides "
            "the current run's time by the same run's training time in "
            "the benchmark's process, which keeps its meaning on a loaded machine. Targets (issue 17, p95 on a "
            "quiet machine): computed results 0.5 s, first change 0.5 s, sine/poly/linreg runs 2 s, CIFAR's "
            "quick view 6 s.",
            "",
            table(timings),
        ]
    )


def main(names: list[str], repeat: int, write: bool = True) -> int:
    from bench import replace_section
    from bench.__main__ import machine

    info_machine = machine()
    print(f"machine: {info_machine}", flush=True)

    def written(timings, info):
        text = report(timings, info, info_machine, repeat)
        if write:
            path = ROOT / "BENCHMARKS.md"
            path.write_text(replace_section(path.read_text() if path.exists() else "# Benchmarks\n", HEADING, text))
        return text

    timings, info = measure(names, repeat, log=lambda line: print(line, flush=True), after=written)
    print()
    print(written(timings, info))
    return 0
