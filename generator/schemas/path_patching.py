"""Metrics of generator/experiments/path_patching.py."""

from __future__ import annotations

from generator.schemas.common import Head, Strict


class Path(Strict):
    sender: Head
    receiver: Head
    component: str  # "q" | "k" | "v"
    effect: float


class Sender(Strict):
    sender: Head
    sender_effect: float
    figure: str
    grids: dict[str, list[list[float | None]]]  # component -> [receiver layer][head]; None up to the sender's layer
    strongest: Path


class Metrics(Strict):
    clean_logit_diff: float
    corrupted_logit_diff: float
    n_layers: int
    n_heads: int
    backend: str
    components: list[str]
    left_out: list[str] = []  # configured components not defined on this model (k, v under grouped-query attention)
    senders: list[Sender]
    top_paths: list[Path]
    total_by_component: dict[str, float]  # component -> summed |effect|
    main_component: str | None  # None without any path
    largest_effect: float
    negligible: float
    all_negligible: bool
