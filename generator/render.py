"""Render Jinja templates into markdown pages, reading only the results store (no torch).

The pages and the site's navigation are derived from the experiment registry
(generator.experiments.EXPERIMENTS): the overview, each configured experiment's pages in
registry order, the models comparison, reproducibility, then the sections (appendices)."""

from __future__ import annotations

import html
import json
import math
import re
import traceback
from dataclasses import dataclass
from pathlib import Path

import jinja2
import yaml
from markupsafe import Markup

from generator import ReportError
from generator.config import Config
from generator.experiments import EXPERIMENTS, Page
from generator.files import check_writable, shown
from generator.models import slug
from generator.store import Store, dumps, write_atomic
from generator.versions import rendering_versions, site_versions
from generator.words import FILTERS, GLOBALS

OVERVIEW = Page("index.md", "Overview")
REPORT_PAGES = (Page("models.md", "Models compared"), Page("reproducibility.md", "Reproducibility"))


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
    out += [PageSpec(page, ()) for page in REPORT_PAGES]
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
    return entries


def load_results(config: Config, allow_stale: bool = False, log=print) -> dict[str, dict[str, dict]]:
    """{model name: {experiment: record}} for every configured model and experiment, each
    validated by the store. Nothing wrong reaches a page: a configured result that is missing,
    corrupt or non-finite is an error, and so is one that no longer matches its inputs (the
    config, the task, the code, the model's weights: pipeline.plan) unless `allow_stale`.
    Package versions are the exception: a result keeps the versions it ran with (its pages
    show them), and a site may be rebuilt under others."""
    from generator.pipeline import plan

    store = Store(config.path("results"))
    plans = plan(config)
    for p in plans:
        if p.corrupt:
            store.load(p.slug, p.experiment)  # raises the StoreError with the file and the fix
    missing = [p for p in plans if p.reasons == ["no stored result"]]
    if missing:
        listed = "; ".join(f"{shown(store.path(p.slug, p.experiment))} ({p.experiment} of {p.model})" for p in missing)
        raise ReportError(f"no stored result: {listed}: run `capcircuit run` (or `build`) first")
    stale = {(p.model, p.experiment): [r for r in p.reasons if r != "versions changed"] for p in plans}
    stale = {key: reasons for key, reasons in stale.items() if reasons}
    if stale:
        listed = "; ".join(
            f"{shown(store.path(p.slug, p.experiment))} ({', '.join(stale[p.model, p.experiment])})"
            for p in plans
            if (p.model, p.experiment) in stale
        )
        if not allow_stale:
            raise ReportError(
                f"stale results: {listed}: re-run them with `capcircuit run`, or publish them as they are "
                "with --allow-stale"
            )
        log(f"warning: publishing stale results (--allow-stale): {listed}")
    if any("versions changed" in p.reasons for p in plans):
        log("note: some results were computed under other package versions than this machine's; their pages say which")
    results: dict[str, dict[str, dict]] = {}
    for p in plans:
        record = store.load(p.slug, p.experiment)
        record["timing"] = store.timing(p.slug, p.experiment)
        record["stale"] = stale.get((p.model, p.experiment), [])  # what --allow-stale let through, for a page to say
        results.setdefault(p.model, {})[p.experiment] = record
    return results


def figure_html(spec: dict, element_id: str, caption: str) -> str:
    """A `report-figure` fence holding the figure's JSON; at site build, generator.site's
    fence formatter turns it into an element the loader (assets/report.js) draws. A fence,
    not raw HTML, so a figure also works inside content tabs and admonitions: indent it there
    with `{{ figure(...) | indent(4) }}`."""
    data = json.dumps(
        {"caption": caption, "id": element_id, "spec": spec},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
        allow_nan=False,
    )
    return f"```report-figure\n{data}\n```\n"


def code(text) -> Markup:
    """Text as inline code that survives markdown and tables: spaces shown as ␣, newlines as
    ↵, HTML escaped, pipes as entities. Task data (prompts, tokens) is always shown this way
    or escaped as plain text, never as markup."""
    shown = str(text).replace(" ", "␣").replace("\n", "↵").replace("\t", "⇥")
    return Markup("<code>" + html.escape(shown).replace("|", "&#124;") + "</code>")


def verbatim(text) -> Markup:
    """Text as inline code, spaces kept (prompts, templates)."""
    return Markup("<code>" + html.escape(str(text)).replace("|", "&#124;") + "</code>")


# Not < > &: autoescape turns them into entities, which markdown shows as text (a backslash
# before them would survive as a visible "\&lt;").
MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]|#])")


def as_text(value):
    """Every value a template prints is text: markdown's special characters are escaped here,
    HTML by autoescape; values that are already markup (figures, code) pass unchanged. A
    non-finite number is never printed."""
    if isinstance(value, str) and not isinstance(value, Markup):
        return MARKDOWN_SPECIAL.sub(r"\\\1", value)
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"the template would print {value}: a page never shows a non-finite number")
    return value


def number(value, filter_name: str) -> float:
    """A filter's argument as a finite number; a missing value raises Jinja's UndefinedError,
    which names it (not "StrictUndefined.__format__")."""
    if isinstance(value, jinja2.Undefined):
        value._fail_with_undefined_error()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"`{filter_name}` got {value!r}, not a number")
    if not math.isfinite(value):
        raise ValueError(f"`{filter_name}` got {value}: a page never shows a non-finite number")
    return value


def pct(x, digits: int = 0) -> str:
    return f"{100 * number(x, 'pct'):.{digits}f}%"


def fmt(x, digits: int = 2) -> str:
    return f"{number(x, 'fmt'):.{digits}f}"


def sig(x, digits: int = 3) -> str:
    """A number to `digits` significant digits (small effects stay readable: 2.4e-05)."""
    return f"{number(x, 'sig'):.{digits}g}"


def seconds(s) -> str:
    s = number(s, "seconds")
    return f"{s:.1f} s" if s < 120 else f"{s / 60:.1f} min"


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
    env.filters["seconds"] = seconds
    env.filters["token"] = code
    env.filters["code"] = code
    env.filters["verbatim"] = verbatim
    env.filters["json"] = lambda data: json.dumps(data, sort_keys=True, ensure_ascii=False)
    # the config as YAML inside a fenced code block, where markdown shows everything as text
    env.filters["yaml"] = lambda data: Markup(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    env.globals.update(GLOBALS)
    env.globals["site_versions"] = site_versions
    env.globals["rendering_versions"] = rendering_versions
    return env


def render_pages(config: Config, results: dict) -> dict[str, str]:
    """Every page's markdown, rendered in memory: a failing template leaves no page written."""
    primary = config.models[0]
    env = environment(config)
    used_ids: dict[str, int] = {}

    @jinja2.pass_context
    def figure(ctx, record: dict, name: str, caption: str) -> Markup:
        # ids from page, model and figure name: stable when other pages gain figures
        model, page = record["provenance"]["model"], ctx["page"]
        if not caption.strip():
            raise ReportError(f"figure {name!r} of {model} on {page} has no caption: every figure needs one")
        if name not in record["figures"]:
            raise ReportError(f"{page}: the stored result of {model} has no figure {name!r}; re-run its experiment")
        fid = re.sub(r"[^A-Za-z0-9]+", "-", f"{page[:-3]}-{model}-{name}").strip("-")
        used_ids[fid] = used_ids.get(fid, 0) + 1
        suffix = f"-{used_ids[fid]}" if used_ids[fid] > 1 else ""
        return Markup(figure_html(record["figures"][name], f"fig-{fid}{suffix}", caption))

    overview = [f"partials/overview/{e}.md.j2" for e in config.experiments if EXPERIMENTS[e].overview]
    context = {
        "config": config,
        "results": results,
        "primary": primary,
        "r": results[primary],
        "models": list(results),
        "figure": figure,
        "overview_partials": overview,
        "download_path": download_path,
    }
    out = {}
    for spec in pages(config):
        template = spec.page.template
        try:
            out[spec.page.file] = env.get_template(template).render(context, page=spec.page.file)
        except ReportError:
            raise
        except jinja2.TemplateSyntaxError as e:
            where = f"{e.name or e.filename or template}:{e.lineno}"
            raise ReportError(f"template {where}: syntax error: {e.message}; fix the template") from e
        except jinja2.TemplateNotFound as e:
            raise ReportError(
                f"template {e.name} is not in {shown(config.path('templates'))} (needed for {spec.page.file}); "
                "restore it or point paths.templates at the report's templates"
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
    return out


def template_line(error: BaseException, template: str) -> str:
    """'name.md.j2:LINE' of the innermost template frame of an error raised while rendering
    (Jinja maps its frames back to template lines), else the page's template name."""
    where = template
    for frame in traceback.extract_tb(error.__traceback__):
        if frame.filename.endswith(".j2"):
            where = f"{frame.filename.rsplit('/', 1)[-1]}:{frame.lineno}"
    return where


def download_path(model: str, experiment: str) -> str:
    """Where a result's downloadable data lies in docs/ (a page links it relatively)."""
    return f"downloads/{slug(model)}-{experiment}.json"


def downloads(config: Config, results: dict) -> dict[str, str]:
    """The JSON files the pages link for download: each stored result's `download` metric."""
    return {
        download_path(m, e): dumps(record["metrics"]["download"])
        for m, records in results.items()
        for e, record in records.items()
        if "download" in record["metrics"]
    }


def render(config: Config, log=print, allow_stale: bool = False) -> list[Path]:
    """Write every page (and downloadable data) into docs/, only files whose text changed, so
    `mkdocs serve` does not loop; remove pages no longer in the report; return what was written.
    Every page is rendered before any is written: an error leaves docs/ as it was."""
    results = load_results(config, allow_stale=allow_stale, log=log)
    texts = render_pages(config, results)
    docs = config.path("docs")
    written = []
    pages_only = set(texts)
    texts.update(downloads(config, results))
    for folder in sorted({(docs / page).parent for page in texts}):
        check_writable(folder, "write pages", "paths.docs")
    for page, text in texts.items():
        path = docs / page
        if not path.exists() or path.read_text(encoding="utf-8") != text:
            write_atomic(path, text)
            written.append(path)
    for old in [*docs.glob("*.md"), *docs.glob("downloads/*.json")]:
        if str(old.relative_to(docs)) not in texts:
            old.unlink()
    log(f"rendered {len(pages_only)} pages into {docs} ({len(written)} files changed)")
    return written
