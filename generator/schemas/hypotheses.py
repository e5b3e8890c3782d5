"""Metrics of generator/experiments/hypotheses/ (the notebook's hypotheses, tested)."""

from __future__ import annotations

from typing import Literal

from generator.schemas.common import Head, Strict


class SetRow(Strict):
    task: str  # the pronoun task first, then the copying prompt sets
    n: int  # prompts with single-token answers
    logit_diff: float
    capital_wins: float  # share of prompts with logit difference > 0
    kept: float | None  # logit_diff / the pronoun task's (None where that is 0)


class PairCosines(Strict):
    median: float
    share_above: float  # share of word pairs at or above the same_components cosine
    min: float


class Direction(Strict):
    n_pairs: int
    example_pairs: list[list[str]]  # [[" The", " the"], ...]
    components: list[str]  # get_full_resid_decomposition's labels
    pronoun_dla: list[float]  # over components: DLA onto the task's answer directions
    logit_diff: float
    capital_dla: list[float] | None  # over components: DLA onto the capitalisation direction
    profile_cosine: float | None  # pronoun_dla vs capital_dla
    direction_cosine: float | None  # mean cosine of the answer directions with the capital direction
    pair_cosines: PairCosines | None  # each pair's DLA profile vs capital_dla
    along_share: float | None  # share of the logit difference along the capitalisation direction


class CopyingVerdict(Strict):
    kind: Literal["no_behaviour", "copying", "needs_name", "general_feature", "pronoun_specific"]
    kept_without_capital: float | None
    kept_with_capital_word: float | None
    kept_lowercase_names: float | None
    kept_no_capital: float | None
    same_components: bool


class Copying(Strict):
    sets: list[SetRow]
    direction: Direction
    verdict: CopyingVerdict


RoleValues = dict[str, float]  # role ("BOS", "name", "verb", "modifiers", "noun", "period") -> value


class HeadRow(Strict):
    layer: int
    head: int
    attention: RoleValues  # attention from the final position, summed over the role's positions
    score: RoleValues  # mean pre-softmax score from the final position
    writes_pronoun: RoleValues  # attention-weighted DLA onto the answer direction, from each role
    per_unit_pronoun: RoleValues  # the OV write onto it per unit of attention (mean over the role)
    writes_capital: RoleValues | None
    per_unit_capital: RoleValues | None
    dla: float
    source: str  # the role its answer-direction write comes from most (largest |write|)
    patching: dict[str, float] | None = None  # head_out / head_v / head_pattern recovered


class HeadVerdict(Strict):
    top: Head | None
    top_dla: float | None = None
    top_share: float | None = None
    heads_share: float | None = None  # the examined heads' DLA / the logit difference
    focus: str | None = None
    focus_weight: float | None = None
    focus_mostly: bool | None = None
    preferred: str | None = None  # the role with the highest QK score
    source: str | None = None  # the role its answer-direction write comes from most
    source_share: float | None = None
    route: Literal["value", "pattern"] | None = None
    patched: dict[str, float] | None = None  # the top head's row of patching sweeps


class Mechanism(Strict):
    embed: float
    heads: float
    mlps: float
    bias: float
    total: float
    unembed_bias: float


class Attention(Strict):
    roles: list[str]  # the roles present, in sentence order (RoleValues' keys are sorted)
    heads: list[HeadRow]
    role_totals: RoleValues  # the examined heads' writes onto the answer direction, summed per role
    all_heads_share: float | None
    mechanism: Mechanism
    verdict: HeadVerdict
    heads_minor: bool  # all heads' direct writes together under `minor` of the logit difference


class Matters(Strict):
    position: int
    role: str
    max_recovered: float
    layers: list[int]  # layers whose resid_pre patch there recovers at least `matters`


class TopHead(Strict):
    layer: int
    head: int
    value: float


class Positions(Strict):
    task: str
    unusable: str | None  # why this model's tokenizer breaks the prompt set (then nothing else)
    clean_logit_diff: float | None = None
    corrupted_logit_diff: float | None = None
    roles: list[str] = []  # per position ("mixed" where prompts disagree)
    positions: list[str] = []
    changed: list[int] = []
    recovered: list[list[float]] | None = None  # [layer][pos]; None: the corruption moves too little
    matters: list[Matters] = []
    final_head_out: list[list[float]] | None = (
        None  # [layer][head] recovered, each head's output at the final position patched
    )
    top_head: TopHead | None = None  # the head with the largest |final_head_out|


class Metrics(Strict):
    n_layers: int
    attn_only: bool
    thresholds: dict[str, float]  # the Params the verdicts used
    copying: Copying
    attention: Attention
    positions: list[Positions]
