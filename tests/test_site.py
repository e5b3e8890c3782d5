"""The published site without a browser: the committed results/ rendered with the repository's
own report.yaml and built with `mkdocs build --strict` — every page, including path patching and
the circuit. Offline assets, figures and captions, deterministic output, statements that follow
the stored numbers, `capcircuit site` without torch, plain `mkdocs build` in a fresh clone, the
Pages workflow."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, repo_config
from markupsafe import escape

from generator.render import as_text, pages
from generator.render.text import interval_digits

FIGURE = re.compile(
    r'<figure class="report-figure">\n<div class="report-(plotly|circuitsvis)" id="([^"]+)" '
    r"data-figure='([^']*)'></div>\n<figcaption>([^<]*)</figcaption>\n</figure>"
)


@pytest.fixture(scope="module")
def built(published_site):
    return published_site


@pytest.fixture(scope="module")
def results(built):
    from generator.render import load_results

    return load_results(built)


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


def test_every_configured_page_is_built_and_in_the_navigation(built):
    site = built.path("site")
    index = (site / "index.html").read_text()
    for spec in pages(built):
        page = spec.page.file
        html = site / ("index.html" if page == "index.md" else page[:-3] + "/index.html")
        assert html.exists(), page
        assert spec.page.title in index, f"{spec.page.title} is not in the navigation"
    assert set(repo_config()["experiments"]) >= {"path_patching", "circuit"}
    assert (site / "circuit" / "index.html").exists() and (site / "path-patching" / "index.html").exists()


def test_vendor_bundles_are_copied_once_and_nothing_is_fetched(built):
    from generator.site.assets import vendor_files

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
            unescaped = data.replace("&#x27;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
            assert json.loads(unescaped)["kind"] == kind
        total += len(figures)
    assert total >= 20
    baseline = (built.path("site") / "baseline" / "index.html").read_text()
    assert 'id="fig-baseline-' in baseline  # ids name their page: stable when other pages change


def test_figure_fence_rejects_broken_figures():
    from pymdownx.superfences import SuperFencesException

    from generator.site.fence import figure_fence, figure_html

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


def test_pages_state_the_stored_numbers(built, results):
    """Numbers and names in the prose come from the results; statements follow the data."""
    docs = built.path("docs")
    page = {p.stem: p.read_text() for p in docs.glob("*.md")}
    primary = built.models[0]
    # the stored data as plain JSON, independent of how the templates reach it
    r = {e: rec["metrics"].model_dump(mode="json", exclude_unset=True) for e, rec in results[primary].items()}
    b, a, e = r["baseline"], r["attribution"], r["exceptions"]
    assert f"**{b['mean_logit_diff']:.4f}**" in page["baseline"]
    assert f"{b['mean_logit_diff']:.2f}" in page["index"] and f"{b['mean_logit_diff_corrupted']:.2f}" in page["index"]
    assert f"**{a['total']:.2f}**" in page["attribution"]
    for head in a["top_positive"] + a["top_negative"]:
        assert f"| L{head['layer']}H{head['head']} | {head['attribution']:.3f} |" in page["attribution"]
    assert ("does **not** prefer the capital" in page["attribution"]) == (a["total"] <= 0)
    for f in e["families"]:
        assert f"| {f['family'].replace('_', chr(92) + '_')} | {f['expected']} |" in page["exceptions"]
    at = r["attention"]
    for g in at["groups"]:
        for focus in g.get("focus", []):
            position = escape(as_text(at["mean_positions"][focus["position"]]))  # as a page prints it
            # "mostly" only above the threshold (more than half of its attention)
            assert focus["mostly"] == (focus["weight"] > at["mostly"] >= 0.5)
            verb = "mostly" if focus["weight"] > at["mostly"] else "most strongly"
            assert (
                f"**L{focus['layer']}H{focus['head']}** attends from the final position {verb} to **{position}**"
                in page["attention"]
            )
    c = r["circuit"]
    eap_ig = c["methods"]["eap_ig"]["cpr"]
    assert (
        f"| EAP-IG ({c['ig_steps']} steps) | {eap_ig['area']:.{interval_digits(eap_ig['area'], *eap_ig['area_ci'])}f}"
        in page["circuit"]
    )
    smallest = c["circuit"]["smallest_faithful"]
    assert (
        (f"**{smallest['edges']} edges**" in page["circuit"])
        if smallest
        else ("No circuit by EAP-IG" in page["circuit"])
    )
    # a result the corruption forces is not presented as a finding
    assert ("This design forces what follows" in page["patching"]) == r["patching"]["resid_flow"]["changed_is_final"]
    assert "as the\nnotebook found" not in page["patching"] and "what it planned" not in page["index"]
    pp = r["path_patching"]
    assert ("No path carries as much as" in page["path-patching"]) == pp["all_negligible"]
    for s in pp["senders"]:  # each sender's route is named, with its share
        name = f"L{s['sender']['layer']}H{s['sender']['head']}"
        if s["route"]:
            assert f"**{name}'s effect ({s['sender_effect']:.3g}) runs " in page["path-patching"]
        else:
            assert f"**No single direct path from {name} carries" in page["path-patching"]
    h = c["held_out"]
    if h:  # the held-out prose says what the paired intervals say
        d = h["difference"]
        both = d["by_name"]["excludes_zero"] and d["by_template"]["excludes_zero"]
        neither = not d["by_name"]["excludes_zero"] and not d["by_template"]["excludes_zero"]
        assert ("Both intervals exclude 0" in page["circuit"]) == both
        exact = d["estimate"] == 0 and d["by_name"]["low"] == d["by_name"]["high"] == 0
        assert ("Both intervals include 0" in page["circuit"]) == (neither and not exact)
        assert "outside the interval" not in page["circuit"]
    assert f"{r['patching']['clean_logit_diff']:.2f}" in page["patching"]
    one_layer = [m for m in built.models if results[m]["baseline"]["metrics"].model_shape.n_layers == 1]
    for m in one_layer:
        mb = results[m]["baseline"]["metrics"].model_dump(mode="json")
        verb = "can" if mb["performs_task"] else "cannot"
        assert f"**a one-layer attention-only model\n{verb} perform this task: {m}" in page["models"]
        assert f"difference of {mb['mean_logit_diff']:.2f}**" in page["models"]


def test_overview_reproducibility_and_appendix_come_from_the_results(built, results):
    from generator.render import environment

    seconds = environment(built).filters["seconds"]
    docs = built.path("docs")
    repro = (docs / "reproducibility.md").read_text()
    for model, records in results.items():
        for experiment, record in records.items():
            assert record["key"] in repro, experiment
            assert record["key_parts"]["model"]["weights"] in repro
            assert seconds(record["timing"]["wall_s"]) in repro, (model, experiment)
    assert built.digest() in repro and "torch" in repro
    appendix = (docs / "appendix-prompts.md").read_text()
    for model in built.models:
        assert all(row.prompt in appendix for row in results[model]["baseline"]["metrics"].per_prompt)


def test_circuit_graph_download_is_linked_and_holds_the_stored_graph(built, results):
    from generator.render import download_path

    primary = built.models[0]
    path = download_path(primary, "circuit")
    assert f"]({path})" in (built.path("docs") / "circuit.md").read_text()
    data = json.loads((built.path("site") / path).read_text())
    stored = results[primary]["circuit"]["metrics"]
    assert data["edges"] == stored.download.edges and data["columns"] == stored.download.columns
    assert data["model_clean_logit_diff"] == stored.clean_logit_diff
    assert data["methods"]["eap_ig"]["cpr"]["area"] == stored.methods["eap_ig"].cpr.area
    assert data["columns"][:2] == ["writer", "reader"] and data["edges"]
    # the exports (tests/test_exports.py checks their formats) are linked and published beside it
    from generator import exports

    made = {"mib": exports.mib_circuit(stored), "neuronpedia": exports.neuronpedia_graph(stored, primary)}
    for kind, expected in made.items():
        path = download_path(primary, "circuit", kind)
        assert f"]({path})" in (built.path("docs") / "circuit.md").read_text()
        assert json.loads((built.path("site") / path).read_text()) == json.loads(json.dumps(expected)), kind


@pytest.fixture(scope="module")
def clone_builds(tmp_path_factory) -> dict:
    """A fresh clone (it has only what is committed) built twice, in two processes: by plain
    `mkdocs build --strict` (the hook renders docs/ from results/) into plain/, and by `capcircuit
    site` into the clone's site/, checking that the latter never imported torch."""
    tmp = tmp_path_factory.mktemp("clone")
    clone = tmp / "clone"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
    mkdocs = Path(sys.executable).parent / "mkdocs"
    plain = subprocess.run(
        [str(mkdocs), "build", "--strict", "-d", str(tmp / "plain")], cwd=clone, capture_output=True, text=True
    )
    code = (
        "import sys; from generator.cli import main\n"
        "try: main(['site'])\n"
        "except SystemExit as e: assert e.code in (0, None), e.code\n"
        "assert 'torch' not in sys.modules, 'capcircuit site imported torch'\n"
    )
    cli = subprocess.run([sys.executable, "-c", code], cwd=clone, capture_output=True, text=True)
    return {"plain": plain, "cli": cli, "plain_site": tmp / "plain", "cli_site": clone / "site"}


def test_site_command_builds_from_stored_results_without_torch(clone_builds):
    assert clone_builds["cli"].returncode == 0, clone_builds["cli"].stderr[-2000:]
    assert (clone_builds["cli_site"] / "circuit" / "index.html").exists()


def test_plain_mkdocs_build_in_a_fresh_clone_equals_capcircuit_site(clone_builds):
    """`mkdocs build --strict` works in a fresh clone and builds the same site as `capcircuit
    site`: two renders of the same results, in two processes (each with its own hash seed), give
    the same files, byte for byte (the sitemap's build dates aside)."""
    assert clone_builds["plain"].returncode == 0, clone_builds["plain"].stderr[-2000:]
    assert clone_builds["cli"].returncode == 0, clone_builds["cli"].stderr[-2000:]
    plain, site = site_files(clone_builds["plain_site"]), site_files(clone_builds["cli_site"])
    assert sorted(plain) == sorted(site)
    differ = [name for name in plain if plain[name] != site[name]]
    assert not differ, f"files that differ between two renders: {differ}"


def test_pages_workflow_publishes_committed_results():
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())
    steps = [s for job in workflow["jobs"].values() for s in job["steps"]]
    uses = [s.get("uses", "").split("@")[0] for s in steps]
    assert "actions/upload-pages-artifact" in uses and "actions/deploy-pages" in uses
    commands = [line.strip() for s in steps for line in s.get("run", "").splitlines()]
    assert "capcircuit site" in commands
    assert not [c for c in commands if c.startswith(("capcircuit build", "capcircuit run"))]
    assert workflow["permissions"] == {"contents": "read", "pages": "write", "id-token": "write"}


def test_mkdocs_config_is_strict_offline_and_rendered_by_the_hook():
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
    assert list(config["hooks"]) == ["generator/mkdocs_hooks.py"] and not config["nav"]
