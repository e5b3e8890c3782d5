"""Metrics of generator/experiments/attention.py."""

from __future__ import annotations

from generator.schemas.common import Head, Strict


class Focus(Strict):
    layer: int
    head: int
    position: int  # where the head looks most from the final position (mean over prompts)
    weight: float


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
    positions: list[str]
    tokens: list[str]  # the example prompt's str tokens
    groups: list[Group]  # in page order
