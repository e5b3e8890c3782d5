"""The experiment registry: the one place an experiment is declared.

An experiment is a module with

    def run(model, batch, params, inputs) -> Result

and one row below naming that module, the task it runs on (tasks/data/<task>.yaml), its
parameter class (in params.py, which imports no torch, so validating a config or rendering
never loads it), the experiments whose stored metrics it reads (`after`; they arrive in
`inputs` as {name: metrics}, and their cache keys join its own) and the pages it fills. The
site's pages and navigation are derived from these rows (generator.render.pages). An
experiment never writes files, renders or prints: it returns numbers (with axis labels and
typed ids), declared as a pydantic Metrics model in generator/schemas/<name>.py; the templates
word them and generator/figures/<name>.py draws them.

To add one: the module, its Params in params.py, its Metrics schema, a row here, a template in
templates/ (and, for figures, a module in generator/figures/).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from generator import ReportError
from generator.experiments import params as p


@dataclass(frozen=True)
class Page:
    file: str  # docs/<file>
    title: str  # in the navigation
    section: str = ""  # a navigation section such as "Appendices"; "" = top level
    per_model: bool = True  # rendered once per model, in content tabs (False: the page compares them itself)

    @property
    def template(self) -> str:  # templates/<file>.j2
        return f"{self.file}.j2"


@dataclass(frozen=True)
class Experiment:
    module: str  # where run() lives
    task: str  # the task (tasks/data/<task>.yaml) it runs on
    params: type[BaseModel]
    pages: tuple[Page, ...]  # the pages that read its results (first: its own page)
    after: tuple[str, ...] = ()  # experiments whose metrics run() receives in `inputs`
    extra_tasks: tuple[str, ...] = ()  # other tasks whose batches run() receives in inputs["tasks"]
    overview: bool = False  # adds templates/partials/overview/<name>.md.j2 to the overview
    overview_order: int = 0  # the overview's sentences: lower first, then the configured order


# the navigation follows this order
EXPERIMENTS: dict[str, Experiment] = {
    "baseline": Experiment(
        "generator.experiments.baseline",
        "pronoun",
        p.Baseline,
        (
            Page("baseline.md", "Task and baseline"),
            Page("appendix-prompts.md", "Per-prompt results", "Appendices", per_model=False),
        ),
        overview=True,
    ),
    "attribution": Experiment(
        "generator.experiments.attribution",
        "pronoun",
        p.Attribution,
        (Page("attribution.md", "Attribution"), Page("breakdowns.md", "Breakdowns")),
    ),
    "attention": Experiment(
        "generator.experiments.attention",
        "pronoun",
        p.Attention,
        (Page("attention.md", "Attention"),),
        after=("attribution", "patching"),
    ),
    "exceptions": Experiment(
        "generator.experiments.exceptions", "exceptions", p.Exceptions, (Page("exceptions.md", "Exceptions"),)
    ),
    "contrast": Experiment(
        "generator.experiments.contrast",
        "pronoun",  # the transfer matrix's last column; the families come as an extra task
        p.Contrast,
        (Page("contrast.md", "Contrast circuits"),),
        extra_tasks=("contrast",),
        overview=True,
        overview_order=1,  # after the pronoun task's sentences, which it does not continue
    ),
    "patching": Experiment(
        "generator.experiments.patching", "pronoun", p.Patching, (Page("patching.md", "Activation patching"),)
    ),
    "path_patching": Experiment(
        "generator.experiments.path_patching",
        "pronoun",
        p.PathPatching,
        (Page("path-patching.md", "Path patching"),),
        after=("patching",),
    ),
    "circuit": Experiment(
        "generator.experiments.circuit",
        "pronoun",
        p.Circuit,
        (Page("circuit.md", "Circuit"),),
        extra_tasks=("exceptions",),
        overview=True,
    ),
    "sentence_end": Experiment(
        "generator.experiments.sentence_end",
        "pronoun",
        p.SentenceEnd,
        (Page("sentence-end.md", "Sentence ends"),),
        after=("circuit",),
        extra_tasks=("exceptions", "contrast"),
    ),
    "hypotheses": Experiment(
        "generator.experiments.hypotheses",
        "pronoun",
        p.Hypotheses,
        (Page("hypotheses.md", "Hypotheses", per_model=False),),  # its template shows every model itself
        after=("attribution", "patching"),
        extra_tasks=(
            "copy_lowercase_names",
            "copy_no_capital",
            "copy_capital_word",
            "positions_name_gender",
            "positions_verb",
            "positions_subject",
        ),
    ),
}


@dataclass
class Result:
    metrics: dict[str, Any]  # validated against generator.schemas.<experiment>.Metrics when stored
    timings: dict[str, float] = field(default_factory=dict)  # seconds of parts (stored apart: they vary)


def get(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ReportError(f"unknown experiment {name!r}: available are {', '.join(EXPERIMENTS)}")
    return EXPERIMENTS[name]


def module(name: str):
    """The experiment's code (imports torch)."""
    return importlib.import_module(get(name).module)
