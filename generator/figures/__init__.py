"""Figures, drawn on the render side from the stored metrics: one module per experiment's
page (its `figures(metrics)` maps each figure's name to a function that builds its spec) on top
of the figure kinds in `plot`. No experiment imports this package, so no result's cache key
depends on how a figure looks: changing a title or a colour re-renders and never re-runs."""

from __future__ import annotations

import importlib

from generator import ReportError

# experiment -> the module drawing its figures (generator.figures.<module>)
MODULES = {
    "baseline": "baseline",
    "attribution": "attribution",
    "attention": "attention",
    "exceptions": "exceptions",
    "contrast": "contrast",
    "patching": "patching",
    "path_patching": "path_patching",
    "circuit": "circuit",
    "hypotheses": "hypotheses",
    "sentence_end": "sentence_end",
}


def available(experiment: str, metrics) -> dict:
    """{figure name: builder} for one stored result."""
    if experiment not in MODULES:
        return {}
    return importlib.import_module(f"generator.figures.{MODULES[experiment]}").figures(metrics)


def build(experiment: str, name: str, metrics) -> dict:
    """The spec of one figure of one stored result; a ReportError naming it when it has none."""
    builders = available(experiment, metrics)
    if name not in builders:
        shown = ", ".join(sorted(builders)) or "none"
        raise ReportError(f"{experiment} has no figure {name!r} (its figures: {shown})")
    return builders[name]()
