"""Each experiment's parameters, with defaults. Kept apart from the experiment modules so that
validating a config (and rendering) never imports torch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from generator.patch_targets import TARGETS


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Baseline(Params):
    top_k: int = Field(
        10, ge=1, le=100, description="rows in the next-token tables (the notebook's test_prompt shows 10)"
    )
    probes: list[tuple[str, str]] = Field(
        default_factory=lambda: [
            (".", " He"),
            ("Daniel is a great friend.", " he"),
            ("John is a really great friend.", " He"),
        ],
        description="(prompt, answer) pairs shown like the notebook's test_prompt: '.' alone with "
        "' He', and 'Daniel is a great friend.' with ' he' as the notebook ran them",
    )
    single_prompt: str = Field(
        "David is a really great friend.",
        description="the notebook's single-prompt logit-difference check (its 'Tests' section)",
    )
    single_prompt_answers: tuple[str, str] = (" He", " he")
    performs_min_logit_diff: float = Field(
        1.0, description="mean logit difference from which the report says a model can perform the task"
    )
    performs_min_fraction: float = Field(
        0.9, ge=0, le=1, description="... and the share of prompts on which the capital must win"
    )


REPORT_TARGETS = ["resid_pre", "attn_out", "mlp_out", "head_out", "head_out_by_pos", "head_v", "head_pattern"]
# the page's prose reads these sweeps; the others are optional extras
REQUIRED_TARGETS = {"resid_pre", "attn_out", "mlp_out", "head_out", "head_v", "head_pattern"}


class Patching(Params):
    targets: list[Literal[tuple(TARGETS)]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: list(REPORT_TARGETS),
        description="sweeps to run, rows of generator/patch_targets.py (head_out_by_pos is the "
        "slowest: n_layers × n_positions × n_heads patched runs)",
    )
    top_heads: int = Field(
        10, ge=1, le=100, description="heads listed in the top-heads table (the notebook's top_k = 10)"
    )
    good_correlation: float = Field(
        0.9,
        ge=0,
        le=1,
        description="Pearson correlation above which the page calls attribution patching a good approximation",
    )
    min_correlation_points: int = Field(
        10, ge=3, description="fewest differing cells on which a correlation is reported (else: too few points)"
    )
    large_error: float = Field(
        0.1,
        gt=0,
        description="attribution-patching error (normalised) above "
        "which the page says a first-order estimate cannot follow the model",
    )
    constant_range: float = Field(
        0.005, gt=0, description="a per-layer range of effects narrower than this is called constant"
    )
    noise: float = Field(
        1e-4, gt=0, description="effects below this at positions whose tokens do not differ are called numerical noise"
    )

    @field_validator("targets")
    @classmethod
    def _required(cls, targets: list[str]) -> list[str]:
        missing = sorted(REQUIRED_TARGETS - set(targets))
        if missing:
            raise ValueError(f"the page needs the sweeps {', '.join(missing)}; add them to targets")
        return list(dict.fromkeys(targets))


class PathPatching(Params):
    sources: int = Field(
        3,
        ge=1,
        le=20,
        description="strongest heads (by head-output patching, with an effect of at least `negligible`) "
        "whose direct paths are patched",
    )
    components: list[Literal["q", "k", "v", "mlp", "logits"]] = Field(
        ["q", "k", "v", "mlp", "logits"],
        min_length=1,
        description="receivers to patch: later heads' query, key and value inputs, MLP inputs, the logits",
    )
    top_paths: int = Field(10, ge=1, le=100, description="paths listed in the table")
    negligible: float = Field(
        0.01, gt=0, description="a path carrying less than this share of the clean behaviour is called negligible"
    )


MIB_SIZES = [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]


class Circuit(Params):
    ig_steps: int = Field(
        5, ge=1, le=100, description="EAP-IG interpolation steps (1: the corrupted run's gradient alone)"
    )
    sizes: list[float] = Field(
        default_factory=lambda: list(MIB_SIZES),
        min_length=2,
        description="circuit sizes as fractions of the graph's edges (MIB's); the areas integrate over them",
    )
    faithful: float = Field(0.8, gt=0, le=1, description="faithfulness the smallest reported circuit must reach")
    refine: int = Field(
        8,
        ge=1,
        le=32,
        description="sizes tried between the first evaluated size that reaches `faithful` and the one before it",
    )
    node_ranking: bool = Field(True, description="also rank edges by their writers' exact node effects")
    random_seeds: int = Field(10, ge=1, le=100, description="random edge orders (the baseline)")
    position_random_seeds: int = Field(
        0,
        ge=0,
        le=100,
        description="random edge orders on the position-aware graph too (0: none, as in contrast; the "
        "position-agnostic graph's are the baseline the page compares with, and each order costs as much as a "
        "ranking's curve)",
    )
    bootstrap: int = Field(
        1000, ge=100, le=100_000, description="bootstrap resamples of the prompts' clusters (names; templates)"
    )
    confidence: float = Field(0.95, gt=0, lt=1, description="level of the bootstrap intervals")
    position_aware: bool = Field(True, description="also score and verify the graph with one edge per position")
    held_out: bool = Field(True, description="score on half of the names' prompts, verify on the other names'")
    small_difference: float = Field(
        0.01,
        gt=0,
        description="a held-out − in-sample difference in CPR below this is called small, whatever its interval",
    )
    graph_edges: int = Field(
        60,
        ge=1,
        le=500,
        description="edges drawn in the interactive circuit graph (its slider stops at the circuit sizes up to this)",
    )
    export_edges: int = Field(2000, ge=1, description="edges (top by |EAP-IG|) in the downloadable graph JSON")
    top_edges: int = Field(15, ge=1, le=200, description="edges listed in the table")
    negligible: float = Field(
        0.01,
        gt=0,
        description="an edge whose exact effect is below this share of the clean − corrupted gap is called negligible",
    )
    seed: int = Field(0, description="seed of the random baseline, the bootstrap and the name split")

    @field_validator("sizes")
    @classmethod
    def _increasing(cls, sizes: list[float]) -> list[float]:
        if any(not 0 < s <= 1 for s in sizes) or sizes != sorted(set(sizes)):
            raise ValueError("sizes must be increasing fractions in (0, 1]")
        return sizes


class Contrast(Params):
    """The circuit machinery's parameters (see Circuit) for the contrast families, with lighter
    defaults than the pronoun circuit's: six families, two graphs each, on every model."""

    methods: list[Literal["eap", "attribution_patching", "eap_ig"]] = Field(
        default_factory=lambda: ["eap_ig"],
        min_length=1,
        description="gradient rankings run on each family (the circuit page compares all three; EAP-IG picks "
        "the circuits here, so it must be listed)",
    )
    ig_steps: int = Field(3, ge=1, le=100, description="EAP-IG interpolation steps")
    sizes: list[float] = Field(
        default_factory=lambda: list(MIB_SIZES), min_length=2, description="circuit sizes as fractions of the edges"
    )
    faithful: float = Field(0.8, gt=0, le=1, description="faithfulness the smallest reported circuit must reach")
    refine: int = Field(4, ge=1, le=32, description="sizes tried below the first evaluated size that is faithful")
    node_ranking: bool = Field(False, description="also rank edges by their writers' exact node effects (slow)")
    random_seeds: int = Field(3, ge=1, le=100, description="random edge orders (the baseline)")
    position_random_seeds: int = Field(
        0,
        ge=0,
        le=100,
        description="random edge orders on the position-aware graph too (0: none; the position-agnostic graph's "
        "are the baseline the page compares with, and each order costs as much as a ranking's curve)",
    )
    bootstrap: int = Field(200, ge=100, le=100_000, description="bootstrap resamples of the pairs")
    confidence: float = Field(0.95, gt=0, lt=1, description="level of the bootstrap intervals")
    position_aware: bool = Field(
        True, description="also the position-aware graph (needed to say which heads move context, and from where)"
    )
    graph_edges: int = Field(
        40, ge=1, le=500, description="most edges of a family's position-aware circuit that are described"
    )
    transfer_size: float = Field(
        0.1,
        gt=0,
        le=1,
        description="the size (fraction of the plain graph's edges) at which every family's circuit is transferred "
        "and compared",
    )
    min_gap: float = Field(
        0.25,
        gt=0,
        description="a family whose members differ by less than this mean capital log-odds (or whose difference's "
        "interval includes zero) has no contrast to explain: it gets no circuit",
    )
    movers: int = Field(3, ge=1, le=20, description="heads listed per family as moving context to the final position")
    seed: int = Field(0, description="seed of the random baseline and the bootstrap")

    @field_validator("sizes")
    @classmethod
    def _increasing(cls, sizes: list[float]) -> list[float]:
        return Circuit._increasing(sizes)

    @field_validator("methods")
    @classmethod
    def _eap_ig(cls, methods: list[str]) -> list[str]:
        if "eap_ig" not in methods:
            raise ValueError("EAP-IG picks each family's circuit: keep eap_ig in methods")
        return list(dict.fromkeys(methods))


class Attribution(Params):
    top_k: int = Field(5, ge=1, le=50, description="heads listed per sign (positive, negative)")


class Attention(Params):
    top_k: int = Field(
        3, ge=1, le=20, description="heads shown per sign, from attribution's top heads (at most attribution.top_k)"
    )
    mostly: float = Field(
        0.5,
        ge=0.5,
        lt=1,
        description="share of its attention above which a head is said to attend 'mostly' to a position "
        "(below it: 'most strongly')",
    )


class Exceptions(Params):
    pass


class Hypotheses(Params):
    keeps: float = Field(
        0.5,
        gt=0,
        le=1,
        description="share of the pronoun task's mean logit difference a prompt set must keep for the capital "
        "preference to count as surviving there (the copying verdict)",
    )
    same_components: float = Field(
        0.8,
        gt=0,
        le=1,
        description="cosine between two per-component DLA profiles above which the same components write both",
    )
    heads: int = Field(
        3, ge=1, le=20, description="heads examined per list (attribution's top of each sign, patching's top)"
    )
    mostly: float = Field(0.5, gt=0, le=1, description="attention share from which a head 'attends mostly' to a role")
    minor: float = Field(
        0.1,
        gt=0,
        le=1,
        description="share of the logit difference under which all heads' direct writes together count as minor",
    )
    matters: float = Field(
        0.1,
        gt=0,
        le=1,
        description="share of the clean − corrupted gap that patching a position must recover (at some layer) "
        "for the position to matter",
    )
    min_gap: float = Field(
        0.1,
        gt=0,
        description="a corruption that moves the mean logit difference less than this has nothing to localise",
    )


class SentenceEnd(Params):
    sentence_ends: list[str] = Field(
        default_factory=lambda: [".", "!", "?"],
        min_length=1,
        description="final tokens that end a sentence (a capital expected); the first is the task's own",
    )
    non_ends: list[str] = Field(
        default_factory=lambda: [";", ",", ""],
        min_length=1,
        description='final tokens that end no sentence ("": no punctuation); the first is the task\'s corruption',
    )
    bootstrap: int = Field(1000, ge=100, le=100_000, description="bootstrap resamples (whole names; test clusters)")
    confidence: float = Field(0.95, gt=0, lt=1, description="level of the bootstrap intervals")
    top_neurons: int = Field(5, ge=1, le=100, description="neurons listed per contrast, each patched exactly alone")
    top_k: list[int] = Field(
        default_factory=lambda: [1, 3, 5, 10, 20, 50],
        min_length=1,
        description="numbers of top neurons patched together (their share of the whole MLPs' effect)",
    )
    few: int = Field(5, ge=1, description="at most this many neurons carrying `most` of the effect count as 'a few'")
    most: float = Field(0.5, gt=0, le=1, description="share of the MLPs' exact effect that counts as 'most'")
    contexts: int = Field(5, ge=1, le=50, description="top activating contexts shown per neuron")
    context_neurons: int = Field(3, ge=1, le=20, description="top neurons per contrast whose contexts are shown")
    test_share: float = Field(0.5, gt=0, lt=1, description="share of each source's clusters held out to test the probe")
    l2: float = Field(1e-2, ge=0, description="L2 penalty of the probe (on standardised features)")
    present: float = Field(
        0.9, gt=0.5, le=1, description="held-out accuracy from which the direction counts as linearly present"
    )
    coefficients: list[float] = Field(
        default_factory=lambda: [-4.0, -3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0, 4.0],
        min_length=3,
        description="steering strengths, in units of the gap between the two classes' mean projections",
    )
    steer_prompts: int = Field(
        32, ge=1, description="held-out prompts steered per group (exceptions, sentence ends): the first ones"
    )
    seed: int = Field(0, description="seed of the bootstrap, the probe's split and the random direction")

    @field_validator("coefficients")
    @classmethod
    def _around_zero(cls, values: list[float]) -> list[float]:
        if values != sorted(set(values)) or values[0] >= 0 or values[-1] <= 0 or 0.0 not in values:
            raise ValueError("coefficients must be increasing, include 0, and reach both signs")
        return values

    @field_validator("top_k")
    @classmethod
    def _increasing(cls, values: list[int]) -> list[int]:
        if values != sorted(set(values)) or values[0] < 1:
            raise ValueError("top_k must be increasing positive counts")
        return values
