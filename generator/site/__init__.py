"""The static site: `mkdocs build --strict` into a staging folder swapped in on success, and
`mkdocs serve`. The other jobs have a module each: `fence` (figures as fences in the markdown,
elements in the HTML), `assets` (the JS bundles copied from installed packages) and `hook`
(the mkdocs hooks that render the pages before each build).
The report uses no math typesetting (no engine to bundle): formulas are plain text."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import socket
from pathlib import Path

from generator import ReportError
from generator.config import Config
from generator.files import check_writable, shown
from generator.site import swap
from generator.site.hook import active

def mkdocs_config(config: Config, **overrides):
    from mkdocs.config import load_config
    from mkdocs.exceptions import ConfigurationError

    config_file = config.path("mkdocs")
    if not config_file.exists():
        raise ReportError(f"mkdocs config {config_file} does not exist (paths.mkdocs in the report config)")
    docs = config.path("docs")
    check_writable(docs, "write pages", "paths.docs")  # mkdocs requires docs_dir to exist before the hooks run
    options = {"docs_dir": str(docs), "site_dir": str(config.path("site")), **overrides}
    try:
        return load_config(config_file=str(config_file), **options)
    except ConfigurationError as e:
        raise ReportError(config_problem(config_file, e)) from None


def config_problem(config_file: Path, e: Exception) -> str:
    """mkdocs' own config error in one line: a YAML error as the file, the line and the problem
    (mkdocs prints PyYAML's four-line message with its markers)."""
    import yaml

    cause = e.__cause__ or e.__context__
    if isinstance(cause, yaml.MarkedYAMLError):
        mark = cause.problem_mark or cause.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        return f"mkdocs config {shown(config_file)} is not valid YAML{where}: {cause.problem or cause.context}"
    return f"mkdocs config {shown(config_file)}: {' '.join(str(e).split())}"


class _Warnings(logging.Handler):
    """Keeps mkdocs' warnings, so that a strict build's failure can say what they were."""

    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record):
        self.messages.append(" ".join(record.getMessage().split()))


def build_site(
    config: Config, log=print, site_url: str | None = None, allow_stale: bool = False, render_pages: bool = True
) -> Path:
    """Render the pages and `mkdocs build --strict` into the configured site folder, running
    no experiment. `site_url` (else mkdocs.yml's, from $CAPCIRCUIT_SITE_URL) is where the site
    will be served: material's instant navigation and the sitemap need it. `render_pages=False`
    builds docs/ as it stands (tests that add to the rendered pages).

    mkdocs empties site_dir first and fails a strict build only at the end, so it builds into
    a staging folder beside site/ that replaces site/ only when the build succeeded: a failed
    build leaves the last good site as it was."""
    from mkdocs.commands.build import build
    from mkdocs.exceptions import Abort, ConfigurationError, PluginError
    from pymdownx.superfences import SuperFencesException

    site = config.path("site")
    check_writable(site.parent, f"build {site.name}/", "paths.site")  # the staging folder goes beside it
    swap.recover(site, log)  # what a killed build left: site/ restored, its folders removed
    staging = swap.staging(site)
    warnings = _Warnings()
    logging.getLogger("mkdocs").addHandler(warnings)
    try:
        with active(config, allow_stale, log, render_pages):
            overrides = {"site_url": site_url} if site_url else {}
            build(mkdocs_config(config, strict=True, site_dir=str(staging), **overrides))
        swap.swap_in(staging, site)
    except (Abort, ConfigurationError, PluginError, SuperFencesException) as e:
        detail = f": {warnings.messages[0]}" if warnings.messages else ""
        more = f" (and {len(warnings.messages) - 1} more warnings)" if len(warnings.messages) > 1 else ""
        raise ReportError(f"mkdocs build --strict failed: {e}{detail}{more}") from None
    finally:
        logging.getLogger("mkdocs").removeHandler(warnings)
        shutil.rmtree(staging, ignore_errors=True)
    log(f"built site in {shown(site)}")
    return site


def serve(config: Config, dev_addr: str = "127.0.0.1:8000", allow_stale: bool = False) -> None:
    """`mkdocs serve` (it builds into a temporary folder of its own; site/ is not touched)."""
    from mkdocs.commands.serve import serve as mkdocs_serve

    host, _, port = dev_addr.rpartition(":")
    if not host or not port.isdigit():
        raise ReportError(f"--dev-addr {dev_addr!r}: use HOST:PORT, e.g. 127.0.0.1:8000")
    if not 1 <= int(port) <= 65535:
        raise ReportError(f"--dev-addr {dev_addr!r}: the port must be 1 to 65535, e.g. 127.0.0.1:8000")
    check_port(host, int(port))
    mkdocs_config(config)  # its errors in one line, before the server starts
    with active(config, allow_stale):
        mkdocs_serve(config_file=str(config.path("mkdocs")), dev_addr=dev_addr, docs_dir=str(config.path("docs")))


def check_port(host: str, port: int) -> None:
    """Fail before the first build, not after it, when the address cannot be served on."""
    try:
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host.strip("[]"), port))
    except OSError as e:
        if e.errno == errno.EADDRINUSE:
            raise ReportError(
                f"cannot serve on {host}:{port}: the port is in use (another `capcircuit serve`?); "
                f"stop it or pass --dev-addr {host}:{port + 1}"
            ) from None
        raise ReportError(f"cannot serve on {host}:{port}: {e.strerror or e}; pass another --dev-addr") from None
