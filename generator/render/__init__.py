"""Render the report's pages into docs/ from the results store alone (no torch): `checks`
decides what may be published, `pages` what the pages are, `jinja` renders them in memory with
the wording of `text` and generator.words, and `render` here writes them."""

from __future__ import annotations

from pathlib import Path

from generator.config import Config
from generator.disclosure import CARDS, cards
from generator.files import check_writable, write_atomic
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
    """The JSON files the pages link for download: each stored result's `download` metric."""
    return {
        download_path(m, e): dumps(download(record["metrics"]))
        for m, records in results.items()
        for e, record in records.items()
        if getattr(record["metrics"], "download", None) is not None
    }


def render(config: Config, log=print, allow_stale: bool = False) -> list[Path]:
    """Write every page (and downloadable data) into docs/, only files whose text changed, so
    `mkdocs serve` does not loop; remove pages no longer in the report; return what was written.
    Every page is rendered before any is written: an error leaves docs/ as it was."""
    results = load_results(config, allow_stale=allow_stale, log=log)
    texts = render_pages(config, results)
    texts.update(cards(list(results)))  # the bundled models' cards, which the overview links
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
    for old in [*docs.glob("*.md"), *docs.glob(f"{CARDS}/*.md"), *docs.glob("downloads/*.json")]:
        if str(old.relative_to(docs)) not in texts:
            old.unlink()
    log(f"rendered {len(pages_only)} pages into {docs} ({len(written)} files changed)")
    return written


def download(metrics) -> dict:
    """A circuit result's downloadable graph: its logit differences, every method's curves and
    the top edges with every method's score."""
    return {
        "model_clean_logit_diff": metrics.clean_logit_diff,
        "model_corrupted_logit_diff": metrics.corrupted_logit_diff,
        "methods": {name: row.model_dump(mode="json", exclude_unset=True) for name, row in metrics.methods.items()},
        **metrics.download.model_dump(mode="json", exclude_unset=True),
    }
