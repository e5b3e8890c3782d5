"""The static site: copy the JS bundles from installed packages, then run mkdocs build.

plotly.js and circuitsvis are copied once into docs/assets/vendor/ (no CDN, nothing inlined
per figure), so the site works with no network."""

from __future__ import annotations

import shutil
from importlib.resources import files
from pathlib import Path

from generator import ReportError
from generator.config import Config

SITE_ASSETS = Path(__file__).parent / "site_assets"


def vendor_files() -> dict[str, Path]:
    return {
        "plotly.min.js": Path(str(files("plotly") / "package_data" / "plotly.min.js")),
        "circuitsvis.js": Path(str(files("circuitsvis") / "dist" / "cdn" / "iife.js")),
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


def mkdocs_config(config: Config, **overrides):
    from mkdocs.config import load_config

    config_file = config.path("mkdocs")
    if not config_file.exists():
        raise ReportError(f"mkdocs config {config_file} does not exist (paths.mkdocs in the report config)")
    return load_config(config_file=str(config_file), docs_dir=str(config.path("docs")),
                       site_dir=str(config.path("site")), site_name=config.title, **overrides)


def build_site(config: Config, log=print) -> Path:
    """mkdocs build --strict into the configured site folder."""
    from mkdocs.commands.build import build
    from mkdocs.exceptions import Abort, ConfigurationError

    copy_assets(config.path("docs"))
    try:
        build(mkdocs_config(config, strict=True))
    except (Abort, ConfigurationError) as e:
        raise ReportError(f"mkdocs build --strict failed: {e}") from None
    log(f"built site in {config.path('site')}")
    return config.path("site")


def serve(config: Config, dev_addr: str = "127.0.0.1:8000") -> None:
    from mkdocs.commands.serve import serve as mkdocs_serve

    copy_assets(config.path("docs"))
    mkdocs_serve(config_file=str(config.path("mkdocs")), dev_addr=dev_addr,
                 docs_dir=str(config.path("docs")), site_name=config.title)
