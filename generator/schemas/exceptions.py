"""Metrics of generator/experiments/exceptions.py."""

from __future__ import annotations

from generator.schemas.common import Strict


class Family(Strict):
    family: str
    description: str
    expected: str  # "capital" | "lowercase", as written English has it
    n: int
    example: str
    mean_log_odds: float
    min_log_odds: float
    max_log_odds: float
    vs_control: float
    agrees: float  # share of prompts whose log-odds sign matches written English
    sentence_end_like: bool
    as_english: bool
    p_capital: float
    p_lowercase: float
    n_pairs: int
    mean_logit_diff: float | None  # None: no single-token answer pair in the family
    vs_control_logit_diff: float | None


class PromptRow(Strict):
    prompt: str
    family: str
    notebook: bool
    capital: str
    lowercase: str
    n_tokens: int
    log_odds: float
    p_capital: float
    p_lowercase: float
    single_token_pair: bool
    logit_diff: float | None  # None where the pair is not single-token


class UnusablePair(Strict):
    prompt: str
    family: str
    split: list[list[str]]  # [capital, lowercase] -> their tokens


class Lens(Strict):
    labels: list[str]
    families: dict[str, list[float]]  # family -> over labels


class LensSplit(Strict):
    family: str
    first: float
    final: float
    half: str | None


class Metrics(Strict):
    control: str
    control_mean: float
    control_mean_logit_diff: float | None
    n_prompts: int
    n_pairs: int
    unusable_pairs: list[UnusablePair]
    families: list[Family]
    per_prompt: list[PromptRow]
    lens: Lens
    agreement: float
    lens_split: LensSplit
