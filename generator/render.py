"""Render Jinja templates into markdown pages, reading only the results store (no torch)."""

from __future__ import annotations

import html
import json
from pathlib import Path

import jinja2

from generator import ReportError
from generator.config import Config
from generator.store import Store, write_atomic

# page file (in docs/) -> (template, experiments it reads for the primary model). A page whose
# experiments did not run renders templates/missing.md.j2 instead, saying how to run them, so
# the site's nav (mkdocs.yml) stays fixed. Add a page: a template, a line here, a nav entry.
PAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "index.md": ("index.md.j2", ("baseline",)),
    "baseline.md": ("baseline.md.j2", ("baseline",)),
}


def load_results(config: Config) -> dict[str, dict[str, dict]]:
    """{model name: {experiment: record}} for the configured models that have results."""
    from generator.models import ModelRef

    store = Store(config.path("results"))
    results = {}
    for name in config.models:
        slug = ModelRef(name, "", "").slug
        records = {e: store.load(slug, e) for e in config.experiments}
        found = {e: r for e, r in records.items() if r is not None}
        for e in found:
            found[e]["timing"] = store.timing(slug, e)
        if found:
            results[name] = found
    return results


def figure_html(spec: dict, element_id: str, caption: str) -> str:
    """A figure element plus its JSON; the site's loader (assets/report.js) draws it."""
    data = json.dumps(spec, sort_keys=True, separators=(",", ":")).replace("</", "<\\/")
    return (f'<figure class="report-figure" markdown="0">\n'
            f'<div class="report-{spec["kind"]}" id="{element_id}" data-figure="{element_id}-data"></div>\n'
            f'<script type="application/json" id="{element_id}-data">{data}</script>\n'
            f"<figcaption>{html.escape(caption)}</figcaption>\n</figure>\n")


def environment(config: Config) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(config.path("templates")),
        undefined=jinja2.StrictUndefined,  # a missing value is an error, never an empty string
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["pct"] = lambda x, digits=0: f"{100 * x:.{digits}f}%"
    env.filters["fmt"] = lambda x, digits=2: f"{x:.{digits}f}"
    return env


def render(config: Config, log=print) -> list[Path]:
    """Write every page into docs/; return the paths written."""
    results = load_results(config)
    if not results:
        raise ReportError(f"no results in {config.path('results')}: run `capcircuit run` (or `build`) first")
    primary = next(m for m in config.models if m in results)
    env = environment(config)
    counter = iter(range(10**6))

    def figure(record: dict, name: str, caption: str) -> str:
        model = record["provenance"]["model"]
        slug = "".join(c if c.isalnum() else "-" for c in f"{model}-{name}")
        return figure_html(record["figures"][name], f"fig-{slug}-{next(counter)}", caption)

    context = {"config": config, "results": results, "primary": primary, "r": results[primary],
               "models": list(results), "figure": figure}
    pages = {}  # render every page before writing any: a failing template leaves no half site
    for page, (template, needs) in PAGES.items():
        missing = [e for e in needs if e not in results[primary]]
        if missing:
            template = "missing.md.j2"
        try:
            pages[page] = env.get_template(template).render(context, page=page, missing=missing)
        except jinja2.UndefinedError as e:
            raise ReportError(f"template {template} refers to a missing value: {e.message}; "
                              "run the experiment that produces it, or fix the template") from None
    docs = config.path("docs")
    written = []
    for page, text in pages.items():
        write_atomic(docs / page, text)
        written.append(docs / page)
    log(f"rendered {len(written)} pages into {docs}")
    return written
