"""The Jinja environment (filters, globals, strict undefined, autoescape) and rendering every
page in memory, with template errors said in one line."""

from __future__ import annotations

import json
import re
import traceback

import jinja2
import yaml
from markupsafe import Markup

from generator import ReportError, figures, sweep
from generator.config import Config
from generator.experiments import EXPERIMENTS
from generator.files import shown
from generator.render.pages import download_path, pages
from generator.render.text import (
    as_text,
    code,
    fmt,
    interval,
    interval_bounds,
    interval_only,
    pct,
    seconds,
    sig,
    verbatim,
)
from generator.site.fence import figure_html
from generator.versions import rendering_versions, site_versions
from generator.words import FILTERS, GLOBALS


def environment(config: Config) -> jinja2.Environment:
    templates = config.path("templates")
    if not templates.is_dir():
        raise ReportError(f"templates folder {shown(templates)} does not exist (paths.templates in the report config)")
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(templates),
        undefined=jinja2.StrictUndefined,  # a missing value is an error, never an empty string
        keep_trailing_newline=True,
        autoescape=True,  # task data and titles are text: escaped, never markup
        finalize=as_text,
        extensions=["jinja2.ext.do"],
    )
    env.filters.update(FILTERS)
    env.filters["pct"] = pct
    env.filters["fmt"] = fmt
    env.filters["sig"] = sig
    env.filters["interval"] = interval
    env.filters["interval_only"] = interval_only
    env.filters["interval_bounds"] = interval_bounds
    env.filters["seconds"] = seconds
    env.filters["token"] = code
    env.filters["code"] = code
    env.filters["verbatim"] = verbatim
    env.filters["tab_anchor"] = tab_anchor
    env.filters["json"] = lambda data: json.dumps(data, sort_keys=True, ensure_ascii=False)
    # the config as YAML inside a fenced code block, where markdown shows everything as text
    env.filters["yaml"] = lambda data: Markup(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    env.globals.update(GLOBALS)
    env.globals["site_versions"] = site_versions
    env.globals["rendering_versions"] = rendering_versions
    return env


def figure_function():
    """The templates' `figure(record, name, caption)`: the figure drawn from the record's
    metrics (generator.figures), as a fence with an id unique on the site."""
    used_ids: dict[str, int] = {}

    @jinja2.pass_context
    def figure(ctx, record: dict, name: str, caption: str) -> Markup:
        # ids from page, model and figure name: stable when other pages gain figures
        model, page = record["provenance"]["model"], ctx["page"]
        if not caption.strip():
            raise ReportError(f"figure {name!r} of {model} on {page} has no caption: every figure needs one")
        try:
            spec = figures.build(record["experiment"], name, record["metrics"])
        except ReportError as e:
            raise ReportError(f"{page}: {model}'s {e}") from None
        fid = re.sub(r"[^A-Za-z0-9]+", "-", f"{page[:-3]}-{model}-{name}").strip("-")
        used_ids[fid] = used_ids.get(fid, 0) + 1
        suffix = f"-{used_ids[fid]}" if used_ids[fid] > 1 else ""
        return Markup(figure_html(spec, f"fig-{fid}{suffix}", caption))

    return figure


def tab_anchor(model: str) -> str:
    """The id of a model's content tab, as pymdownx.tabbed's slugify (mkdocs.yml) makes it from
    the tab's title, so that a link opens that model's tab."""
    from pymdownx.slugs import slugify

    return slugify(case="lower")(model, "-")


def sweep_figure(data: dict, caption: str) -> Markup:
    """The sweep page's figure (generator.figures.sweep), as a fence."""
    from generator.figures.sweep import figure

    return Markup(figure_html(figure(data), "fig-sweep", caption))


def render_pages(config: Config, results: dict) -> dict[str, str]:
    """Every page's markdown, rendered in memory: a failing template leaves no page written."""
    primary = config.models[0]
    env = environment(config)
    figure = figure_function()

    # an experiment skipped for a model (it cannot run on it) is left out of that model's
    # results: templates see only what ran, and its pages say why for that model
    skipped = {m: {e: rec["skipped"] for e, rec in recs.items() if "skipped" in rec} for m, recs in results.items()}
    results = {m: {e: rec for e, rec in recs.items() if "skipped" not in rec} for m, recs in results.items()}
    shown = [e for e in config.experiments if EXPERIMENTS[e].overview and e not in skipped[primary]]
    overview = [f"partials/overview/{e}.md.j2" for e in sorted(shown, key=lambda e: EXPERIMENTS[e].overview_order)]
    context = {
        "ALL_MODELS": Markup(ALL_MODELS),
        "config": config,
        "results": results,
        "skipped": skipped,
        "primary": primary,
        "r": results[primary],
        "models": list(results),
        "figure": figure,
        "overview_partials": overview,
        "download_path": download_path,
        "sweep": sweep.sweep(config, results) if config.sweep else None,
        "sweep_figure": sweep_figure,
    }
    out = {}
    for spec in pages(config):
        if not spec.needs or not spec.page.per_model:
            out[spec.page.file] = render_page(env, spec, context, spec.page.template)
            continue
        # an experiment's page: rendered for every model (each with its own r and primary),
        # shown in content tabs when there are several
        texts = {}
        for m in results:
            template = "skipped.md.j2" if any(n in skipped[m] for n in spec.needs) else spec.page.template
            texts[m] = render_page(env, spec, {**context, "primary": m, "r": results[m]}, template)
        out[spec.page.file] = in_tabs(texts)
    return out


# A template line after which a page speaks of every model at once (rendered once, after the tabs)
ALL_MODELS = "<!-- every model -->"


def in_tabs(texts: dict[str, str]) -> str:
    """One page from a rendering per model: its title once, each model's body in a content tab
    (material's `=== "name"`), then the part after ALL_MODELS once. One model: no tabs."""
    first = next(iter(texts.values()))
    title = first.split("\n", 1)[0] + "\n\n" if first.startswith("# ") else ""
    shared = first.split(ALL_MODELS, 1)[1] if ALL_MODELS in first else ""
    bodies = {m: t.split(ALL_MODELS, 1)[0] for m, t in texts.items()}
    bodies = {
        m: (b.split("\n", 1)[1] if b.startswith("# ") and "\n" in b else b).strip("\n") for m, b in bodies.items()
    }
    if len(bodies) == 1:
        body = next(iter(bodies.values())) + "\n"
    else:
        tabs = []
        for m, b in bodies.items():
            indented = "\n".join(("    " + line) if line.strip() else "" for line in b.split("\n"))
            tabs.append(f'=== "{m}"\n\n{indented}\n')
        body = "\n".join(tabs)
    return title + body + (("\n" + shared.strip("\n") + "\n") if shared.strip() else "")


def render_page(env: jinja2.Environment, spec, context: dict, template: str) -> str:
    """One page's markdown from one template; a template's error said in one line."""
    try:
        return env.get_template(template).render(
            context, page=spec.page.file, page_title=spec.page.title, spec_needs=list(spec.needs)
        )
    except ReportError:
        raise
    except jinja2.TemplateSyntaxError as e:
        where = f"{e.name or e.filename or template}:{e.lineno}"
        raise ReportError(f"template {where}: syntax error: {e.message}; fix the template") from e
    except jinja2.TemplateNotFound as e:
        raise ReportError(
            f"template {e.name} is not in {shown(context['config'].path('templates'))} (needed for "
            f"{spec.page.file}); restore it or point paths.templates at the report's templates"
        ) from e
    except jinja2.UndefinedError as e:
        raise ReportError(
            f"template {template_line(e, template)} refers to a missing value: {e.message}; "
            "run the experiment that produces it, or fix the template"
        ) from e
    except Exception as e:  # noqa: BLE001 - a template bug, said in one line (--debug: traceback)
        raise ReportError(
            f"template {template_line(e, template)} failed: {type(e).__name__}: {e}; fix the template"
        ) from e


def template_line(error: BaseException, template: str) -> str:
    """'name.md.j2:LINE' of the innermost template frame of an error raised while rendering
    (Jinja maps its frames back to template lines), else the page's template name."""
    where = template
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename.endswith(".j2"):
            where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
    return where
