"""The activation-patching page's figures: one heatmap per sweep (laid out by the target's
axes), value vs pattern patching per head, and attribution patching against the exact sweeps."""

from __future__ import annotations

import itertools

from generator.figures.plot import recovered_heatmap, scatter
from generator.heads import head_name
from generator.patch_targets import TARGETS


def figures(m) -> dict:
    out = {t: (lambda t=t: sweep(m, t)) for t in m.targets}
    out["value_vs_pattern"] = lambda: scatter(
        {"heads": (flat(m.sweeps["head_v"]), flat(m.sweeps["head_pattern"]), head_labels(m))},
        "Value patching vs pattern patching, per head",
        "value patching (recovered)",
        "pattern patching (recovered)",
    )
    out["attribution"] = lambda: scatter(
        {TARGETS[t].title: (flat(m.sweeps[t]), flat(m.attribution[t]), cell_labels(m, t)) for t in m.targets},
        "Attribution patching vs exact activation patching",
        "exact (recovered)",
        "attribution estimate (recovered)",
    )
    return out


def sweep(m, t: str) -> dict:
    axes, title, values = TARGETS[t].axes, TARGETS[t].title, m.sweeps[t]
    layers = [f"L{layer}" for layer in range(m.n_layers)]
    if axes == ("layer", "pos"):
        return recovered_heatmap(values, list(m.positions), layers, title, "position", "layer")
    if axes == ("layer", "head"):
        return recovered_heatmap(values, [f"H{h}" for h in range(m.n_heads)], layers, title, "head", "layer")
    # three axes: one row per head, one column per position
    if axes == ("layer", "head", "pos"):
        rows = [values[l][h] for l in range(m.n_layers) for h in range(m.n_heads)]
    else:  # (layer, pos, head)
        rows = [[values[l][p][h] for p in range(len(m.positions))] for l in range(m.n_layers) for h in range(m.n_heads)]
    spec = recovered_heatmap(rows, list(m.positions), head_labels(m), title, "position", "head")
    spec["figure"]["layout"]["height"] = max(400, 16 * len(rows) + 120)
    return spec


def head_labels(m) -> list[str]:
    return [head_name((layer, h)) for layer in range(m.n_layers) for h in range(m.n_heads)]


def cell_labels(m, t: str) -> list[str]:
    """One hover label per flattened cell, in the sweep's axis order."""
    sizes = {"layer": m.n_layers, "pos": len(m.positions), "head": m.n_heads}
    shape = [range(sizes[a]) for a in TARGETS[t].axes]
    return [TARGETS[t].cell_label(index, list(m.positions)) for index in itertools.product(*shape)]


def flat(values) -> list[float]:
    """A nested list's numbers in row-major order (torch's flatten())."""
    if isinstance(values, list):
        return [v for item in values for v in flat(item)]
    return [values]
