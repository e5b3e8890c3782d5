"""The report config (report.yaml): which models, tasks and experiments, validated on load."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from generator import ReportError

DEFAULT_CONFIG = "report.yaml"


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Paths(Strict):
    """Where things live, relative to the config file's folder."""

    results: str = "results"
    docs: str = "docs"
    site: str = "site"
    templates: str = "templates"
    mkdocs: str = "mkdocs.yml"


class Config(Strict):
    title: str = "The capital-letter circuit"
    models: list[str] = Field(default_factory=lambda: ["organism"], min_length=1)
    device: str = "auto"
    dtype: Literal["float32", "float64", "bfloat16", "float16"] = "float32"
    seed: int = 0
    example_prompt: str = "John is a really great friend."
    # experiment name -> its parameters (each experiment validates its own)
    experiments: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"baseline": {}})
    paths: Paths = Field(default_factory=Paths)
    root: Path = Path(".")  # set on load: the config file's folder

    def path(self, name: str) -> Path:
        return (self.root / getattr(self.paths, name)).resolve()

    def digest(self) -> str:
        """A short hash of the config, for provenance."""
        data = self.model_dump(mode="json", exclude={"root"})
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:12]


def describe_validation_error(source: str, err: ValidationError) -> str:
    """One line per problem: the field, the value given and what is allowed."""
    lines = [f"{source} is not a valid report config:"]
    for e in err.errors():
        field = ".".join(str(p) for p in e["loc"]) or "(top level)"
        if e["type"] == "extra_forbidden":
            parent = e["loc"][:-1]
            model = Config
            for part in parent:
                model = model.model_fields[part].annotation
            allowed = ", ".join(f for f in model.model_fields if f != "root")
            lines.append(f"  {field}: unknown field (allowed: {allowed})")
        else:
            lines.append(f"  {field}: {e['msg']} (got {e.get('input')!r})")
    return "\n".join(lines)


def load_config(path: str | Path = DEFAULT_CONFIG, **overrides: Any) -> Config:
    """Read and validate a YAML config; `overrides` (e.g. models=[...]) win over the file."""
    path = Path(path)
    data: dict[str, Any] = {}
    if path.exists():
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as e:
            raise ReportError(f"{path} is not valid YAML: {e}") from None
        if not isinstance(data, dict):
            raise ReportError(f"{path} must hold a mapping of settings, got {type(data).__name__}")
    elif path.name != DEFAULT_CONFIG:
        raise ReportError(f"config file {path} does not exist (omit --config to use the defaults)")
    data.update({k: v for k, v in overrides.items() if v is not None})
    data["root"] = path.resolve().parent
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        raise ReportError(describe_validation_error(str(path), e)) from None
    from generator.experiments import validate_params  # late: keeps config import-light

    config.experiments = validate_params(config.experiments)
    return config
