"""Each experiment's parameters, with defaults. Kept apart from the experiment modules so that
validating a config (and rendering) never imports torch."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Baseline(Params):
    top_k: int = Field(10, ge=1, le=100, description="rows in the next-token table")
