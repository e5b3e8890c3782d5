"""Metrics of generator/experiments/contrast.py."""

from __future__ import annotations

from typing import Literal

from generator.schemas.circuit import Circuit, Method, Smallest
from generator.schemas.common import Node, Strict


class PairRow(Strict):
    family: str
    pair: str  # "email[3]": the pair's family and index in the task file
    exception: str
    end: str
    n_tokens: int
    differing: list[int]  # positions (BOS counted) where the members' tokens differ
    log_odds_exception: float
    log_odds_end: float
    logit_diff_exception: float | None  # None: the answer pair is not single-token
    logit_diff_end: float | None


class Example(Strict):
    exception: str
    end: str


class Graph(Strict):
    """One graph's method table (circuit.py's curves) and its smallest faithful circuit."""

    methods: dict[str, Method]  # eap_ig, random[, eap, attribution_patching, exact_node as params ask]
    smallest_faithful: Smallest | None
    n_edges: int


class PositionGraph(Graph):
    circuit: Circuit  # EAP-IG by |score|: the smallest faithful circuit, at most graph_edges edges


class FamilyCircuit(Graph):
    by_position: PositionGraph | None


class Interval(Strict):
    mean: float
    low: float
    high: float


class Read(Strict):
    offset: int  # the position, counted back from the final token (-1: the token before it)
    score: float  # total |EAP-IG score| of the head's key and value edges kept there
    deciding: float  # share of pairs whose differing words include that position


class Mover(Strict):
    layer: int
    head: int
    score: float  # total |EAP-IG score| of its edges out of the final position in the circuit
    reads: list[Read]  # strongest first; empty: no key / value edge of it kept at an earlier position
    attention: dict[str, Interval]  # "exception" | "end" -> attention from the final position to the differing words


class Family(Strict):
    family: str
    description: str
    after_exception: Literal["capital", "lowercase"]
    n_pairs: int
    mean_exception: float
    mean_end: float
    gap: float  # end − exception mean capital log-odds
    gap_ci: list[float]
    end_higher: float  # share of pairs whose end member has the higher capital log-odds
    n_single_token: int
    logit_diff_exception: float | None
    logit_diff_end: float | None
    example: Example
    readout: Literal["capital", "lowercase"]  # the case the circuit's metric reads (the exception's)
    has_contrast: bool
    circuit: FamilyCircuit | None
    movers: list[Mover] | None


class Cell(Strict):
    faithfulness: float
    low: float
    high: float


class TransferRow(Strict):
    circuit: str  # the family whose circuit it is
    on: dict[str, Cell]  # target (a family or "pronoun") -> f of that circuit there


class Transfer(Strict):
    edges: int
    fraction: float
    targets: list[str]
    pronoun_clean: float
    pronoun_corrupted: float
    rows: list[TransferRow]


class SetEdge(Strict):
    writer: Node
    reader: Node
    families: list[str]


class EdgeSets(Strict):
    families: list[str]
    edges: list[SetEdge]
    shared_by_all: int
    specific: dict[str, int]


class Metrics(Strict):
    unbuildable: str | None  # why the contrast task cannot be built for this model
    n_pairs: int
    min_gap: float
    fractions: list[float]
    methods: list[str]  # the gradient rankings run
    ig_steps: int
    bootstrap: int
    confidence: float
    random_seeds: int
    position_random_seeds: int = 0  # random orders on the position-aware graph (0: none)
    faithful: float
    transfer_size: float
    families: list[Family]
    per_pair: list[PairRow]
    transfer: Transfer | None
    edge_sets: EdgeSets | None
