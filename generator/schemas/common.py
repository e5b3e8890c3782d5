"""The base of every metrics schema and the small records several experiments share.

Torch-free. strict=True: an int is still a valid float (pydantic's strict mode allows it, so
JSON's 1 for 1.0 validates), but "1.5" is no float, 1.0 no int and true no number."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field


class Strict(BaseModel):
    # forbid: a renamed key is an error, not a silently missing field
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)


class Head(Strict):
    layer: int
    head: int


class Embed(Strict):
    kind: Literal["embed"]


class Logits(Strict):
    kind: Literal["logits"]


class Mlp(Strict):
    kind: Literal["mlp"]  # an MLP's output (writer) or input (reader)
    layer: int


class HeadNode(Strict):
    kind: Literal["head", "q", "k", "v"]  # a head's output (writer) or one of its inputs (reader)
    layer: int
    head: int


# a node of the circuit graph by its stored id (generator.engine.graph._node_id)
Node = Annotated[Embed | Logits | Mlp | HeadNode, Field(discriminator="kind")]
