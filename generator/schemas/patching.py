"""Metrics of generator/experiments/patching.py."""

from __future__ import annotations

from typing import Annotated

from pydantic import Discriminator, Tag

from generator.schemas.common import Strict


def depth(value) -> str:
    """How deeply lists nest ('2', '3'): picks a sweep's type, so an error names one shape."""
    n = 0
    while isinstance(value, list) and value:
        value, n = value[0], n + 1
    return str(n)


# a sweep's values, nested over TARGETS[target].axes: [layer][pos], [layer][head] or three axes
Sweep = Annotated[
    Annotated[list[list[float]], Tag("2")] | Annotated[list[list[list[float]]], Tag("3")], Discriminator(depth)
]


class Agreement(Strict):
    """Attribution patching against the exact sweep, over the cells that differ."""

    n_cells: int
    n_total: int
    pearson: float | None  # None: fewer than Fit.min_points cells, or a constant side
    spearman: float | None
    max_abs_error: float


class TopHead(Strict):
    layer: int
    head: int
    group: str  # "early" | "middle" | "late"
    effect: float
    value: float
    pattern: float


class ResidFlow(Strict):
    changed_positions: list[int]
    final_position: int
    changed_is_final: bool
    dominant_by_layer: list[int]  # over layers: the position of the largest |effect|
    moves_at_layer: int | None
    final_effect_by_layer: list[float]
    final_effect_constant: bool
    changed_effect_by_layer: list[float]
    unchanged_max_effect: float
    unchanged_is_noise: bool


class Strongest(Strict):
    index: dict[str, int]  # axis -> index
    value: float


class LargestError(Strict):
    target: str
    error: float
    too_large: bool


class Fit(Strict):
    threshold: float
    min_points: int  # no correlation is reported on fewer cells
    good: list[str]  # targets
    poor: list[str]
    undefined: list[str]
    largest_error: LargestError


class Metrics(Strict):
    clean_logit_diff: float
    corrupted_logit_diff: float
    n_layers: int
    n_heads: int
    n_key_value_heads: int | None = None  # fewer than n_heads under grouped-query attention
    positions: list[str]
    backend: str  # "engine" | "transformer_lens"
    targets: list[str]  # sweep order
    sweeps: dict[str, Sweep]  # target -> recovered fraction
    attribution: dict[str, Sweep]  # target -> attribution-patching estimate
    agreement: dict[str, Agreement]  # target -> ...
    top_heads: list[TopHead]
    resid_flow: ResidFlow
    strongest: dict[str, Strongest]  # target -> ...
    value_dominated: int
    attribution_fit: Fit
