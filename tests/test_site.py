"""The built site without a browser: offline assets, figures and captions, deterministic
output, the reproducibility page, `capcircuit site`, the Pages workflow.

Sites are built from a results store for `site_model` (conftest: the organism once trained,
else a tiny random GPT-2)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, build_report, write_config

FIGURE = re.compile(
    r'<figure class="report-figure">\n<div class="report-(plotly|circuitsvis)" id="([^"]+)" '
    r"data-figure='([^']*)'></div>\n<figcaption>([^<]*)</figcaption>\n</figure>"
)


@pytest.fixture(scope="module")
def built(tmp_path_factory, report_results, site_model):
    return build_report(tmp_path_factory.mktemp("site"), report_results, site_model)


def site_files(site: Path) -> dict[str, bytes]:
    """Every file of a built site; the sitemap without its build dates."""
    out = {}
    for path in sorted(p for p in site.rglob("*") if p.is_file()):
        name = str(path.relative_to(site))
        if name == "sitemap.xml.gz":
            continue  # the gzip of sitemap.xml, with its dates and a timestamp
        data = path.read_bytes()
        if name == "sitemap.xml":
            data = re.sub(rb"<lastmod>[^<]*</lastmod>", b"", data)
        out[name] = data
    return out


def html_pages(site: Path) -> dict[str, str]:
    return {str(p.relative_to(site)): p.read_text() for p in sorted(site.rglob("*.html"))}


def test_two_renders_of_the_same_results_give_the_same_site(built, tmp_path, report_results, site_model):
    again = build_report(tmp_path, report_results, site_model)
    first, second = site_files(built.path("site")), site_files(again.path("site"))
    assert sorted(first) == sorted(second)
    differ = [name for name in first if first[name] != second[name]]
    assert not differ, f"files that differ between two renders: {differ}"
    docs = lambda c: {p.name: p.read_text() for p in c.path("docs").glob("*.md")}  # noqa: E731
    assert docs(built) == docs(again)


def test_vendor_bundles_are_copied_once_and_nothing_is_fetched(built):
    from generator.site import vendor_files

    site = built.path("site")
    for name, source in vendor_files().items():
        assert (site / "assets" / "vendor" / name).read_bytes() == source.read_bytes()
    external = re.compile(r'<(?:script|link|img|iframe)\b[^>]*(?:src|href)="(?:https?:)?//', re.I)
    for page, text in html_pages(site).items():
        assert not external.search(text), f"{page} loads something from another host"
        for cdn in ("fonts.googleapis", "fonts.gstatic", "cdn.plot.ly", "unpkg.com", "jsdelivr", "cdnjs"):
            assert cdn not in text, f"{page} mentions {cdn}"
        if page != "404.html":
            assert text.count("assets/vendor/plotly.min.js") == 1, page
            assert text.count("assets/vendor/circuitsvis.js") == 1, page
        assert "plotly.js v" not in text and "Plotly.newPlot" not in text, f"{page} inlines plotly"


def test_every_figure_has_a_caption_unique_id_and_json(built):
    total = 0
    for page, text in html_pages(built.path("site")).items():
        elements = re.findall(r'class="report-(?:plotly|circuitsvis)"', text)
        figures = FIGURE.findall(text)
        assert len(figures) == len(elements), f"{page}: a figure element outside the figure markup"
        ids = [fid for _, fid, _, _ in figures]
        assert len(ids) == len(set(ids)), f"{page}: duplicate figure ids {ids}"
        for kind, fid, data, caption in figures:
            assert caption.strip(), f"{page}: figure {fid} has no caption"
            spec = json.loads(
                data.replace("&#x27;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
            )
            assert spec["kind"] == kind
        total += len(figures)
    assert total >= 1
    baseline = (built.path("site") / "baseline" / "index.html").read_text()
    assert 'id="fig-baseline-' in baseline  # ids name their page: stable when other pages change


def test_figure_fence_rejects_broken_figures():
    from pymdownx.superfences import SuperFencesException

    from generator.render import figure_html
    from generator.site import figure_fence

    spec = {"kind": "plotly", "figure": {"data": [], "layout": {}}}
    good = figure_html(spec, "fig-x", "A caption with 'quotes' & <tags>.").split("\n")[1]
    html = figure_fence(good, "report-figure", "report-figure", {}, None)
    assert "data-figure='" in html and "&#x27;quotes&#x27; &amp; &lt;tags&gt;" in html
    for source in (
        "not json",
        json.dumps({"id": "fig-x", "caption": "", "spec": spec}),
        json.dumps({"id": "fig-x", "caption": "c", "spec": {"kind": "matplotlib"}}),
        json.dumps({"id": "bad id", "caption": "c", "spec": spec}),
    ):
        with pytest.raises(SuperFencesException):
            figure_fence(source, "report-figure", "report-figure", {}, None)


def test_overview_and_reproducibility_come_from_the_results(built, site_model):
    from generator.render import load_results

    results = load_results(built)[site_model]
    docs = built.path("docs")
    overview = (docs / "index.md").read_text()
    b = results["baseline"]["metrics"]
    assert f"{b['mean_logit_diff']:.2f}" in overview and f"{b['mean_logit_diff_corrupted']:.2f}" in overview
    repro = (docs / "reproducibility.md").read_text()
    for experiment, record in results.items():
        assert record["key"] in repro, experiment
        assert record["key_parts"]["model"]["weights"] in repro
        assert f"{record['timing']['wall_s']:.1f} s" in repro or "min" in repro
    assert built.digest() in repro and "torch" in repro
    appendix = (docs / "appendix-prompts.md").read_text()
    assert all(row["prompt"] in appendix for row in b["per_prompt"])


def test_site_command_builds_from_stored_results_without_torch(tmp_path, report_results, site_model):
    import shutil

    shutil.copytree(report_results, tmp_path / "results")
    config = write_config(tmp_path, models=[site_model], experiments={"baseline": {}})
    code = (
        "import sys; from generator.cli import main\n"
        "try: main(['site', '--config', sys.argv[1]])\n"
        "except SystemExit as e: assert e.code in (0, None), e.code\n"
        "assert 'torch' not in sys.modules, 'capcircuit site imported torch'\n"
    )
    done = subprocess.run([sys.executable, "-c", code, str(config)], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "site" / "index.html").exists()


def test_pages_workflow_publishes_committed_results():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert "actions/upload-pages-artifact" in uses and "actions/deploy-pages" in uses
    commands = [line.strip() for s in steps for line in s.get("run", "").splitlines()]
    assert "capcircuit site" in commands
    assert not [c for c in commands if c.startswith(("capcircuit build", "capcircuit run"))]
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}


def test_mkdocs_config_is_strict_offline_and_validates_links():
    # mkdocs.yml uses !ENV and !!python/name tags: read it the way mkdocs does
    from mkdocs.config import load_config

    config = load_config(str(ROOT / "mkdocs.yml"), docs_dir=str(ROOT / "templates"))
    assert config["strict"] and config["theme"]["font"] is False
    warn = 30  # logging.WARNING: with strict, a warning fails the build
    assert config["validation"]["nav"]["omitted_files"] == warn
    for key in ("absolute_links", "unrecognized_links", "anchors"):
        assert config["validation"]["links"][key] == warn, key
    assert "navigation.instant" in config["theme"]["features"]
    assert "material/search" in config["plugins"]
