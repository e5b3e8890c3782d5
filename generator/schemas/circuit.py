"""Metrics of generator/experiments/circuit.py."""

from __future__ import annotations

from generator.schemas.common import Head, Mlp, Node, Strict


class Band(Strict):
    """A cluster-bootstrap interval of f at each size and of the area."""

    low: list[float]
    high: list[float]
    area_ci: list[float]  # [low, high]


class Curve(Strict):
    """Faithfulness at each size and the area under it (CPR or CMD), with intervals from a
    bootstrap that resamples names (low, high, area_ci) and one that resamples templates
    (by_template); for the random baseline's mean, low/high/area_ci are the range over orders."""

    sizes: list[int]  # edges, one per fraction
    faithfulness: list[float]  # over sizes
    low: list[float]
    high: list[float]
    area: float
    area_ci: list[float]  # [low, high]
    by_template: Band | None  # None: the random baseline's mean (a range over orders, not a bootstrap)


class Smallest(Strict):
    edges: int
    fraction: float
    faithfulness: float


class Method(Strict):
    cpr: Curve
    cmd: Curve
    smallest_faithful: Smallest | None
    seeds: list[dict[str, Curve]] | None = None  # random only: per seed {"cpr", "cmd"}


class Edge(Strict):
    writer: Node
    reader: Node
    score: float
    position: int | None = None  # position-aware graph only
    exact_effect: float | None = None  # the first graph_edges edges only


class Circuit(Strict):
    n_edges: int
    edges: list[Edge]
    readers_by_kind: dict[str, int]  # reader kind -> edges into it
    writers: list[Node]
    heads: list[Head]
    mlps: list[Mlp]
    n_nodes: int


class Chosen(Circuit):
    smallest_faithful: Smallest | None


class ByPosition(Strict):
    """The position-aware graph: method -> curves, and the drawn circuit."""

    eap: Method  # MIB's EAP: the gradient at the clean run
    attribution_patching: Method  # the gradient at the corrupted run (TransformerLens)
    eap_ig: Method
    exact_node: Method | None = None  # with params.node_ranking
    random: Method | None = None  # with params.position_random_seeds
    drawn: Circuit


class PairedInterval(Strict):
    low: float
    high: float
    excludes_zero: bool


class Difference(Strict):
    """CPR held out − CPR in sample on the same test prompts, paired resamples."""

    estimate: float
    by_name: PairedInterval
    by_template: PairedInterval


class HeldOut(Strict):
    n_scoring: int  # prompts of the names the circuit was scored on
    n_testing: int  # prompts of the other names
    small: float  # a |difference| below this is called small
    held_out: Curve
    in_sample: Curve
    difference: Difference


class Transfer(Strict):
    family: str
    prompts: list[str]
    defined: bool  # False: clean and corrupted agree, faithfulness undefined
    clean: float | None = None
    corrupted: float | None = None
    faithfulness: list[float] | None = None
    area: float | None = None


class Download(Strict):
    """The downloadable graph's edges; render adds the logit differences and the methods."""

    writers: list[Node]
    readers: list[Node]
    # [writer index, reader index, then a score per method in `columns`], by |EAP-IG| best first
    edges: list[list[int | float]]
    columns: list[str]


class GraphShape(Strict):
    n_layers: int
    n_heads: int
    n_pos: int
    d_model: int  # MIB's graph config needs it (eap/graph.py Graph.from_model)


class Metrics(Strict):
    clean_logit_diff: float
    corrupted_logit_diff: float
    n_prompts: int
    n_edges: int
    n_edges_by_position: int
    shared_prefix: int  # positions before the first that differs
    fractions: list[float]
    ig_steps: int
    top_edges: int
    faithful: float
    confidence: float
    bootstrap: int
    random_seeds: int
    position_random_seeds: int = 0  # random orders on the position-aware graph (0: none)
    methods: dict[str, Method]  # "eap" | "attribution_patching" | "eap_ig" | "exact_node" | "random"
    by_position: ByPosition | None
    circuit: Chosen
    drawn: Circuit
    held_out: HeldOut | None
    transfer: Transfer | None
    download: Download
    negligible: float
    negligible_edges: int
    graph_shape: GraphShape
    selected_edges: int  # edges of the drawn circuit highlighted as the circuit
    # the first prompt, for the exports (Neuronpedia's graph shows one prompt)
    example_prompt: str
    example_tokens: list[str]
    answers: list[str]  # its (capital, lowercase) answer pair
