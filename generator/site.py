"""The static site: copy the JS bundles from installed packages, turn figure fences into
elements, run mkdocs build.

plotly.js and circuitsvis are copied once into docs/assets/vendor/ (no CDN, nothing inlined
per figure), so the site works with no network. Each figure is a ```report-figure fence
(written by generator.render.figure_html) that `figure_fence`, a pymdownx.superfences custom
fence declared in mkdocs.yml, turns into an element plus its JSON; assets/report.js draws it.
The report uses no math typesetting (no engine to bundle): formulas are plain text."""

from __future__ import annotations

import html
import json
import re
import shutil
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path

from generator import ReportError
from generator.config import Config

SITE_ASSETS = Path(__file__).parent / "site_assets"
FIGURE_KINDS = ("plotly", "circuitsvis")


def figure_element(element_id: str, caption: str, spec: dict) -> str:
    """A figure's HTML: the element report.js draws into, holding its JSON, and its caption."""
    if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]*", element_id):
        raise ValueError(f"figure id {element_id!r}: use letters, digits, '-' and '_'")
    if spec.get("kind") not in FIGURE_KINDS:
        raise ValueError(f"figure {element_id}: kind {spec.get('kind')!r} is not one of {', '.join(FIGURE_KINDS)}")
    if not caption.strip():
        raise ValueError(f"figure {element_id} has no caption: every figure needs one")
    # The JSON sits in an attribute, not a <script type="application/json">: material's
    # instant navigation re-creates inline scripts without their type and would run it.
    data = json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)
    data = html.escape(data, quote=False).replace("'", "&#x27;")
    return (
        f'<figure class="report-figure">\n'
        f'<div class="report-{spec["kind"]}" id="{element_id}" data-figure=\'{data}\'></div>\n'
        f"<figcaption>{html.escape(caption)}</figcaption>\n</figure>"
    )


def figure_fence(source, language, css_class, options, md, **kwargs) -> str:
    """pymdownx.superfences formatter for ```report-figure fences (see mkdocs.yml). A broken
    fence stops the build (SuperFencesException) rather than showing as code."""
    from pymdownx.superfences import SuperFencesException

    try:
        fence = json.loads(source)
        return figure_element(fence["id"], fence["caption"], fence["spec"])
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        raise SuperFencesException(f"bad report-figure fence ({e}): {source[:120]}") from e


def package_dir(name: str) -> Path:
    """An installed package's folder, found without importing it (importing circuitsvis
    imports torch, which building the site must not need)."""
    spec = find_spec(name)
    if spec is None or not spec.origin:
        raise ReportError(f"package {name} is not installed: pip install {name}")
    return Path(spec.origin).parent


def vendor_files() -> dict[str, Path]:
    return {
        "plotly.min.js": package_dir("plotly") / "package_data" / "plotly.min.js",
        "circuitsvis.js": package_dir("circuitsvis") / "dist" / "cdn" / "iife.js",
    }


def copy_assets(docs: Path) -> None:
    """Copy vendor bundles (only when changed, so mkdocs serve does not loop) and our own JS/CSS."""
    targets = {docs / "assets" / "vendor" / n: src for n, src in vendor_files().items()}
    targets.update({docs / "assets" / f.name: f for f in SITE_ASSETS.iterdir() if f.is_file()})
    for dest, src in targets.items():
        if not src.exists():
            raise ReportError(f"{src} is missing: reinstall the package that provides it")
        if dest.exists() and dest.stat().st_size == src.stat().st_size and dest.read_bytes() == src.read_bytes():
            continue
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dest)


# ---- mkdocs hooks (mkdocs.yml: `hooks: [generator/mkdocs_hooks.py]`) ------------------------
# So that plain `mkdocs build` / `mkdocs serve` work: before each build the pages are rendered
# from results/ into docs/, the JS bundles are placed, and the navigation is derived from the
# experiment registry. `capcircuit site` and `serve` run the same hooks, with their own config.

_active: Config | None = None  # the report config of a build started by capcircuit
_render = True  # False: build docs/ as it is (a caller rendered and edited it)


def report_config(mkdocs_config) -> Config:
    """The report config for this mkdocs build: capcircuit's, or report.yaml beside mkdocs.yml,
    rendering into mkdocs' docs_dir."""
    from generator.config import DEFAULT_CONFIG, load_config

    config = _active or load_config(Path(mkdocs_config.config_file_path).parent / DEFAULT_CONFIG)
    return config.model_copy(update={"paths": config.paths.model_copy(update={"docs": mkdocs_config.docs_dir})})


def on_config(config):
    from generator.render import nav, render

    report = report_config(config)
    if _render:
        render(report, log=lambda message: None)
    copy_assets(Path(config.docs_dir))
    config.nav = nav(report)
    config.site_name = report.title
    return config


def on_serve(server, config, builder):
    """Live reload when a template, a result or the report config changes."""
    report = report_config(config)
    for path in (report.path("templates"), report.path("results"), report.root / "report.yaml"):
        if path.exists():
            server.watch(str(path))
    return server


def mkdocs_config(config: Config, **overrides):
    from mkdocs.config import load_config

    config_file = config.path("mkdocs")
    if not config_file.exists():
        raise ReportError(f"mkdocs config {config_file} does not exist (paths.mkdocs in the report config)")
    docs = config.path("docs")
    docs.mkdir(parents=True, exist_ok=True)  # mkdocs requires docs_dir to exist before the hooks run
    return load_config(config_file=str(config_file), docs_dir=str(docs), site_dir=str(config.path("site")), **overrides)


@contextmanager
def active(config: Config, render_pages: bool = True):
    """Make `config` the report config of the mkdocs hooks for a build started here."""
    global _active, _render
    _active, _render = config, render_pages
    try:
        yield
    finally:
        _active, _render = None, True


def build_site(config: Config, log=print, site_url: str | None = None, render_pages: bool = True) -> Path:
    """Render the pages and `mkdocs build --strict` into the configured site folder, running
    no experiment. `site_url` (else mkdocs.yml's, from $CAPCIRCUIT_SITE_URL) is where the site
    will be served: material's instant navigation and the sitemap need it. `render_pages=False`
    builds docs/ as it stands (tests that add to the rendered pages)."""
    from mkdocs.commands.build import build
    from mkdocs.exceptions import Abort, ConfigurationError
    from pymdownx.superfences import SuperFencesException

    with active(config, render_pages):
        try:
            build(mkdocs_config(config, strict=True, **({"site_url": site_url} if site_url else {})))
        except (Abort, ConfigurationError, SuperFencesException) as e:
            raise ReportError(f"mkdocs build --strict failed: {e}") from None
    log(f"built site in {config.path('site')}")
    return config.path("site")


def serve(config: Config, dev_addr: str = "127.0.0.1:8000") -> None:
    from mkdocs.commands.serve import serve as mkdocs_serve

    config.path("docs").mkdir(parents=True, exist_ok=True)
    with active(config):
        mkdocs_serve(
            config_file=str(config.path("mkdocs")),
            dev_addr=dev_addr,
            docs_dir=str(config.path("docs")),
            site_dir=str(config.path("site")),
        )
