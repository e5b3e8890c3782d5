"""Render the report's pages into docs/ from the results store alone (no torch): `checks`
decides what may be published, `pages` what the pages are, `jinja` renders them in memory with
the wording of `text` and generator.words, and `render` here writes them."""

from __future__ import annotations

from pathlib import Path

from generator import ReportError, exports
from generator.config import Config
from generator.disclosure import CARDS, cards
from generator.files import check_writable, remove_dead_temps, shown, write_all
from generator.render.checks import load_results
from generator.render.jinja import environment, render_pages
from generator.render.pages import OVERVIEW, REPORT_PAGES, download_path, nav, pages
from generator.render.text import as_text
from generator.store import dumps

__all__ = [
    "OVERVIEW",
    "REPORT_PAGES",
    "as_text",
    "download_path",
    "environment",
    "load_results",
    "nav",
    "pages",
    "render",
    "render_pages",
]


def downloads(config: Config, results: dict) -> dict[str, str]:
    """The JSON files the pages link for download: each stored result's `download` metric, and
    a circuit's exports in MIB's and Neuronpedia's formats (generator.exports)."""
    out = {}
    for m, records in results.items():
        for e, record in records.items():
            metrics = record["metrics"]
            if getattr(metrics, "download", None) is None:
                continue
            out[download_path(m, e)] = dumps(exports.project_graph(metrics))
            if e == "circuit":
                out[download_path(m, e, "mib")] = dumps(exports.mib_circuit(metrics))
                out[download_path(m, e, "neuronpedia")] = dumps(exports.neuronpedia_graph(metrics, m))
    return out


def render(config: Config, log=print, allow_stale: bool = False) -> list[Path]:
    """Write every page (and downloadable data) into docs/, only files whose text changed, so
    `mkdocs serve` does not loop; remove pages no longer in the report; return what was written.
    docs/ changes as one unit: every page is rendered, then every changed file is written to a
    temp file beside it, and only then are they all renamed into place, so an error (a template,
    a full disk) leaves docs/ as it was. Temp files of a render that was killed are removed."""
    results = load_results(config, allow_stale=allow_stale, log=log)
    texts = render_pages(config, results)
    texts.update(cards(list(results)))  # the bundled models' cards, which the overview links
    docs = config.path("docs")
    pages_only = set(texts)
    texts.update(downloads(config, results))
    for folder in sorted({(docs / page).parent for page in texts}):
        check_writable(folder, "write pages", "paths.docs")
    remove_dead_temps(docs)
    changed = {docs / page: text for page, text in texts.items() if not unchanged(docs / page, text)}
    write_all(changed)
    for old in [*docs.glob("*.md"), *docs.glob(f"{CARDS}/*.md"), *docs.glob("downloads/*.json")]:
        if str(old.relative_to(docs)) not in texts:
            try:
                old.unlink()
            except OSError as e:
                raise ReportError(f"cannot remove {shown(old)} (no longer a page): {e.strerror or e}") from None
    log(f"rendered {len(pages_only)} pages into {docs} ({len(changed)} files changed)")
    return list(changed)


def unchanged(path: Path, text: str) -> bool:
    try:
        return path.read_text(encoding="utf-8") == text
    except (OSError, UnicodeDecodeError):
        return False  # missing or unreadable: written anew
