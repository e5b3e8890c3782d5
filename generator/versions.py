"""Package versions: those a result was computed with (part of its key: a result computed
under other versions is stale for `run`) and those of the machine that renders the site
(publishing tolerates a difference: the reproducibility page shows both)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from importlib.util import find_spec
from pathlib import Path

from generator import ReportError, __version__

# the packages whose versions can change a computed number; with their helpers they are the
# `run` extra (pyproject.toml): publishing stored results needs none of them
KEY_PACKAGES = ("torch", "transformer_lens", "transformers")
RUN_EXTRA = "pip install 'capcircuit[run]'"
# the packages that draw the site (they change its look, never a number)
SITE_PACKAGES = ("mkdocs", "mkdocs-material", "plotly", "jinja2")
CIRCUITSVIS_VERSION = Path(__file__).parent / "assets" / "circuitsvis" / "VERSION"


def package_version(name: str) -> str:
    try:
        return version(name.replace("_", "-"))
    except PackageNotFoundError:
        return "not installed"  # rendering needs no torch; its results are then stale (versions)


def current_versions() -> dict[str, str]:
    """This machine's versions of KEY_PACKAGES: the `versions` part of every key made here."""
    return {p: package_version(p) for p in KEY_PACKAGES}


def rendering_versions() -> dict[str, str]:
    """current_versions() and capcircuit's own ("generator", as in a result's provenance): what
    the reproducibility page sets beside the versions each result was computed with."""
    return {**current_versions(), "generator": __version__}


def site_versions() -> dict[str, str]:
    """SITE_PACKAGES' versions, and circuitsvis's: its bundle ships with capcircuit."""
    versions = {p: package_version(p) for p in SITE_PACKAGES}
    return {**versions, "circuitsvis": CIRCUITSVIS_VERSION.read_text().strip()}


def require_run_packages(doing: str) -> None:
    """Fail in one line, before anything runs, when the packages that compute results are not
    installed (a publishing install: `pip install capcircuit` without the `run` extra)."""
    missing = [p for p in KEY_PACKAGES if find_spec(p) is None]
    if missing:
        raise ReportError(
            f"{doing} needs {', '.join(missing)}, which {'is' if len(missing) == 1 else 'are'} not installed "
            f"(publishing stored results does not): {RUN_EXTRA}"
        )
