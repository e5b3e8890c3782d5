"""The experiment registry. An experiment is a module with

    def run(model, batch, params, inputs) -> Result

plus an entry below naming its task, its parameter class (in params.py, which imports no
torch, so validating a config or rendering never loads it) and the experiments whose stored
metrics it reads (`after`; they arrive in `inputs` as {name: metrics}, and their cache keys
are part of its own). An experiment never writes
files, renders or prints: it returns numbers (with axis labels) and figure specs.
To add one: write the module, add its Params and an entry here, add a template.
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ValidationError

from generator import ReportError
from generator.experiments import params as p


@dataclass(frozen=True)
class Experiment:
    module: str  # where run() lives
    task: str  # the task (tasks/data/<task>.yaml) it runs on
    params: type[BaseModel]
    after: tuple[str, ...] = ()  # experiments whose metrics run() receives in `inputs`


# order is run order
EXPERIMENTS: dict[str, Experiment] = {
    "baseline": Experiment("generator.experiments.baseline", "pronoun", p.Baseline),
    "attribution": Experiment("generator.experiments.attribution", "pronoun", p.Attribution),
    # attention shows attribution's top heads and patching's, grouped early / middle / late
    "attention": Experiment("generator.experiments.attention", "pronoun", p.Attention, after=("attribution", "patching")),
    "exceptions": Experiment("generator.experiments.exceptions", "exceptions", p.Exceptions),
    "patching": Experiment("generator.experiments.patching", "pronoun", p.Patching),
    "path_patching": Experiment("generator.experiments.path_patching", "pronoun", p.PathPatching, after=("patching",)),
    "circuit": Experiment("generator.experiments.circuit", "pronoun", p.Circuit),
}


@dataclass
class Result:
    metrics: dict[str, Any]
    figures: dict[str, dict] = field(default_factory=dict)  # name -> plotly / circuitsvis spec


def get(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ReportError(f"unknown experiment {name!r}: available are {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def module(name: str):
    """The experiment's code (imports torch)."""
    return importlib.import_module(get(name).module)


def validate_params(experiments: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """Check each experiment's parameters against its Params model; fill in defaults."""
    checked = {}
    for name, params in experiments.items():
        if name not in EXPERIMENTS:
            raise ReportError(f"experiments.{name}: unknown experiment (allowed: {', '.join(EXPERIMENTS)})")
        params_model = EXPERIMENTS[name].params
        try:
            checked[name] = params_model.model_validate(params or {}).model_dump(mode="json")
        except ValidationError as e:
            problems = []
            for err in e.errors():
                where = ".".join(str(p) for p in err["loc"])
                if err["type"] == "extra_forbidden":
                    allowed = ", ".join(params_model.model_fields) or "none"
                    problems.append(f"experiments.{name}.{where}: unknown parameter (allowed: {allowed})")
                else:
                    problems.append(f"experiments.{name}.{where}: {err['msg']} (got {err.get('input')!r})")
            raise ReportError("\n".join(problems)) from None
    return checked


def check_finite(name: str, value: Any, where: str = "") -> None:
    """Fail loudly on NaN/inf anywhere in a result: a NaN rendered as a number is a lie."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ReportError(f"experiment {name} produced {value} at {where or 'top level'}; "
                          "check the model's dtype (float16 overflows) and the prompts")
    if isinstance(value, dict):
        for k, v in value.items():
            check_finite(name, v, f"{where}.{k}" if where else str(k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            check_finite(name, v, f"{where}[{i}]")
