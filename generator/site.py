"""The static site: copy the JS bundles from installed packages, turn figure fences into
elements, run mkdocs build.

plotly.js (from the installed plotly package) and circuitsvis (its bundle, shipped in
generator/assets/circuitsvis/: the circuitsvis Python package needs torch, the site must not)
are copied once into docs/assets/vendor/ (no CDN, nothing inlined per figure), so the site
works with no network. Each figure is a ```report-figure fence
(written by generator.render.figure_html) that `figure_fence`, a pymdownx.superfences custom
fence declared in mkdocs.yml, turns into an element plus its JSON; assets/report.js draws it.
The report uses no math typesetting (no engine to bundle): formulas are plain text."""

from __future__ import annotations

import errno
import html
import json
import logging
import os
import re
import shutil
import socket
from contextlib import contextmanager
from importlib.util import find_spec
from pathlib import Path

from markupsafe import Markup

from generator import ReportError
from generator.config import Config
from generator.files import check_writable, shown

SITE_ASSETS = Path(__file__).parent / "site_assets"
CIRCUITSVIS_JS = Path(__file__).parent / "assets" / "circuitsvis" / "circuitsvis.js"
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
    """An installed package's folder, found without importing it."""
    spec = find_spec(name)
    if spec is None or not spec.origin:
        raise ReportError(f"package {name} is not installed: pip install {name}")
    return Path(spec.origin).parent


def vendor_files() -> dict[str, Path]:
    return {
        "plotly.min.js": package_dir("plotly") / "package_data" / "plotly.min.js",
        "circuitsvis.js": CIRCUITSVIS_JS,
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
_allow_stale = False  # that build's --allow-stale
_render = True  # False: build docs/ as it is (a caller rendered and edited it)
_log = None  # and where it reports (warnings about what it publishes)


def report_config(mkdocs_config) -> Config:
    """The report config for this mkdocs build: capcircuit's, or report.yaml beside mkdocs.yml,
    rendering into mkdocs' docs_dir."""
    from generator.config import DEFAULT_CONFIG, load_config

    config = _active or load_config(Path(mkdocs_config.config_file_path).parent / DEFAULT_CONFIG)
    return config.model_copy(update={"paths": config.paths.model_copy(update={"docs": mkdocs_config.docs_dir})})


def on_config(config):
    from mkdocs.exceptions import PluginError

    from generator.render import nav, render

    log = logging.getLogger("mkdocs.plugins.capcircuit")
    try:
        report = report_config(config)
        if _render:
            render(report, log=_log or log.info, allow_stale=_allow_stale)
        copy_assets(Path(config.docs_dir))
    except ReportError as e:
        if _active is not None:
            raise  # capcircuit's own build: its CLI says it in one line
        raise PluginError(str(e)) from None  # plain `mkdocs build`: mkdocs says it in one line
    config.nav = nav(report)
    # the title is text, also in the theme's templates, which print site_name unescaped
    config.site_name = Markup.escape(report.title)
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
    check_writable(docs, "write pages", "paths.docs")  # mkdocs requires docs_dir to exist before the hooks run
    options = {"docs_dir": str(docs), "site_dir": str(config.path("site")), **overrides}
    return load_config(config_file=str(config_file), **options)


@contextmanager
def active(config: Config, allow_stale: bool = False, log=None, render_pages: bool = True):
    """Make `config` the report config of the mkdocs hooks for a build started here."""
    global _active, _allow_stale, _log, _render
    _active, _allow_stale, _log, _render = config, allow_stale, log, render_pages
    try:
        yield
    finally:
        _active, _allow_stale, _log, _render = None, False, None, True


class _Warnings(logging.Handler):
    """Keeps mkdocs' warnings, so that a strict build's failure can say what they were."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(" ".join(record.getMessage().split()))


def build_site(
    config: Config, log=print, site_url: str | None = None, allow_stale: bool = False, render_pages: bool = True
) -> Path:
    """Render the pages and `mkdocs build --strict` into the configured site folder, running
    no experiment. `site_url` (else mkdocs.yml's, from $CAPCIRCUIT_SITE_URL) is where the site
    will be served: material's instant navigation and the sitemap need it. `render_pages=False`
    builds docs/ as it stands (tests that add to the rendered pages).

    mkdocs empties site_dir first and fails a strict build only at the end, so it builds into
    a staging folder beside site/ that replaces site/ only when the build succeeded: a failed
    build leaves the last good site as it was."""
    from mkdocs.commands.build import build
    from mkdocs.exceptions import Abort, ConfigurationError, PluginError
    from pymdownx.superfences import SuperFencesException

    site = config.path("site")
    check_writable(site.parent, f"build {site.name}/", "paths.site")  # the staging folder goes beside it
    staging = site.with_name(f".{site.name}.{os.getpid()}.building")
    old = site.with_name(f".{site.name}.{os.getpid()}.old")
    for leftover in (staging, old):
        shutil.rmtree(leftover, ignore_errors=True)
    warnings = _Warnings()
    logging.getLogger("mkdocs").addHandler(warnings)
    try:
        with active(config, allow_stale, log, render_pages):
            overrides = {"site_url": site_url} if site_url else {}
            build(mkdocs_config(config, strict=True, site_dir=str(staging), **overrides))
        if site.exists():
            site.rename(old)
        staging.rename(site)
    except (Abort, ConfigurationError, PluginError, SuperFencesException) as e:
        detail = f": {warnings.messages[0]}" if warnings.messages else ""
        more = f" (and {len(warnings.messages) - 1} more warnings)" if len(warnings.messages) > 1 else ""
        raise ReportError(f"mkdocs build --strict failed: {e}{detail}{more}") from None
    finally:
        logging.getLogger("mkdocs").removeHandler(warnings)
        for leftover in (staging, old):
            shutil.rmtree(leftover, ignore_errors=True)
    log(f"built site in {shown(site)}")
    return site


def serve(config: Config, dev_addr: str = "127.0.0.1:8000", allow_stale: bool = False) -> None:
    """`mkdocs serve` (it builds into a temporary folder of its own; site/ is not touched)."""
    from mkdocs.commands.serve import serve as mkdocs_serve

    host, _, port = dev_addr.rpartition(":")
    if not host or not port.isdigit():
        raise ReportError(f"--dev-addr {dev_addr!r}: use HOST:PORT, e.g. 127.0.0.1:8000")
    check_port(host, int(port))
    check_writable(config.path("docs"), "write pages", "paths.docs")
    with active(config, allow_stale):
        mkdocs_serve(config_file=str(config.path("mkdocs")), dev_addr=dev_addr, docs_dir=str(config.path("docs")))


def check_port(host: str, port: int) -> None:
    """Fail before the first build, not after it, when the address cannot be served on."""
    try:
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host.strip("[]"), port))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ReportError(
                f"cannot serve on {host}:{port}: the port is in use (another `capcircuit serve`?); "
                f"stop it or pass --dev-addr {host}:{port + 1}"
            ) from None
        raise ReportError(f"cannot serve on {host}:{port}: {e.strerror or e}; pass another --dev-addr") from None
