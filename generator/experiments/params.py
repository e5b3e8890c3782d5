"""Each experiment's parameters, with defaults. Kept apart from the experiment modules so that
validating a config (and rendering) never imports torch."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Baseline(Params):
    top_k: int = Field(10, ge=1, le=100, description="rows in the next-token table")


class Patching(Params):
    top_heads: int = Field(10, ge=1, le=100, description="heads listed in the top-heads table")
    head_by_position: bool = Field(True, description="also patch every head at every position "
                                   "(n_layers × n_positions × n_heads runs, the slowest sweep)")
    good_correlation: float = Field(0.9, ge=0, le=1, description="Pearson correlation above which "
                                    "the page calls attribution patching a good approximation")


class PathPatching(Params):
    sources: int = Field(3, ge=1, le=20, description="strongest heads (by head-output patching, "
                         "outside the last layer) whose direct paths are patched")
    components: list[Literal["q", "k", "v"]] = Field(["q", "k", "v"], min_length=1,
                                                     description="receiver inputs to patch")
    top_paths: int = Field(10, ge=1, le=100, description="paths listed in the table")


class Circuit(Params):
    n_prompts: int = Field(4, ge=1, le=100, description="prompts scored, spread evenly over the "
                           "task (TransformerLens scores edges and faithfulness one prompt at a time)")
    top_edges: int = Field(15, ge=1, le=200, description="edges listed in the table")
    circuit_sizes: list[int] = Field([10, 30, 100, 300], min_length=1, description="circuit sizes "
                                     "(top-scored edges kept) whose faithfulness is measured")
    faithful: float = Field(0.8, ge=0, le=1, description="recovered fraction the page calls faithful")


class Attribution(Params):
    top_k: int = Field(5, ge=1, le=50, description="heads listed per sign (positive, negative)")


class Attention(Params):
    top_k: int = Field(3, ge=1, le=20, description="heads shown per sign, from attribution's top "
                       "heads (at most attribution.top_k)")


class Exceptions(Params):
    pass
