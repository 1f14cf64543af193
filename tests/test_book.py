"""The book builds without warnings, and built pages render in headless Chromium offline."""
from __future__ import annotations

import functools
import http.server
import json
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
         "chapters/03_dashfusion.html", "chapters/04_lnln.html", "chapters/05_hme.html",
         "chapters/06_cyin.html", "chapters/07_mmslf.html",
         "chapters/08_midg.html", "chapters/09_benchmark.html"]


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


# Every external link the built book may contain: the papers' DOI and arXiv pages of the
# references. No launch, repository or issue button while the repository is not public.
ALLOWED_EXTERNAL = re.compile(r"^https://(doi\.org|arxiv\.org)/")


def test_external_links_are_few_and_deliberate(html):
    links = {m for page in html.rglob("*.html")
             for m in re.findall(r'href="(https?://[^"]+)"', page.read_text(errors="replace"))}
    assert links and sorted(u for u in links if not ALLOWED_EXTERNAL.match(u)) == []
    assert not [u for u in links if "msa-in-practice" in u or "colab" in u or "mybinder" in u]


def test_vendored_mathjax_is_only_what_the_book_loads(html):
    size = sum(f.stat().st_size for f in (html / "_static" / "mathjax").rglob("*") if f.is_file())
    assert size < 5_000_000, f"{size / 1e6:.1f} MB of MathJax"


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


DRIVE = """
const root = document.querySelector('.msa-controls');
const states = JSON.parse(root.querySelector('script.msa-states').textContent);
const inputs = [...root.querySelectorAll('[data-msa-control]')];
const shown = () => root.querySelector('.msa-out').textContent;   // the theme adds attributes to <pre>
const norm = (h) => { const d = document.createElement('div'); d.innerHTML = h; return d.textContent; };
const key = () => inputs.map(el => el.type === 'checkbox' ? (el.checked ? '1' : '0') : el.value).join('|');
const seen = [[key(), shown() === norm(states[key()])]];
for (const el of inputs) {
  if (el.type === 'checkbox') { el.checked = !el.checked; }
  else { el.value = String((+el.value + 1) % (el.options ? el.options.length : (+el.max + 1))); }
  el.dispatchEvent(new Event('input'));
  seen.push([key(), shown() === norm(states[key()])]);
}
return {n_states: Object.keys(states).length, n_inputs: inputs.length, seen: seen, text: root.innerText};
"""


@pytest.mark.parametrize("page, n_inputs, n_states", [("chapters/02_fusion_baselines.html", 4, 72),
                                                       ("chapters/04_lnln.html", 2, 60),
                                                       ("chapters/05_hme.html", 4, 24)])
def test_every_control_works_without_a_kernel(browser, page, n_inputs, n_states):
    """Move each control of the precomputed figure: the shown state is the precomputed one."""
    drv, base = browser
    drv.get(f"{base}/{page}")
    _wait(drv, "return document.readyState === 'complete'")
    result = drv.execute_script(DRIVE)
    assert result["n_inputs"] == n_inputs and result["n_states"] == n_states
    keys = [k for k, _ in result["seen"]]
    assert len(set(keys)) == len(keys) == n_inputs + 1              # every move reached a new state
    assert all(ok for _, ok in result["seen"])                       # ... and shows its precomputed HTML
    assert "label" in result["text"]


def test_search_finds_a_chapter_term(browser):
    drv, base = browser
    drv.get(f"{base}/search.html?q=companions")
    # Sphinx lists results one at a time; read them once its status line says it has finished
    found = _wait(drv, "const done = (document.querySelector('#search-results .search-summary') || {}).innerText || '';"
                       "const r = [...document.querySelectorAll('#search-results li a')].map(a => a.href);"
                       "return done.includes('finished') && r.length ? r : null", seconds=60)
    assert any("03_dashfusion" in href for href in found)


def test_dark_mode_keeps_figures_on_a_light_background(browser):
    drv, base = browser
    drv.get(f"{base}/chapters/04_lnln.html")
    _wait(drv, "return document.readyState === 'complete'")
    drv.execute_script("document.documentElement.dataset.theme = 'dark'; document.documentElement.dataset.mode = 'dark';")
    assert drv.execute_script("return getComputedStyle(document.body).backgroundColor") != "rgb(255, 255, 255)"
    # figures are PNGs drawn on white: they stay legible on the dark page
    img = drv.execute_script("""
        const im = document.querySelector('.cell_output img'); const c = document.createElement('canvas');
        c.width = im.naturalWidth; c.height = im.naturalHeight; const g = c.getContext('2d');
        g.drawImage(im, 0, 0); return [...g.getImageData(2, 2, 1, 1).data];""")
    assert img[:3] == [255, 255, 255] and img[3] == 255
    shots = ROOT / "_build" / "screenshots"
    shots.mkdir(parents=True, exist_ok=True)
    drv.save_screenshot(str(shots / "dark_04_lnln.png"))


def page_title(f: str) -> str:
    md = ROOT / f"{f}.md"
    text = md.read_text() if md.exists() else "".join(json.loads((ROOT / f"{f}.ipynb").read_text())["cells"][0]["source"])
    return re.search(r"^# (.+)$", text, re.M).group(1).strip()


def test_pdf_has_every_chapter(tmp_path):
    """`make pdf`: the single-page HTML printed by headless Chromium holds every page of the book."""
    import pypdf
    import yaml

    from msa_lib.publish import build_pdf
    pdf = build_pdf(tmp_path / "book.pdf", budget_ms=20_000)
    text = " ".join(" ".join(page.extract_text() for page in pypdf.PdfReader(pdf).pages).split())
    toc = yaml.safe_load((ROOT / "_toc.yml").read_text())
    titles = [page_title(c["file"]) for part in toc["parts"] for c in part["chapters"]]
    assert len(titles) >= 8
    assert [t for t in titles if " ".join(t.split()) not in text] == []
