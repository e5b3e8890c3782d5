"""The mkdocs hooks (mkdocs.yml: `hooks: [generator/mkdocs_hooks.py]`), so that plain `mkdocs
build` / `mkdocs serve` work: before each build the pages are rendered from results/ into
docs/, the JS bundles are placed, and the navigation is derived from the experiment registry.
`capcircuit site` and `serve` run the same hooks, with their own config (`active`)."""

from __future__ import annotations

import logging
import shutil
from contextlib import contextmanager
from pathlib import Path

from markupsafe import Markup

from generator import ReportError
from generator.config import Config
from generator.site import swap
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
    global _serving
    _serving = True
    report = report_config(config)
    for path in (report.path("templates"), report.path("results"), report.root / "report.yaml"):
        if path.exists():
            server.watch(str(path))
    return server


# A plain `mkdocs build` empties site_dir before building and fails a strict build only at the
# end, so these hooks keep the last good site aside meanwhile (as `capcircuit site` builds beside
# it) and put it back when the build fails: (site_dir, where the last good site waits).
_kept: tuple[Path, Path] | None = None
_serving = False  # mkdocs serve builds into a temporary folder of its own: nothing to keep


def on_pre_build(config):
    """Plain `mkdocs build`: move the last good site aside before mkdocs empties site_dir."""
    global _kept
    if _active is not None or _serving:
        return  # capcircuit's own build stages beside site/ itself
    site = Path(config.site_dir)
    swap.recover(site, logging.getLogger("mkdocs.plugins.capcircuit").info)
    if site.is_dir() and any(site.iterdir()):
        kept = swap.kept(site)
        try:
            site.rename(kept)
        except OSError:
            return  # e.g. a mount point: mkdocs builds in place, as it does without this hook
        _kept = (site, kept)


def on_build_error(error):
    """The build failed (a strict warning, a broken page): the last good site goes back."""
    global _kept
    if _kept is not None:
        site, kept = _kept
        shutil.rmtree(site, ignore_errors=True)
        kept.rename(site)
        _kept = None


def on_shutdown():
    """The build succeeded (on_build_error put nothing back): the old site is dropped."""
    global _kept, _serving
    if _kept is not None:
        shutil.rmtree(_kept[1], ignore_errors=True)
        _kept = None
    _serving = False


@contextmanager
def active(config: Config, allow_stale: bool = False, log=None, render_pages: bool = True):
    """Make `config` the report config of the mkdocs hooks for a build started here."""
    global _active, _allow_stale, _log, _render
    _active, _allow_stale, _log, _render = config, allow_stale, log, render_pages
    try:
        yield
    finally:
        _active, _allow_stale, _log, _render = None, False, None, True
