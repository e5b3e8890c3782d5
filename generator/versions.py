"""Package versions: those a result was computed with (part of its key: a result computed
under other versions is stale for `run`) and those of the machine that renders the site
(publishing tolerates a difference: the reproducibility page shows both)."""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from generator import __version__

# the packages whose versions can change a computed number
KEY_PACKAGES = ("torch", "transformer_lens", "transformers")


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
