"""The report config (report.yaml): which models, tasks and experiments, validated on load."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated, Any, Literal, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from pydantic_core import PydanticCustomError

from generator import ReportError
from generator.experiments import EXPERIMENTS
from generator.files import inside, read_yaml, shown
from generator.store import digest

DEFAULT_CONFIG = "report.yaml"
DEVICES = re.compile(r"auto|cpu|mps|cuda(:\d+)?")
WRITTEN = ("results", "docs", "site")  # the folders capcircuit writes (mkdocs empties site/)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Paths(Strict):
    """Where things live, relative to the config file's folder."""

    results: str = "results"
    docs: str = "docs"
    site: str = "site"
    templates: str = "templates"
    mkdocs: str = "mkdocs.yml"


def check_model_name(name: str) -> str:
    """A model name; after its last @, a revision (a hub branch or tag, or a sub-folder of a local folder)."""
    if not name.strip() or name != name.strip():
        raise PydanticCustomError("model_name", "a model name is empty, or has spaces around it")
    base, at, revision = name.rpartition("@")
    if at and (not base.strip() or not revision.strip()):
        raise PydanticCustomError(
            "model_revision", "name a revision as MODEL@REVISION (e.g. pythia-160m@step1000), neither part empty"
        )
    return name


# checked one by one, so that an error names the entry (models.2) and its value
ModelName = Annotated[str, AfterValidator(check_model_name)]


class SweepModel(Strict):
    """One model of a sweep: its name (with @revision where it has one), a label for plots and
    where it stands on the sweep's axis (its parameter count, or its training step)."""

    model: ModelName
    label: str = ""  # "" = the model's name
    order: float


class Sweep(Strict):
    """Many models of one family or one training run, compared on one page (sweep.md)."""

    title: str = "Sweep"
    axis: Literal["parameters", "step"] = "step"  # what `order` counts
    log_axis: bool = True  # sizes and log-spaced checkpoints read best on a log scale
    models: list[SweepModel] = Field(min_length=2)

    @field_validator("models")
    @classmethod
    def _orders(cls, models: list[SweepModel]) -> list[SweepModel]:
        orders = [m.order for m in models]
        if len(set(orders)) != len(orders) or orders != sorted(orders):
            raise PydanticCustomError(
                "sweep_order", "each model needs its own order, listed from the smallest to the largest"
            )
        names = [m.model for m in models]
        if len(set(names)) != len(names):
            raise PydanticCustomError("sweep_models", "a model is listed twice in the sweep: list each once")
        return models

    @model_validator(mode="after")
    def _log_axis(self) -> Sweep:
        low = min(m.order for m in self.models)
        if self.log_axis and low <= 0:
            raise PydanticCustomError(
                "sweep_log_axis",
                "on a log axis every order must be above 0 (got {low}): start at step 1, or set log_axis: false",
                {"low": f"{low:g}"},
            )
        return self

    def label(self, model: str) -> str:
        return next(m.label or m.model for m in self.models if m.model == model)


class Config(Strict):
    title: str = "The capital-letter circuit"
    models: list[ModelName] = Field(default_factory=lambda: ["organism"], min_length=1)
    device: str = "auto"
    dtype: Literal["float32", "float64", "bfloat16", "float16"] = "float32"
    seed: int = 0
    example_prompt: str = "John is a really great friend."
    # experiment name -> its parameters (each experiment validates its own)
    experiments: dict[str, dict[str, Any]] = Field(default_factory=lambda: {"baseline": {}})
    paths: Paths = Field(default_factory=Paths)
    sweep: Sweep | None = None  # its models run after `models` (see load_config)
    root: Path = Path(".")  # set on load: the config file's folder

    @field_validator("device")
    @classmethod
    def _device(cls, value: str) -> str:
        if not DEVICES.fullmatch(value):
            raise PydanticCustomError("device", "use auto (CUDA when present), cpu, cuda, cuda:N or mps")
        return value

    def path(self, name: str) -> Path:
        return (self.root / getattr(self.paths, name)).resolve()

    def digest(self) -> str:
        """A short hash of the config, for provenance: what it asks for, not where its files lie
        (`paths` and `root` are left out, so a copy of a project has the same digest)."""
        return digest(self.model_dump(mode="json", exclude={"root", "paths"}))[:12]


def load_config(path: str | Path = DEFAULT_CONFIG, log=None, **overrides: Any) -> Config:
    """Read and validate a YAML config; `overrides` (e.g. models=[...]) win over the file.
    Without a report.yaml the defaults are used, and `log` (if given) is told which."""
    path = Path(path)
    data: dict[str, Any] = {}
    if path.exists():
        data = read_yaml(path, "config") or {}
        if not isinstance(data, dict):
            raise ReportError(f"{shown(path)} must hold a mapping of settings, got {type(data).__name__}")
    elif path.name != DEFAULT_CONFIG:
        raise ReportError(f"config file {shown(path)} does not exist (omit --config to use the defaults)")
    given = {k: v for k, v in overrides.items() if v is not None}  # from the command line
    data.update(given)
    data["root"] = path.resolve().parent
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        option_error(e, given)
        lines = describe_errors(e, "", Config)
        raise ReportError("\n  ".join([f"{shown(path)} is not a valid report config:"] + lines)) from None

    config.experiments = validate_params(config.experiments)
    if config.sweep:  # a sweep's models run too: after those of models:, or alone without it
        listed = config.models if "models" in data else []
        config.models = listed + [m.model for m in config.sweep.models if m.model not in listed]
    check_paths(config, path)
    check_models(config, "--models" if "models" in given else shown(path))
    if not path.exists() and log:
        log(
            f"note: no {path.name} in {shown(config.root) if shown(config.root) != '.' else 'this folder'}: "
            f"using the defaults: models {', '.join(config.models)}; experiments "
            f"{', '.join(config.experiments)}; folders {', '.join(getattr(config.paths, n) for n in WRITTEN)}"
        )
    return config


def option_error(err: ValidationError, given: dict[str, Any]) -> None:
    """A bad value that came from the command line is named by its option (`--models ''`), not
    blamed on a report.yaml that may not even exist."""
    for e in err.errors():
        field = str(e["loc"][0]) if e["loc"] else ""
        if field in given:
            value = given[field]
            shown_value = ",".join(map(str, value)) if isinstance(value, list) else value
            raise ReportError(f"--{field} {shown_value!r}: {e['msg']}")


def check_paths(config: Config, source: Path) -> None:
    """The folders capcircuit writes lie inside the config's folder, apart from each other:
    a build empties site/ and removes stale pages from docs/, so `site: ..` or `docs: /`
    would delete files that are not the report's."""
    rule = "the folders capcircuit writes (results, docs, site) must lie inside the config's folder"
    where = {}
    for name in WRITTEN:
        where[name] = inside(config.path(name), config.root, f"{shown(source)}: paths.{name}", rule)
    for a in WRITTEN:
        for b in WRITTEN:
            if a != b and (where[a] == where[b] or where[b] in where[a].parents):
                raise ReportError(
                    f"{shown(source)}: paths.{a} ({getattr(config.paths, a)}) lies inside paths.{b} "
                    f"({getattr(config.paths, b)}): give results, docs and site separate folders"
                )


def check_models(config: Config, source: str) -> None:
    """Each model is listed once and has its own folder in the results store. `source`: where
    the list came from (the config file, or --models)."""
    from generator.models import slug

    folders: dict[str, str] = {}
    for i, name in enumerate(config.models):
        if name in config.models[:i]:
            raise ReportError(f"{source}: model {name!r} is listed twice in models: list it once")
        other = folders.setdefault(slug(name), name)
        if other != name:
            raise ReportError(
                f"{source}: models {other!r} and {name!r} would share the results folder "
                f"{slug(name)!r}: list each model once, under one name"
            )


def describe_errors(err: ValidationError, prefix: str, model: type[BaseModel], noun: str = "field") -> list[str]:
    """One line per problem of a pydantic validation: the field, the value and what is allowed."""
    lines = []
    for e in err.errors():
        where = ".".join([prefix] + [str(x) for x in e["loc"]] if prefix else [str(x) for x in e["loc"]])
        where = where or "(top level)"
        if e["type"] == "extra_forbidden":
            parent = model
            for part in e["loc"][:-1]:
                field = getattr(parent, "model_fields", {}).get(str(part))  # an int part: a list's item
                parent = inner_model(field.annotation) if field else parent
            fields = getattr(parent, "model_fields", {})
            allowed = ", ".join(f for f in fields if f != "root") or "none"
            lines.append(f"{where}: unknown {noun} (allowed: {allowed})")
        else:
            lines.append(f"{where}: {e['msg']} (got {e.get('input')!r})")
    return lines


def inner_model(annotation):
    """The pydantic model inside a field's annotation (`Sweep | None`, `list[SweepModel]`), else it."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = inner_model(arg)
        if isinstance(found, type) and issubclass(found, BaseModel):
            return found
    return annotation


def validate_params(experiments: dict[str, dict[str, Any] | None]) -> dict[str, dict[str, Any]]:
    """Check each experiment's parameters against its Params model; fill in defaults."""
    if "baseline" not in experiments:
        raise ReportError(
            "experiments: `baseline` is required (the task page, the overview and the models "
            "page read it); add `baseline: {}` under experiments"
        )
    checked = {}
    for name, params in experiments.items():
        if name not in EXPERIMENTS:
            raise ReportError(f"experiments.{name}: unknown experiment (allowed: {', '.join(EXPERIMENTS)})")
        params_model = EXPERIMENTS[name].params
        try:
            checked[name] = params_model.model_validate(params or {}).model_dump(mode="json")
        except ValidationError as e:
            raise ReportError("\n".join(describe_errors(e, f"experiments.{name}", params_model, "parameter"))) from None
    return checked
