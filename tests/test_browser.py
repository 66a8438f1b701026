"""The built report site in a real browser: nothing clipped, every image loads, results first,
each note once per section.

Builds the site from one smoke run of every method and loads the index and the run page in
headless Chromium (Debian's ``chromium``, driven by Playwright's Python package). Skipped, with
the reason, where either is missing; CI installs both (see .ci/run).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHROMIUM = os.environ.get("HARNESS_CHROMIUM") or shutil.which("chromium") or "/usr/bin/chromium"


def _missing(reason: str) -> None:
    """Skip where the browser is not installed; in CI (CI=true) that is a failure."""
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason}: .ci/run installs it", pytrace=False)
    pytest.skip(reason, allow_module_level=True)


try:
    from playwright import sync_api
except ImportError:
    _missing("playwright not installed (pip install -e '.[test]')")
if not Path(CHROMIUM).is_file():
    _missing(f"no Chromium at {CHROMIUM} (apt-get install chromium, or set HARNESS_CHROMIUM)")

pytestmark = pytest.mark.slow
VIEWPORTS = [(1280, 800), (1920, 1080)]

# Per table: does it fit its box, or does that box scroll (and keep its first column in view)?
# And does the box itself stay inside the article, so the page never scrolls sideways?
_TABLES_JS = """() => {
  const article = document.querySelector('article[role=main]') || document.body;
  const right = article.getBoundingClientRect().right;
  return Array.from(document.querySelectorAll('article table')).map((table, i) => {
    const box = table.closest('.table-wrapper') || table.parentElement;
    const style = getComputedStyle(box);
    const first = table.querySelector('tr > :first-child');
    return {i, fits: table.scrollWidth <= box.clientWidth + 1,
            scrolls: ['auto', 'scroll'].includes(style.overflowX),
            boxInside: box.getBoundingClientRect().right <= right + 1,
            sticky: first ? getComputedStyle(first).position === 'sticky' : true,
            head: (table.querySelector('tr') || table).innerText.slice(0, 60)};
  });
}"""


# Every note of the page (footnotes, bullet items) with the section it belongs to: the nearest
# enclosing section of heading level 2 or 3 (a level-4 table inside one shares its notes).
_NOTES_JS = """() => {
  const owner = el => {
    let s = el.closest('section');
    while (s && !s.querySelector(':scope > h2, :scope > h3, :scope > h1')) s = s.parentElement.closest('section');
    return s ? s.id : '';
  };
  const text = el => (el.matches('aside')
      ? Array.from(el.querySelectorAll(':scope > p')).map(p => p.innerText).join(' ') : el.innerText).trim();
  return Array.from(document.querySelectorAll('article aside.footnote, article li'))
    .filter(el => !el.closest('.toctree-wrapper, nav'))
    .map(el => ({section: owner(el), text: text(el), footnote: el.matches('aside')}));
}"""
# The text a reader scrolls through below the headline block, and how much of it is notes.
_BELOW_JS = """() => {
  const article = document.querySelector('article[role=main]');
  const all = article.innerText, head = document.querySelector('.headline').innerText;
  const notes = Array.from(article.querySelectorAll('aside.footnote, li'))
    .filter(el => !el.closest('.toctree-wrapper, nav')).reduce((n, el) => n + el.innerText.length, 0);
  return {below: all.length - (all.indexOf(head) + head.length), notes};
}"""


def _run(cmd: list[str], **kw) -> None:
    env = {**os.environ, "HARNESS_NO_PROGRESS": "1", "MPLBACKEND": "Agg"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, **kw)
    assert done.returncode == 0, f"{' '.join(cmd)}\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> tuple[Path, str]:
    """The HTML site built from one smoke run of every method, and that run's id."""
    tmp = tmp_path_factory.mktemp("site")
    runs = tmp / "runs"
    _run([sys.executable, "-m", "harness", "run", "--all", "--profile", "smoke", "--seed", "100", "--output",
          str(runs)], timeout=1200)  # a development seed (docs/protocol.md)
    (run_id,) = [p.name for p in runs.iterdir() if (p / "run.json").is_file()]
    docs = tmp / "docs"
    shutil.copytree(REPO / "docs", docs, ignore=shutil.ignore_patterns("_build", "reports"))
    _run([sys.executable, "-m", "reports", "--runs", str(runs), "--out", str(docs / "reports")], timeout=300)
    _run([sys.executable, "-m", "sphinx", "-W", "-q", "-b", "html", str(docs), str(tmp / "html")], timeout=300)
    return tmp / "html", run_id


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield chromium
        chromium.close()


def _open(browser, url: str, width: int, height: int):
    page = browser.new_page(viewport={"width": width, "height": height})
    page.goto(url)
    page.wait_for_load_state("load")
    return page


@pytest.mark.parametrize("width,height", VIEWPORTS)
@pytest.mark.parametrize("which", ["index", "run"])
def test_no_table_overflows_its_box(site, browser, which, width, height):
    html, run_id = site
    target = html / "reports" / ("index.html" if which == "index" else f"{run_id}.html")
    page = _open(browser, target.as_uri(), width, height)
    tables = page.evaluate(_TABLES_JS)
    assert tables, "no table on the page"
    for t in tables:
        assert t["boxInside"], f"table {t['i']} ({t['head']!r}) sticks out of the article"
        assert t["fits"] or (t["scrolls"] and t["sticky"]), \
            f"table {t['i']} ({t['head']!r}) is wider than its box, which neither scrolls nor keeps column 1"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"), "page scrolls sideways"
    page.close()


@pytest.mark.parametrize("which", ["index", "run"])
def test_every_image_loads(site, browser, which):
    html, run_id = site
    target = html / "reports" / ("index.html" if which == "index" else f"{run_id}.html")
    page = _open(browser, target.as_uri(), *VIEWPORTS[0])
    images = page.evaluate("() => Array.from(document.images).map(i => [i.getAttribute('src'), i.complete, "
                           "i.naturalWidth])")
    if which == "run":
        names = [Path(src).name for src, _, _ in images]
        assert {"forest.png", "roc.png", "pr.png"} <= set(names), names
        assert any(n.startswith("grid-") for n in names) and len(names) >= 8, names  # + EDA figures
    broken = [src for src, complete, width in images if not complete or width == 0]
    assert not broken, f"images that did not load: {broken}"
    page.close()


def test_headline_block_is_above_the_fold(site, browser):
    html, run_id = site
    page = _open(browser, (html / "reports" / f"{run_id}.html").as_uri(), *VIEWPORTS[0])
    assert page.locator(".headline").count() == 1, "no headline block"
    box = page.locator(".headline").bounding_box()
    assert box["y"] >= 0 and box["y"] + box["height"] <= VIEWPORTS[0][1], box
    rows = page.locator(".headline table tbody tr").count()
    assert rows >= 3  # every method of the smoke run
    page.close()


def test_each_note_appears_once_per_section_as_a_footnote(site, browser):
    """No section repeats a note, nor a clause of one ("...; n=24 real and 24 translated; ..."):
    a note shared by rows is one footnote, marked in the table."""
    from reports.footnotes import clauses

    html, run_id = site
    page = _open(browser, (html / "reports" / f"{run_id}.html").as_uri(), *VIEWPORTS[0])
    notes = page.evaluate(_NOTES_JS)
    seen: dict[tuple[str, str], int] = {}
    for note in notes:
        for clause in set(clauses(note["text"])):
            seen[(note["section"], clause)] = seen.get((note["section"], clause), 0) + 1
    repeated = {key: n for key, n in seen.items() if n > 1}
    assert not repeated, f"notes repeated within a section: {repeated}"
    assert any(n["footnote"] for n in notes), "no footnote on the run page"
    markers = page.evaluate("document.querySelectorAll('article table a.footnote-reference').length")
    assert markers > 0, "footnote markers did not survive in the tables"
    # footnotes stay under their table (myst_footnote_sort = False), not gathered at the page's end
    assert page.evaluate("!!document.querySelector('section#results aside.footnote')")
    measured = page.evaluate(_BELOW_JS)
    print(f"run page, 1280 px: {measured['below']} characters below the headline, {measured['notes']} of them notes")
    assert measured["notes"] < measured["below"] / 3, measured  # the page reads as results, not as a log
    page.close()
