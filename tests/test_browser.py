"""A real browser against `streamlit run app.py`: every page opens, finishes its script
without an exception box, and leaves a screenshot in screenshots/ (git-ignored).

Needs Debian's `chromium` and the `playwright` Python package (its own browser download
is not used). Skipped where Chromium is missing, except in CI (CI=true), where a
missing browser is a failure: `.ci/run` installs it.
"""

import contextlib
import json
import os
import re
import shutil
import time
from pathlib import Path

import pytest

from bench import interactions
from core import registry

ROOT = Path(__file__).resolve().parents[1]
SHOTS = ROOT / "screenshots"
CHROMIUM = os.environ.get("CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
PAGE_TIMEOUT_S = 240

pytestmark = pytest.mark.browser


def _require(ok: bool, why: str):
    if not ok:
        if os.environ.get("CI"):
            pytest.fail(f"{why} (CI must run the browser test: see .ci/run)")
        pytest.skip(why)


@pytest.fixture(scope="module")
def server():
    with streamlit_server() as (url, started, _):
        yield url, started


@contextlib.contextmanager
def streamlit_server(env: dict[str, str] | None = None):
    """`streamlit run app.py` on a free port (the benchmark's own starter), with `env` added to this
    process's environment: yields (url, when it was started, the process)."""
    _require(CHROMIUM is not None, "no chromium on PATH")
    started = time.monotonic()
    with interactions.server(env) as (url, proc):
        yield url, started, proc


@pytest.fixture(scope="module")
def browser():
    _require(CHROMIUM is not None, "no chromium on PATH")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        _require(False, "the playwright package is not installed")
    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        yield b
        b.close()


def wait_until_finished(page, timeout_s: float = PAGE_TIMEOUT_S) -> None:
    """Until the app's main block has content and no script run is in progress for a second."""
    page.wait_for_selector('[data-testid="stMainBlockContainer"] [data-testid="stHeading"]', timeout=timeout_s * 1000)
    deadline = time.monotonic() + timeout_s
    quiet_since = None
    while time.monotonic() < deadline:
        running = page.locator('[data-testid="stStatusWidget"]').count() > 0
        if running:
            quiet_since = None
        elif quiet_since is None:
            quiet_since = time.monotonic()
        elif time.monotonic() - quiet_since > 1.5:
            return
        time.sleep(0.2)
    raise TimeoutError("the page's script did not finish")


PAGES = [("home", "")] + [(c.name, re.sub(r"^\d+_", "", Path(c.page).stem)) for c in registry.CASES.values()]


def test_every_page_renders_without_an_exception(server, browser):
    url, started = server
    SHOTS.mkdir(exist_ok=True)
    timings = {}
    # Streamlit scrolls inside its main block, so a tall viewport is what captures a whole page
    context = browser.new_context(viewport={"width": 1440, "height": 2400}, device_scale_factor=1)
    try:
        for name, path in PAGES:
            page = context.new_page()
            t0 = time.monotonic()
            page.goto(f"{url}/{path}")
            wait_until_finished(page)
            timings[name] = round(time.monotonic() - t0, 2)
            if name == "home":
                timings["streamlit_run_to_home_rendered"] = round(time.monotonic() - started, 2)
            exceptions = page.locator('[data-testid="stException"]')
            assert exceptions.count() == 0, exceptions.first.inner_text()
            if name != "home":
                assert page.locator('[data-testid="stVegaLiteChart"]').count() > 0, f"{name}: no chart"
            page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
            page.close()
    finally:
        context.close()
    (SHOTS / "timings.json").write_text(json.dumps(timings, indent=2))


# what issue 7 puts on each page, beyond pins, links and exports (which every page has)
RANGE_TEST = {"sine", "cifar", "poly"}
UPLOAD = {"sine", "poly"}


def settle(page, timeout_s: float = PAGE_TIMEOUT_S) -> None:
    """After a click: let the rerun start, then wait until it has finished."""
    time.sleep(0.7)
    wait_until_finished(page, timeout_s)


def no_exception(page, where: str) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, f"{where}: {boxes.first.inner_text()}"


@pytest.mark.parametrize("name", [c.name for c in registry.CASES.values()])
def test_compare_share_export_find_and_upload_in_the_browser(name, server, browser, tmp_path):
    url, _ = server
    case = registry.get(name)
    path = re.sub(r"^\d+_", "", Path(case.page).stem)
    context = browser.new_context(viewport={"width": 1440, "height": 2400}, accept_downloads=True)
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    page = context.new_page()
    try:
        # share: a link with a preset reproduces that view, and the URL keeps following the settings
        page.goto(f"{url}/{path}?preset=fixed")
        wait_until_finished(page)
        no_exception(page, "link")
        assert page.get_by_text("Settings: fixed", exact=False).count() > 0
        assert "preset=fixed" in page.url

        # compare: pin this run; it is listed, with the settings it differs in
        page.get_by_role("button", name="Pin this run").click()
        settle(page)
        no_exception(page, "pin")
        names = page.locator('[data-testid="stMain"] input').evaluate_all("es => es.map(e => e.value)")
        assert any(n.startswith("pin 1") for n in names)  # its name, in a box that renames it
        assert "pin1=" in page.url  # pins travel in the link

        # share: Copy link puts this very link (settings and pins) on the clipboard, and it reopens the comparison
        button = next(f for f in page.frames if f.locator("#copy").count()).locator("#copy")
        button.click()
        button.get_by_text("Link copied").wait_for(timeout=5000)
        link = page.evaluate("() => navigator.clipboard.readText()")
        assert link == page.url
        again = context.new_page()
        again.goto(link)
        wait_until_finished(again)
        no_exception(again, "copied link")
        names = again.locator('[data-testid="stMain"] input').evaluate_all("es => es.map(e => e.value)")
        assert any(n.startswith("pin 1") for n in names) and "preset=fixed" in again.url
        again.close()

        # export: the history downloads as CSV
        page.get_by_text("Export: data, a standalone script", exact=False).click()
        with page.expect_download() as download:
            page.get_by_role("button", name="History (CSV)").click()
        saved = tmp_path / download.value.suggested_filename
        download.value.save_as(saved)
        header = saved.read_text().splitlines()[0].split(",")
        assert saved.suffix == ".csv" and "step" in header and "loss" in header
        with page.expect_download() as download:
            page.get_by_role("button", name="Standalone script (.py)").click()
        assert download.value.suggested_filename.endswith(".py")

        if name in RANGE_TEST:
            page.goto(f"{url}/{path}")  # the posted settings
            wait_until_finished(page)
            page.get_by_text("Find the learning rate (range test)", exact=False).click()
            page.get_by_role("button", name="Run the range test").click()
            settle(page)
            no_exception(page, "range test")
            # a rate is offered only when its short run ended lower than the current lr's (issue 14)
            use = page.get_by_role("button", name=re.compile(r"^Use lr = "))
            if use.count():
                suggested = use.inner_text().removeprefix("Use lr = ").strip()
                use.click()
                settle(page)
                assert page.get_by_role("textbox", name="lr", exact=True).input_value() == suggested
            else:
                assert page.get_by_text("no rate to offer", exact=False).count() == 1

        if name in UPLOAD:
            csv = tmp_path / "points.csv"
            csv.write_text("x,y\n" + "\n".join(f"{i / 10},{(i / 10) ** 2 / 10}" for i in range(60)))
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(csv))
            settle(page)
            no_exception(page, "upload")
            assert page.get_by_text("Your uploaded points are not part of the page's link.").count() == 1
            # a bad file after it keeps it (the browser empties the uploader before taking the new file)
            bad = tmp_path / "bad.csv"
            bad.write_text("x,y\n1,2\nthree,4\n")
            page.locator('[data-testid="stFileUploaderDropzoneInput"]').set_input_files(str(bad))
            settle(page)
            assert page.get_by_text("line 3 is not two numbers", exact=False).count() == 1
            assert page.get_by_text("still using points.csv", exact=False).count() == 1
            assert page.get_by_text("60 points, kept for this session", exact=False).count() == 1
        page.screenshot(path=str(SHOTS / f"{name}-features.png"), full_page=True)
    finally:
        context.close()


# what must never be cut at 1024 px: metric labels, values and deltas, and button labels
CUT = """() => [...document.querySelectorAll(
    '[data-testid="stMain"] [data-testid="stMetricLabel"] p, [data-testid="stMain"] [data-testid="stMetricValue"] div,'
    + '[data-testid="stMain"] [data-testid="stMetricDelta"] div, [data-testid="stMain"] button p')]
    .filter(e => e.offsetParent !== null && e.scrollWidth > e.clientWidth + 1).map(e => e.textContent)"""


def test_nothing_is_cut_at_1024_px(server, browser):
    """Issue 14, item 5: at 1024×768 metric labels ('Least-squa…'), values ('3.01…') and buttons ('Pin th…')
    were cut off. Pins at a link, so the comparison box's buttons and names are on the page too."""
    url, _ = server
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    try:
        page.goto(f"{url}/Polynomial_fit?preset=fixed&epochs=300&pin1=preset:standardized;epochs:300")
        wait_until_finished(page)
        assert page.evaluate(CUT) == []
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / "poly-1024.png"))
    finally:
        page.close()


@pytest.mark.parametrize(
    "path",
    [
        "Sine_fit?pin1=preset:fixed",
        "CIFAR_x255?preset=x255",
        "Linear_regression?preset=fixed-shape&pin1=preset:as-posted",
    ],
)
def test_nothing_is_cut_at_1024_px_on_the_other_pages(path, server, browser):
    """Issue 14, item 5, on the sine, CIFAR and linear-regression pages (with a pin each where the page
    has room for one): metric labels, values, deltas and buttons whole at 1024×768."""
    url, _ = server
    page = browser.new_page(viewport={"width": 1024, "height": 768})
    try:
        page.goto(f"{url}/{path}")
        wait_until_finished(page)
        no_exception(page, path)
        assert page.evaluate(CUT) == []
        SHOTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{path.split('?')[0].lower()}-1024.png"), full_page=True)
    finally:
        page.close()
