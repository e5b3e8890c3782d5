"""The mkdocs hooks (mkdocs.yml: `hooks: [generator/mkdocs_hooks.py]`), so that plain `mkdocs
build` / `mkdocs serve` work: before each build the pages are rendered from results/ into
docs/, the JS bundles are placed, and the navigation is derived from the experiment registry.
`capcircuit site` and `serve` run the same hooks, with their own config (`active`)."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path

from markupsafe import Markup

from generator import ReportError
from generator.config import Config
from generator.site.assets import copy_assets


_active: Config | None = None  # the report config of a build started by capcircuit
_allow_stale = False  # that build's --allow-stale
_render = True  # False: build docs/ as it is (a caller rendered and edited it)
_log = None  # and where it reports (warnings about what it publishes)


def report_config(mkdocs_config) -> Config:
    """The report config for this mkdocs build: capcircuit's, or report.yaml beside mkdocs.yml,
    rendering into mkdocs' docs_dir."""
    from generator.config import DEFAULT_CONFIG, load_config

    config = _active or load_config(Path(mkdocs_config.config_file_path).parent / DEFAULT_CONFIG)
    return config.model_copy(update={"paths": config.paths.model_copy(update={"docs": mkdocs_config.docs_dir})})


def on_config(config):
    from mkdocs.exceptions import PluginError

    from generator.render import nav, render

    log = logging.getLogger("mkdocs.plugins.capcircuit")
    try:
        report = report_config(config)
        if _render:
            render(report, log=_log or log.info, allow_stale=_allow_stale)
        copy_assets(Path(config.docs_dir))
    except ReportError as e:
        if _active is not None:
            raise  # capcircuit's own build: its CLI says it in one line
        raise PluginError(str(e)) from None  # plain `mkdocs build`: mkdocs says it in one line
    config.nav = nav(report)
    # the title is text, also in the theme's templates, which print site_name unescaped
    config.site_name = Markup.escape(report.title)
    return config


def on_serve(server, config, builder):
    """Live reload when a template, a result or the report config changes."""
    report = report_config(config)
    for path in (report.path("templates"), report.path("results"), report.root / "report.yaml"):
        if path.exists():
            server.watch(str(path))
    return server


@contextmanager
def active(config: Config, allow_stale: bool = False, log=None, render_pages: bool = True):
    """Make `config` the report config of the mkdocs hooks for a build started here."""
    global _active, _allow_stale, _log, _render
    _active, _allow_stale, _log, _render = config, allow_stale, log, render_pages
    try:
        yield
    finally:
        _active, _allow_stale, _log, _render = None, False, None, True
