"""The report config (report.yaml): which models, tasks and experiments, validated on load."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from generator import ReportError
from generator.experiments import describe_errors, validate_params
from generator.store import digest

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
        return digest(self.model_dump(mode="json", exclude={"root"}))[:12]


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
        lines = describe_errors(e, "", Config)
        raise ReportError("\n  ".join([f"{path} is not a valid report config:"] + lines)) from None

    config.experiments = validate_params(config.experiments)
    return config
