"""The site's scripts and styles: plotly.js (from the installed plotly package) and circuitsvis
(its bundle, shipped in generator/assets/circuitsvis/: the circuitsvis Python package needs
torch, the site must not) copied once into docs/assets/vendor/ (no CDN, nothing inlined per
figure), so the site works with no network, and the report's own report.js / report.css."""

from __future__ import annotations

import shutil
from importlib.util import find_spec
from pathlib import Path

from generator import ReportError

SITE_ASSETS = Path(__file__).parents[1] / "site_assets"
CIRCUITSVIS_JS = Path(__file__).parents[1] / "assets" / "circuitsvis" / "circuitsvis.js"


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
