"""Metrics of generator/experiments/baseline.py."""

from __future__ import annotations

from generator.schemas.common import Strict


class TopToken(Strict):
    rank: int
    token: str
    prob: float
    logit: float


class Probe(Strict):
    """TransformerLens's test_prompt as data."""

    prompt: str
    answer: str
    str_tokens: list[str]
    top: list[TopToken]
    answer_single_token: bool
    # None where the answer is not a single token
    answer_rank: int | None
    answer_logit: float | None
    answer_prob: float | None


class SinglePrompt(Strict):
    prompt: str
    answers: list[str]  # [capital, lowercase]
    logit_diff: float | None  # None where an answer is not one token


class PromptRow(Strict):
    index: int
    prompt: str
    corrupted_prompt: str
    template: int  # index into Metrics.templates
    name: str
    group: str
    correct: str
    wrong: str
    clean: float  # logit difference on the clean prompt
    corrupted: float  # ... on the corrupted prompt
    gender_ok: bool  # the right capital pronoun beats every other group's


class Thresholds(Strict):
    logit_diff: float
    fraction: float


class ModelShape(Strict):
    n_layers: int
    n_heads: int
    d_model: int
    d_vocab: int
    attn_only: bool


class Metrics(Strict):
    n_prompts: int
    n_tokens: int
    mean_logit_diff: float
    mean_logit_diff_corrupted: float
    std_logit_diff: float
    frac_capital_preferred: float
    frac_lowercase_after_corruption: float
    gender_accuracy: float
    performs_task: bool
    performs_thresholds: Thresholds
    example_prompt: str
    position_str_tokens: list[str]
    probes: list[Probe]
    single_prompt: SinglePrompt
    per_prompt: list[PromptRow]
    templates: list[str]
    names: list[str]
    model_shape: ModelShape
