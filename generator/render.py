"""Render Jinja templates into markdown pages, reading only the results store (no torch)."""

from __future__ import annotations

import html
import json
import re
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import jinja2
import yaml

from generator import ReportError
from generator.config import Config
from generator.store import Store, write_atomic

# page file (in docs/) -> (template, experiments it reads for the primary model). A page whose
# experiments did not run renders templates/missing.md.j2 instead, saying how to run them, so
# the site's nav (mkdocs.yml) stays fixed. Add a page: a template, a line here, a nav entry.
PAGES: dict[str, tuple[str, tuple[str, ...]]] = {
    "index.md": ("index.md.j2", ("baseline",)),
    "baseline.md": ("baseline.md.j2", ("baseline",)),
    "attribution.md": ("attribution.md.j2", ("attribution",)),
    "breakdowns.md": ("breakdowns.md.j2", ("attribution",)),
    "attention.md": ("attention.md.j2", ("attention",)),
    "exceptions.md": ("exceptions.md.j2", ("exceptions",)),
    "models.md": ("models.md.j2", ("baseline",)),
    "patching.md": ("patching.md.j2", ("patching",)),
    "path-patching.md": ("path-patching.md.j2", ("path_patching",)),
    "reproducibility.md": ("reproducibility.md.j2", ()),
    "appendix-prompts.md": ("appendix-prompts.md.j2", ("baseline",)),
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
    """A `report-figure` fence holding the figure's JSON; at site build, generator.site's
    fence formatter turns it into an element the loader (assets/report.js) draws. A fence,
    not raw HTML, so a figure also works inside content tabs and admonitions: indent it there
    with `{{ figure(...) | indent(4) }}`."""
    data = json.dumps({"caption": caption, "id": element_id, "spec": spec},
                      sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    return f"```report-figure\n{data}\n```\n"


def token_html(token: str) -> str:
    """A token as inline code that survives a markdown table: spaces shown as ␣, newlines as
    ↵, HTML and pipes escaped."""
    shown = token.replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")
    return "<code>" + html.escape(shown).replace("|", "&#124;") + "</code>"


def package_version(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "not installed"


def environment(config: Config) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(config.path("templates")),
        undefined=jinja2.StrictUndefined,  # a missing value is an error, never an empty string
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["pct"] = lambda x, digits=0: f"{100 * x:.{digits}f}%"
    env.filters["fmt"] = lambda x, digits=2: f"{x:.{digits}f}"
    env.filters["seconds"] = lambda s: f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"
    env.filters["token"] = token_html
    env.filters["yaml"] = lambda data: yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    env.globals["package_version"] = package_version
    return env


def render(config: Config, log=print) -> list[Path]:
    """Write every page into docs/; return the paths written."""
    results = load_results(config)
    if not results:
        raise ReportError(f"no results in {config.path('results')}: run `capcircuit run` (or `build`) first")
    primary = next(m for m in config.models if m in results)
    env = environment(config)
    used_ids: dict[str, int] = {}

    @jinja2.pass_context
    def figure(ctx, record: dict, name: str, caption: str) -> str:
        # ids from page, model and figure name: stable when other pages gain figures
        model, page = record["provenance"]["model"], ctx["page"]
        if not caption.strip():
            raise ReportError(f"figure {name!r} of {model} on {page} has no caption: every figure needs one")
        slug = re.sub(r"[^A-Za-z0-9]+", "-", f"{page[:-3]}-{model}-{name}").strip("-")
        used_ids[slug] = used_ids.get(slug, 0) + 1
        suffix = f"-{used_ids[slug]}" if used_ids[slug] > 1 else ""
        return figure_html(record["figures"][name], f"fig-{slug}{suffix}", caption)

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
