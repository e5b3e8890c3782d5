"""The report's pages and navigation, derived from the experiment registry
(generator.experiments.EXPERIMENTS): the overview, each configured experiment's pages in
registry order, the models comparison, reproducibility, then the sections (appendices)."""

from __future__ import annotations

from dataclasses import dataclass

from generator.config import Config
from generator.disclosure import card_page, cards
from generator.experiments import EXPERIMENTS, Page
from generator.models import slug

OVERVIEW = Page("index.md", "Overview")
REPORT_PAGES = (Page("models.md", "Models compared"), Page("reproducibility.md", "Reproducibility"))
SWEEP = Page("sweep.md", "Sweep", per_model=False)  # with a `sweep:` in the config, after the models page


@dataclass(frozen=True)
class PageSpec:
    page: Page
    needs: tuple[str, ...]  # experiments whose results the page reads for the primary model


def pages(config: Config) -> list[PageSpec]:
    """Every page of the report for this config, in navigation order."""
    out = [PageSpec(OVERVIEW, ())]
    for name, experiment in EXPERIMENTS.items():
        if name in config.experiments:
            out += [PageSpec(page, (name,)) for page in experiment.pages]
    report = list(REPORT_PAGES)
    if config.sweep:
        report.insert(1, Page(SWEEP.file, config.sweep.title, per_model=False))
    out += [PageSpec(page, ()) for page in report]
    return [s for s in out if not s.page.section] + [s for s in out if s.page.section]


def nav(config: Config) -> list:
    """The mkdocs `nav` for these pages: top-level pages, then one entry per section."""
    entries: list = []
    sections: dict[str, list] = {}
    for spec in pages(config):
        item = {spec.page.title: spec.page.file}
        if spec.page.section:
            if spec.page.section not in sections:
                sections[spec.page.section] = []
                entries.append({spec.page.section: sections[spec.page.section]})
            sections[spec.page.section].append(item)
        else:
            entries.append(item)
    if cards(config.models):
        entries.append({"Model cards": [{m: card_page(m)} for m in config.models if card_page(m) in cards([m])]})
    return entries


def download_path(model: str, experiment: str, kind: str = "") -> str:
    """Where a result's downloadable data lies in docs/ (a page links it relatively); `kind`
    names another format of it ("mib", "neuronpedia")."""
    return f"downloads/{slug(model)}-{experiment}{'-' + kind if kind else ''}.json"
