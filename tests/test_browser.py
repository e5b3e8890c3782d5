"""The built site in a real Chromium (Debian's, driven by Playwright; never downloaded).

The site is the published one (the committed results/ and the repository's report.yaml), served
from 127.0.0.1, and every request to any other
host is aborted and counted: the site must work with no network. Every page is opened by
clicking through the navigation (material's instant navigation, so the loader's document$
path runs); each plotly figure must draw its SVG and each circuitsvis figure its children,
with no console error, page error or blocked request. The dark palette must recolour the
figures. Screenshots go to $CAPCIRCUIT_SCREENSHOTS (default: <tmp>/capcircuit-screenshots).
"""

from __future__ import annotations

import functools
import http.server
import os
import shutil
import tempfile
import threading
from pathlib import Path

import pytest
from conftest import build_report

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = Path(os.environ.get("CAPCIRCUIT_SCREENSHOTS", Path(tempfile.gettempdir()) / "capcircuit-screenshots"))
# report.js's palettes (font colour of plotly figures)
LIGHT_FONT, DARK_FONT = "#1f2329", "#e2e4e9"
LOADER_PAGE = "appendix-prompts.md"  # where the loader checks below are added

FIGURES_DRAWN = """() => {
  const plotly = [...document.querySelectorAll('.report-plotly')];
  const cv = [...document.querySelectorAll('.report-circuitsvis')];
  // drawn, with plotly's CSS in force (its SVG layers stacked, not one under the other), and
  // taking up room on the page (a figure of zero height overlaps the text below it)
  return plotly.every(el => el.querySelector('.main-svg')
                        && [...el.querySelectorAll('.main-svg')].every(s => getComputedStyle(s).position === 'absolute')
                        && (el.offsetParent === null || el.getBoundingClientRect().height > 100))
      && cv.every(el => el.querySelectorAll('*').length > 3
                        && (el.offsetParent === null || el.getBoundingClientRect().height > 0));
}"""
FIGURE_STATE = """() => ({
  plotly: [...document.querySelectorAll('.report-plotly')].map(el => ({
    id: el.id, svg: !!el.querySelector('.main-svg'), height: el.getBoundingClientRect().height,
    styled: [...el.querySelectorAll('.main-svg')].map(s => getComputedStyle(s).position),
    font: el._fullLayout ? el._fullLayout.font.color : null,
    scheme: el.getAttribute('data-scheme')})),
  circuitsvis: [...document.querySelectorAll('.report-circuitsvis')].map(el => ({
    id: el.id, descendants: el.querySelectorAll('*').length, shown: el.offsetParent !== null,
    height: el.getBoundingClientRect().height})),
})"""


def loader_checks(docs: Path) -> None:
    """Figures the real pages may not have yet: two plotly figures in content tabs (the
    second drawn while hidden, so it must resize when shown) and a circuitsvis
    AttentionHeads figure, written through the same fence as every report figure."""
    from generator.figures.plot import circuitsvis_spec
    from generator.site.fence import figure_html

    def bar(title):
        return {
            "kind": "plotly",
            "figure": {
                "data": [{"type": "bar", "x": ["a_b", "c*d"], "y": [1, -2]}],
                "layout": {"title": {"text": title}, "height": 300},
            },
        }

    tokens = ["<|endoftext|>", "John", " is", " great", "."]
    attention = [
        [[1.0 / (j + 1) if i <= j else 0.0 for i in range(len(tokens))] for j in range(len(tokens))] for _ in range(2)
    ]
    tab = lambda spec, fid, caption: "    " + figure_html(spec, fid, caption).replace("\n", "\n    ")  # noqa: E731
    text = (
        "\n\n## Loader checks\n\nTest-only figures: *tabs* and a circuitsvis view.\n\n"
        '=== "First"\n\n' + tab(bar("first tab"), "fig-check-first", "A figure in the first tab.") + "\n"
        '=== "Second"\n\n'
        + tab(bar("second tab"), "fig-check-second", "Drawn while hidden.")
        + "\n"
        + figure_html(
            circuitsvis_spec("AttentionHeads", {"attention": attention, "tokens": tokens}),
            "fig-check-attention",
            "Uniform causal attention, two heads.",
        )
    )
    page = docs / LOADER_PAGE
    page.write_text(page.read_text() + text)


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def site_url(tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser-site")
    (folder / "site").mkdir()
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(QuietHandler, directory=str(folder / "site"))
    )
    url = f"http://127.0.0.1:{server.server_address[1]}/"
    # built for the URL it is served at: material's instant navigation needs site_url
    build_report(folder, after_render=loader_checks, site_url=url)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} not found: .ci/run installs Debian's chromium")
        pytest.skip("Debian's chromium is not installed (apt-get install chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


class Watched:
    """A page whose console errors, page errors and off-host requests are recorded; requests
    to any host but the site's are aborted."""

    def __init__(self, browser, base: str):
        self.context = browser.new_context(viewport={"width": 1280, "height": 900})
        self.page = self.context.new_page()
        self.base = base
        self.errors: list[str] = []
        self.blocked: list[str] = []
        self.page.on("console", lambda m: m.type == "error" and self.errors.append(f"console: {m.text} ({m.location})"))
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.route("**/*", self._route)

    def _route(self, route):
        url = route.request.url
        if url.startswith(self.base):
            route.continue_()
        else:
            self.blocked.append(url)
            route.abort()

    def figures_drawn(self, where: str) -> dict:
        try:
            self.page.wait_for_function(FIGURES_DRAWN, timeout=20_000)
        except Exception:
            pytest.fail(f"{where}: figures not drawn: {self.page.evaluate(FIGURE_STATE)}; errors: {self.errors}")
        return self.page.evaluate(FIGURE_STATE)

    def nav_links(self) -> list[str]:
        """The pages in the primary navigation (absolute URLs, in order; no anchors)."""
        hrefs = self.page.eval_on_selector_all(
            "nav.md-nav--primary a.md-nav__link[href]", "els => els.map(a => a.href)"
        )
        return list(dict.fromkeys(h for h in hrefs if "#" not in h))

    def click_nav(self, url: str) -> None:
        """Follow the navigation link to `url` and wait for the new page's content."""
        self.page.evaluate("() => document.querySelector('article').setAttribute('data-old', '1')")
        links = self.page.locator("nav.md-nav--primary a.md-nav__link[href]")
        for i in range(links.count()):
            link = links.nth(i)
            if link.evaluate("a => a.href") == url and link.is_visible():
                link.click()
                break
        else:
            pytest.fail(f"no visible navigation link to {url} on {self.page.url}")
        self.page.wait_for_function(
            "url => location.href === url && !document.querySelector('article[data-old]')", arg=url, timeout=20_000
        )

    def toggle_palette(self) -> None:
        self.page.click("form[data-md-component=palette] label:not([hidden])")

    def close(self):
        self.context.close()


@pytest.fixture
def watched(browser, site_url):
    w = Watched(browser, site_url)
    yield w
    w.close()


def test_every_page_draws_its_figures_offline_and_is_laid_out_at_desktop_width(watched, site_url):
    """Every page, reached by instant navigation at 1280 px: its figures draw, with no error and
    no request off the site, and it passes the layout checks below (at the phone's width in the
    next test). One walk for both: drawing every page's figures is what costs the time."""
    page = watched.page
    page.goto(site_url)
    page.evaluate("() => { window.__firstLoad = true; }")  # survives instant navigation only
    watched.figures_drawn("overview")
    pages = watched.nav_links()
    assert len(pages) >= 4, f"navigation lists too few pages: {pages}"
    counts = {"plotly": 0, "circuitsvis": 0}
    problems = []
    for url in pages:
        if url != page.url:
            watched.click_nav(url)
        state = watched.figures_drawn(url)
        counts["plotly"] += len(state["plotly"])
        counts["circuitsvis"] += len(state["circuitsvis"])
        problems += layout_problems(page, "desktop", url.removeprefix(site_url))
        if url.endswith(LOADER_PAGE[:-3] + "/"):
            check_tab_resize(page)
    assert page.evaluate("() => window.__firstLoad === true"), "pages were reloaded, not instantly navigated"
    assert page.viewport_size["width"] == WIDTHS["desktop"]
    assert counts["plotly"] >= 3 and counts["circuitsvis"] >= 1, counts
    assert not watched.errors, watched.errors
    assert not watched.blocked, f"requests to other hosts: {watched.blocked}"
    assert not problems, "\n".join(problems)


def check_tab_resize(page) -> None:
    """The second tab's figure was drawn hidden; shown, it must fill its column."""
    page.click(".tabbed-labels label:has-text('Second')")
    page.wait_for_function(
        """() => { const el = document.getElementById('fig-check-second');
                   return el.clientWidth > 0 && Math.abs(el._fullLayout.width - el.clientWidth) <= 2; }""",
        timeout=10_000,
    )


def test_figures_follow_the_dark_palette(watched, site_url):
    page = watched.page
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.goto(site_url + "baseline/")  # a first load (no instant navigation)
    state = watched.figures_drawn("baseline")
    assert state["plotly"], "the baseline page has no plotly figure"
    assert {f["font"] for f in state["plotly"]} == {LIGHT_FONT}
    page.mouse.move(0, 0)
    page.screenshot(path=str(SCREENSHOTS / "baseline-light.png"), full_page=True)

    watched.toggle_palette()
    page.wait_for_function(
        "c => [...document.querySelectorAll('.report-plotly')].every(el => el._fullLayout.font.color === c)",
        arg=DARK_FONT,
        timeout=10_000,
    )
    assert page.evaluate("() => document.body.getAttribute('data-md-color-scheme')") == "slate"
    fill = page.evaluate("() => getComputedStyle(document.querySelector('.report-plotly .main-svg text')).fill")
    assert fill == "rgb(226, 228, 233)", fill  # DARK_FONT on the SVG itself
    page.screenshot(path=str(SCREENSHOTS / "baseline-dark.png"), full_page=True)

    # the palette sticks across navigation: figures on the next page draw dark at once
    watched.click_nav(site_url + LOADER_PAGE[:-3] + "/")
    state = watched.figures_drawn("appendix, dark")
    assert {f["font"] for f in state["plotly"]} == {DARK_FONT}, state
    page.mouse.move(0, 0)  # no hover toolbar in the picture
    page.screenshot(path=str(SCREENSHOTS / "appendix-dark.png"), full_page=True)

    watched.toggle_palette()
    page.wait_for_function(
        "c => [...document.querySelectorAll('.report-plotly')].every(el => el._fullLayout.font.color === c)",
        arg=LIGHT_FONT,
        timeout=10_000,
    )
    assert not watched.errors, watched.errors
    assert not watched.blocked, f"requests to other hosts: {watched.blocked}"


def test_circuit_graph_slider_changes_the_edges_shown(watched, site_url):
    """The circuit graph is interactive: each slider step shows the top n edges of that size."""
    page = watched.page
    page.goto(site_url + "circuit/")
    watched.figures_drawn("circuit")
    counts = page.evaluate("""async () => {
      const el = [...document.querySelectorAll('.report-plotly')].find(e => e._fullLayout.sliders.length);
      const shown = () => el._fullData.filter(t => t.visible === true && t.mode === 'lines+markers').length;
      const out = [];
      for (const step of el.layout.sliders[0].steps) {
        await Plotly.restyle(el, step.args[0]);
        out.push([parseInt(step.label), shown()]);
      }
      return out;
    }""")
    assert len(counts) >= 2 and counts == [[n, n] for n, _ in counts], counts
    assert not watched.errors, watched.errors


# ---- layout a reader can trust: at a desktop and a phone width ---------------------------

WIDTHS = {"desktop": 1280, "phone": 390}
# plotly's text: figure and subplot titles, axis titles, annotations, anything in the info layer
FIGURE_TEXT = ".gtitle, .xtitle, .ytitle, .annotation-text, g.infolayer text"
LAYOUT_PROBLEMS = """(selector) => {
  const problems = [];
  const box = el => el.getBoundingClientRect();
  const span = (a, b) => `${a.toFixed(0)}–${b.toFixed(0)}`;
  const article = document.querySelector('article.md-content__inner');
  const column = box(article);
  // every table's header cells sit over their columns
  document.querySelectorAll('article table').forEach((table, t) => {
    const head = table.querySelector('thead tr');
    if (!head) return;
    const ths = [...head.children].filter(th => getComputedStyle(th).display !== 'none');
    const all = [...head.children];
    table.querySelectorAll('tbody tr').forEach((row, r) => {
      const tds = [...row.children];
      if (tds.length !== all.length)
        problems.push(`table ${t} row ${r}: ${tds.length} cells under ${all.length} headers`);
      ths.forEach(th => {
        const i = all.indexOf(th), td = tds[i];
        if (!td) return;
        const a = box(th), b = box(td);
        if (Math.abs(a.left - b.left) > 1 || Math.abs(a.right - b.right) > 1)
          problems.push(`table ${t}: header "${th.textContent.trim()}" spans x ${span(a.left, a.right)} ` +
                        `but its column's cell in row ${r} spans ${span(b.left, b.right)}`);
      });
      if (ths.length !== all.length && r === 0)
        problems.push(`table ${t}: ${all.length - ths.length} header cells hidden`);
    });
  });
  document.querySelectorAll('.report-plotly').forEach(fig => {
    if (fig.offsetParent === null) return;  // in a hidden tab
    // no figure is wider than its column
    const f = box(fig);
    [fig, ...fig.querySelectorAll('.main-svg')].forEach(el => {
      const b = box(el);
      if (b.left < column.left - 1 || b.right > column.right + 1)
        problems.push(`figure ${fig.id}: x ${span(b.left, b.right)} outside its column ` +
                      span(column.left, column.right));
    });
    // no two text elements overlap
    const texts = [...new Set(fig.querySelectorAll(selector))]
      .filter(el => el.textContent.trim())
      .map(el => ({text: el.textContent.trim(), b: box(el)}))
      .filter(t => t.b.width > 0 && t.b.height > 0);
    texts.forEach(t => {  // and none runs off its figure
      if (t.b.left < f.left - 1 || t.b.right > f.right + 1 || t.b.top < f.top - 1 || t.b.bottom > f.bottom + 1)
        problems.push(`figure ${fig.id}: "${t.text}" runs off the figure (x ${span(t.b.left, t.b.right)}, ` +
                      `y ${span(t.b.top, t.b.bottom)}; figure x ${span(f.left, f.right)}, y ${span(f.top, f.bottom)})`);
    });
    for (let i = 0; i < texts.length; i++) {
      for (let j = i + 1; j < texts.length; j++) {
        const a = texts[i].b, b = texts[j].b;
        const dx = Math.min(a.right, b.right) - Math.max(a.left, b.left);
        const dy = Math.min(a.bottom, b.bottom) - Math.max(a.top, b.top);
        // more than a glyph box's padding (a colorbar's top tick touching its title: 3 px)
        if (dx > 4 && dy > 4)
          problems.push(`figure ${fig.id}: "${texts[i].text}" overlaps "${texts[j].text}" ` +
                        `(${dx.toFixed(0)} × ${dy.toFixed(0)} px)`);
      }
    }
  });
  return problems;
}"""
FIGURES_SIZED = """() => [...document.querySelectorAll('.report-plotly')].every(el =>
  el.offsetParent === null || (el._fullLayout && Math.abs(el._fullLayout.width - el.clientWidth) <= 2))"""


def layout_problems(page, width: str, path: str) -> list[str]:
    """LAYOUT_PROBLEMS on the page as it is, once its figures have their column's width."""
    page.wait_for_function(FIGURES_SIZED, timeout=10_000)
    return [f"{width} {path or '/'}: {p}" for p in page.evaluate(LAYOUT_PROBLEMS, FIGURE_TEXT)]


def test_every_page_is_laid_out_at_phone_width(watched, site_url):
    """At 390 px, every page loaded afresh (what a phone reader gets): each table header sits
    over its column, no two texts of a figure overlap, no figure is wider than the content
    column. (At 1280 px: in the walk of the first test.)"""
    page = watched.page
    page.goto(site_url)
    pages = watched.nav_links()
    page.set_viewport_size({"width": WIDTHS["phone"], "height": 900})
    problems = []
    for url in pages:
        page.goto(url)
        watched.figures_drawn(url)
        problems += layout_problems(page, "phone", url.removeprefix(site_url))
    assert len(pages) >= 4, f"navigation lists too few pages: {pages}"
    assert not problems, "\n".join(problems)
    assert not watched.errors, watched.errors


FIGURE_BOXES = """() => [...document.querySelectorAll('.report-plotly')].filter(el => el.offsetParent !== null)
  .map(el => ({id: el.id, height: Math.round(el.getBoundingClientRect().height),
               legend: el._fullLayout.showlegend ? el._fullLayout.legend.orientation : null}))"""
BOXES_ARE = f"""(expected) => JSON.stringify(({FIGURE_BOXES})()) === JSON.stringify(expected)"""


def test_narrowing_then_widening_the_window_gives_a_fresh_loads_figures(watched, site_url):
    """A reader who narrows the window to phone width and widens it again sees every figure as
    a fresh load draws it: the same height (none collapsed to its empty box, as plotly's
    autosizing once did ~200 ms after widening), its legend back beside the plot, no text
    overlapping."""
    page = watched.page
    page.goto(site_url)
    url = next(u for u in watched.nav_links() if "sentence-end" in u)
    page.goto(url)
    watched.figures_drawn(url)
    page.wait_for_function(FIGURES_SIZED, timeout=10_000)
    fresh = page.evaluate(FIGURE_BOXES)
    assert any(f["legend"] == "v" for f in fresh), fresh  # a legend that goes under the plot on a phone
    page.set_viewport_size({"width": WIDTHS["phone"], "height": 900})
    moved = """() => [...document.querySelectorAll('.report-plotly')]
      .some(el => el._fullLayout?.legend?.orientation === 'h')"""  # under the plot
    page.wait_for_function(moved, timeout=10_000)
    page.set_viewport_size({"width": WIDTHS["desktop"], "height": 900})
    try:
        page.wait_for_function(BOXES_ARE, arg=fresh, timeout=10_000)
        page.wait_for_timeout(1_000)  # and it stays so
        assert page.evaluate(FIGURE_BOXES) == fresh
    except Exception:
        pytest.fail(f"after phone width and back: {page.evaluate(FIGURE_BOXES)}; fresh load: {fresh}")
    assert not layout_problems(page, "desktop, after phone width", url.removeprefix(site_url))
    assert not watched.errors, watched.errors
