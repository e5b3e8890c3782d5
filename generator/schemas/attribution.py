"""Metrics of generator/experiments/attribution.py."""

from __future__ import annotations

from generator.schemas.common import Head, Strict


class Lens(Strict):
    labels: list[str]  # one per accumulated residual stream
    clean: list[float]  # over labels
    corrupted: list[float]


class Components(Strict):
    labels: list[str]
    values: list[float]  # over labels


class HeadGrid(Strict):
    layers: list[str]
    heads: list[str]
    values: list[list[float]]  # [layer][head]


class TopHead(Strict):
    layer: int
    head: int
    attribution: float


class Labelled(Strict):
    label: str
    value: float


class BreakdownRow(Strict):
    group: str
    n: int
    logit_diff: float
    heads: list[float]  # over Breakdown.heads
    text: str | None = None  # the template's text (template rows only)


class Breakdown(Strict):
    heads: list[Head]
    rows: list[BreakdownRow]


class Metrics(Strict):
    n_prompts: int
    mean_logit_diff: float
    total: float
    unembed_bias: float
    decomposition_error: float
    head_error: float
    heads_total: float
    not_heads: float
    lens: Lens
    components: Components
    heads: HeadGrid
    attn_bias: list[float]  # over layers
    top_positive: list[TopHead]
    top_negative: list[TopHead]
    breakdowns: dict[str, Breakdown]  # "template" | "name" | "gender" -> table
    top_component: Labelled
    bottom_component: Labelled
    lens_half: str | None  # the first lens label carrying half the final value
