"""Metrics of generator/experiments/attention.py."""

from __future__ import annotations

from generator.schemas.common import Head, Strict


class Focus(Strict):
    layer: int
    head: int
    position: int  # where the head looks most from the final position (mean over prompts)
    weight: float
    mostly: bool  # weight > Metrics.mostly: the page may say "mostly"


class Group(Strict):
    group: str  # "positive", "negative", "patching_early", ...
    heads: list[Head]
    # the rest only where the group has heads
    final_example: list[list[float]] | None = None  # [head][src], from the final position
    final_mean: list[list[float]] | None = None  # [head][src]
    focus: list[Focus] | None = None
    pattern_example: list[list[list[float]]] | None = None  # [head][dest][src]
    pattern_mean: list[list[list[float]]] | None = None  # [head][dest][src]


class Metrics(Strict):
    example_prompt: str
    positions: list[str]  # the example prompt's tokens, token_index
    mean_positions: list[str]  # for averaged maps: each position's token where prompts agree, else its role
    tokens: list[str]  # the example prompt's str tokens
    mostly: float  # the share above which a head attends "mostly" to a position
    groups: list[Group]  # in page order
