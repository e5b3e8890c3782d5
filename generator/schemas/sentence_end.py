"""Metrics of generator/experiments/sentence_end/ (counterfactual endings, the circuit's
neurons, a sentence-end direction)."""

from __future__ import annotations

from typing import Literal

from generator.schemas.common import Strict

Interval = list[float]  # [low, high]


class EndingRow(Strict):
    ending: str  # the final token ("" = no punctuation)
    sentence_end: bool
    logit_diff: float  # mean over prompts, the answers' logit difference
    logit_diff_ci: Interval
    capital_wins: float
    log_odds: float  # mean capital log-odds over the vocabulary
    log_odds_ci: Interval


class Halves(Strict):
    neutral: float  # mean logit difference with the neutral final token
    neutral_ci: Interval
    up: float  # period − neutral
    up_ci: Interval
    down: float  # neutral − corruption
    down_ci: Interval
    up_share: float | None  # up / (up + down)
    up_share_ci: Interval | None


class HalvesTable(Strict):
    period: str
    corruption: str
    mean_ablation: Halves
    mean_ablation_endings: list[str]  # whose embeddings are averaged
    resample: Halves
    resample_endings: list[str]  # over which the logit difference is averaged


class Carried(Strict):
    ending: str
    clean: float | None
    corrupted: float | None
    gap: float | None
    faithfulness: float | None  # None: no gap, or another token length
    faithfulness_ci: Interval | None


class Endings(Strict):
    rows: list[EndingRow]
    halves: HalvesTable
    circuit: list[Carried]  # one per sentence end, the task's own first
    circuit_edges: int
    circuit_faithful: float  # the circuit experiment's threshold
    smallest_faithful: bool  # the stored circuit reached it (else: its drawn edges)


class Neuron(Strict):
    layer: int
    neuron: int
    attribution: float
    exact_effect: float
    share: float | None  # of all the named MLPs' neurons patched together
    clean_activation: float
    corrupted_activation: float
    capital_per_unit: float | None  # W_out · capitalisation direction
    capital_of_difference: float | None  # × (clean − corrupted activation)
    capital_cosine: float | None


class TopK(Strict):
    k: int
    effect: float
    share: float | None


class Context(Strict):
    activation: float
    token: str
    context: str


class NeuronContexts(Strict):
    layer: int
    neuron: int
    top: list[Context]


class Contrast(Strict):
    name: Literal["period", "exception"]
    metric: Literal["logit_diff", "capital_log_odds"]
    source: Literal["pronoun", "contrast", "exceptions"]  # the task of its prompts
    paired: bool  # each corrupted prompt gets its own pair's clean activations (else the clean mean)
    n_clean: int
    n_corrupted: int
    clean: float
    corrupted: float
    all_effect: float
    neurons: list[Neuron]
    top_k: list[TopK]
    most_by: int | None  # the fewest top-k (of those patched) reaching `most` of the effect
    few: bool
    contexts: list[NeuronContexts]


class Neurons(Strict):
    layers: list[int]  # the MLPs the circuit names
    contrasts: list[Contrast]
    n_capital_pairs: int
    most: float
    few: int


class Stream(Strict):
    stream: str  # "0_pre" … "final_post"
    train: float
    test: float
    test_ci: Interval
    period_test: float  # among held-out examples ending in "."
    period_test_ci: Interval
    pairs_test: float | None  # among held-out contrast-pair members (None without the contrast task)
    pairs_test_ci: Interval | None


class Curve(Strict):
    mean: list[float]  # per coefficient
    low: list[float]
    high: list[float]


class Steering(Strict):
    stream: str
    gap: float
    coefficients: list[float]
    exceptions_probe: Curve
    exceptions_random: Curve
    sentence_ends_probe: Curve
    sentence_ends_random: Curve
    n_exceptions: int
    n_sentence_ends: int
    shift_up_probe: float | None
    shift_down_probe: float | None
    shift_up_random: float | None
    shift_down_random: float | None
    capitalises_probe: bool
    stops_probe: bool
    capitalises_random: bool
    stops_random: bool
    already_capital: bool
    beats_random: bool
    works: bool


class Probe(Strict):
    n_train: int
    n_test: int
    n_period_test: int
    n_pairs_test: int
    decides: Literal["pairs", "period"]  # the held-out subset whose accuracy decides presence
    sources: list[str]
    chance: float
    period_chance: float
    streams: list[Stream]
    first_present: str | None
    first_present_all: str | None
    first_above_chance: str | None  # first stream whose decisive held-out interval clears chance
    decisive_chance: float  # guessing the majority on the decisive subset
    steering: Steering
    present: float


class Metrics(Strict):
    n_layers: int
    d_mlp: int | None
    endings: Endings
    neurons: Neurons
    probe: Probe
    contrast_unbuildable: str | None  # why the contrast task could not be built (None: it was, or not configured)
    confidence: float
    bootstrap: int
