"""Typed metrics: per experiment a pydantic model of exactly what its run() stores in
Result.metrics, validated on save and on read, so a renamed or missing field is a one-line
error naming it instead of a template that silently prints nothing.

Torch-free (the render side and `validate config` import it). A map keyed by data (targets,
families, methods) stays a dict[str, X]; every fixed record is a model, read by attribute.
"""

from __future__ import annotations

import types
import typing
from typing import Any

from pydantic import BaseModel, Tag, ValidationError

from generator.schemas import (
    attention,
    attribution,
    baseline,
    circuit,
    contrast,
    exceptions,
    hypotheses,
    patching,
    path_patching,
    sentence_end,
)
from generator.schemas.common import Head, Strict

__all__ = ["SCHEMAS", "SCHEMA_VERSION", "Head", "Strict", "describe", "validate"]

# stored with every record; bumped when a schema changes incompatibly
SCHEMA_VERSION = 2

SCHEMAS: dict[str, type[BaseModel]] = {
    "baseline": baseline.Metrics,
    "attribution": attribution.Metrics,
    "attention": attention.Metrics,
    "exceptions": exceptions.Metrics,
    "contrast": contrast.Metrics,
    "patching": patching.Metrics,
    "path_patching": path_patching.Metrics,
    "circuit": circuit.Metrics,
    "hypotheses": hypotheses.Metrics,
    "sentence_end": sentence_end.Metrics,
}

SHOWN = 3  # problems spelled out in the one line; the rest are counted


def validate(experiment: str, metrics: Any) -> BaseModel:
    """The experiment's metrics as its typed model; ValueError (one line) naming each bad field."""
    if experiment not in SCHEMAS:
        raise ValueError(f"no metrics schema for experiment {experiment!r} (known: {', '.join(SCHEMAS)})")
    model = SCHEMAS[experiment]
    try:
        return model.model_validate(metrics)
    except ValidationError as e:
        raise ValueError(describe(e, model)) from None


def describe(err: ValidationError, model: type[BaseModel], prefix: str = "metrics") -> str:
    """One line: 'metrics.groups[0].heads: Field required; ...' (the first few problems)."""
    problems = []
    for e in err.errors():
        path, inner = _walk(model, e["loc"])
        where = prefix + "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in path)
        if e["type"] == "extra_forbidden":
            parent = _walk(model, e["loc"][:-1])[1]
            fields = list(parent.model_fields) if isinstance(parent, type) and issubclass(parent, BaseModel) else []
            problems.append(f"{where}: unknown field" + (f" (allowed: {', '.join(fields)})" if fields else ""))
        elif e["type"] == "missing":
            problems.append(f"{where}: {e['msg']}")
        else:
            got = repr(e.get("input"))
            problems.append(f"{where}: {e['msg']} (got {got[:60] + '…' if len(got) > 60 else got})")
    more = len(problems) - SHOWN
    return "; ".join(problems[:SHOWN]) + (f"; and {more} more" if more > 0 else "")


def _walk(model: Any, loc: tuple) -> tuple[list, Any]:
    """An error location as a field path (without the union tags pydantic inserts) and the type
    found there (None where it cannot be followed)."""
    path, t = [], model
    for part in loc:
        t, tag = _unwrap(t, part)
        if tag:  # a discriminated union's member, named by its tag: not a field
            continue
        path.append(part)
        t = _child(t, part)
    return path, _unwrap(t, None)[0]


def _unwrap(t: Any, part: Any) -> tuple[Any, bool]:
    """Through Annotated and unions: (the type, whether `part` was a discriminated member's tag)."""
    while True:
        origin, args = typing.get_origin(t), typing.get_args(t)
        if origin is typing.Annotated:
            t = args[0]
        elif origin in (typing.Union, types.UnionType):
            members = [a for a in args if a is not type(None)]
            for m in members:
                kind = getattr(m, "model_fields", {}).get("kind")
                if kind is not None and part in typing.get_args(kind.annotation):
                    return m, True
                tags = [x.tag for x in getattr(m, "__metadata__", ()) if isinstance(x, Tag)]
                if part in tags:  # a member picked by a callable Discriminator
                    return typing.get_args(m)[0], True
            if len(members) != 1:
                return None, False
            t = members[0]
        else:
            return t, False


def _child(t: Any, part: Any) -> Any:
    """The type of a field, list item or dict value of `t`."""
    if isinstance(t, type) and issubclass(t, BaseModel):
        field = t.model_fields.get(str(part))
        return field.annotation if field else None
    origin, args = typing.get_origin(t), typing.get_args(t)
    if origin is list:
        return args[0]
    if origin is dict:
        return args[1]
    return None
