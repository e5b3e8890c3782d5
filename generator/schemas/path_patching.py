"""Metrics of generator/experiments/path_patching.py."""

from __future__ import annotations

from generator.schemas.common import Head, Node, Strict


class Path(Strict):
    sender: Head
    receiver: Node  # a head's input (kind q/k/v), an MLP's input (kind mlp) or the logits
    effect: float  # normalised: the share of the clean behaviour this path alone carries


class Step(Path):
    share: float  # effect / the sender's own effect (activation patching of its output)


class Sender(Strict):
    sender: Head
    sender_effect: float
    figure: str
    grids: dict[str, list[list[float | None]]]  # q/k/v -> [receiver layer][head]; None up to the sender's layer
    mlps: list[float | None] | None  # per layer; None where no path leads (or MLPs not patched)
    logits: float | None  # the direct path to the unembedding (None: not patched)
    strongest: Path
    route: list[Step]  # paths carrying at least `negligible`, strongest first


class PassedOver(Strict):
    sender: Head
    effect: float


class Metrics(Strict):
    clean_logit_diff: float
    corrupted_logit_diff: float
    n_layers: int
    n_heads: int
    backend: str
    components: list[str]  # receiver kinds: q, k, v, mlp, logits
    left_out: list[str] = []  # configured components not defined on this model (k, v under grouped-query attention)
    senders: list[Sender]
    passed_over: list[PassedOver]  # top heads whose own effect is below `negligible`: not traced
    beyond_quota: list[PassedOver]  # top heads above it, not traced: `sources` were traced already
    top_paths: list[Path]
    total_by_component: dict[str, float]  # receiver kind -> summed |effect|
    main_component: str | None  # None without any path
    largest_effect: float
    negligible: float
    all_negligible: bool
