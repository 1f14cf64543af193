"""The book builds without warnings, and built pages render in headless Chromium offline."""
from __future__ import annotations

import functools
import http.server
import re
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
VENDOR = ROOT / "_build" / "vendor"
pytestmark = pytest.mark.book
PAGES = ["book/intro.html", "chapters/01_data_and_metrics.html", "chapters/02_fusion_baselines.html",
         "chapters/03_dashfusion.html", "chapters/04_lnln.html"]


@pytest.fixture(scope="module")
def html(tmp_path_factory):
    """Build the book into a temporary folder (-W -n --keep-going: any warning fails)."""
    assert (VENDOR / "mathjax" / "tex-chtml.js").exists(), "run `make vendor` first (MathJax and widget JS)"
    out = tmp_path_factory.mktemp("book")
    jb = Path(sys.executable).with_name("jupyter-book")
    proc = subprocess.run([str(jb), "build", str(ROOT), "--path-output", str(out), "-W", "-n", "--keep-going"],
                          capture_output=True, text=True, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out / "_build" / "html"


def test_no_page_loads_anything_from_a_cdn(html):
    external = re.compile(r"""<(script|link|img)[^>]+(src|href)=["'](https?:)?//[^"']+""", re.I)
    offenders = {}
    for page in html.rglob("*.html"):
        hits = [m.group(0)[:120] for m in external.finditer(page.read_text(errors="replace"))
                if "stylesheet" in m.group(0) or m.group(1).lower() in ("script", "img")]
        if hits:
            offenders[str(page.relative_to(html))] = hits
    assert offenders == {}
    assert (html / "_static" / "mathjax" / "tex-chtml.js").exists()


@pytest.fixture(scope="module")
def browser(html):
    chromium, driver = shutil.which("chromium"), shutil.which("chromedriver")
    assert chromium and driver, "headless Chromium is needed: apt-get install chromium chromium-driver"
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    class QuietHandler(http.server.SimpleHTTPRequestHandler):
        def log_message(self, *args):
            pass

    handler = functools.partial(QuietHandler, directory=str(html))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    opts = webdriver.ChromeOptions()
    opts.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1280,1600"):
        opts.add_argument(flag)
    drv = webdriver.Chrome(service=Service(driver), options=opts)
    drv.set_page_load_timeout(60)
    yield drv, f"http://127.0.0.1:{server.server_address[1]}"
    drv.quit()
    server.shutdown()


def _wait(drv, script, seconds=30):
    from selenium.webdriver.support.ui import WebDriverWait
    return WebDriverWait(drv, seconds).until(lambda d: d.execute_script(script))


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_math_figures_and_nothing_external(browser, page):
    drv, base = browser
    drv.get(f"{base}/{page}")
    _wait(drv, "return document.readyState === 'complete'")
    if "chapters/" in page:
        # MathJax has typeset the equations, and every figure has decoded
        assert _wait(drv, "return document.querySelectorAll('mjx-container').length") > 0
        n_img = drv.execute_script("return document.querySelectorAll('.cell_output img').length")
        assert n_img >= 2
        broken = drv.execute_script(
            "return [...document.images].filter(i => !(i.complete && i.naturalWidth > 0)).map(i => i.src)")
        assert broken == []
    resources = drv.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert [r for r in resources if not r.startswith(base)] == []
    shots = ROOT / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    drv.save_screenshot(str(shots / (page.replace("/", "_") + ".png")))


def test_widget_is_rendered_from_saved_state(browser):
    drv, base = browser
    drv.get(f"{base}/chapters/02_fusion_baselines.html")
    assert _wait(drv, "return document.querySelectorAll('.jupyter-widgets select, .widget-dropdown').length") > 0


def test_missing_rate_slider_is_rendered_from_saved_state(browser):
    drv, base = browser
    drv.get(f"{base}/chapters/04_lnln.html")
    assert _wait(drv, "return document.querySelectorAll('.widget-slider, .widget-hslider').length") > 0
    # the HTML box beside the slider shows the saved predictions, not an empty frame
    text = drv.execute_script("return [...document.querySelectorAll('.widget-html')].map(e => e.innerText).join(' ')")
    assert "LNLN" in text or "lnln" in text
