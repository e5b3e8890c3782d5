"""The code part of a result's cache key: a hash of the experiment module's source and of every
generator module it imports, transitively. Figures (generator.figures) are imported by no
experiment, so how a page looks is in no key."""

from __future__ import annotations

import ast
import functools
import hashlib
from pathlib import Path

from generator.store import digest

PACKAGE_DIR = Path(__file__).parent

# Declarations, not computation: the registry (a row's task, params and `after` are in the key
# themselves) and the params classes (the validated values are in the key). Left out of the
# code fingerprint so that adding an experiment's row or parameters re-runs no other experiment.
DECLARATIONS = ("generator.experiments", "generator.experiments.params")


def source_fingerprint(module_name: str) -> str:
    """Hash of a module's source and of every generator module it imports, transitively
    (DECLARATIONS aside)."""
    return digest(sorted(_sources(module_name).items()))


def source_modules(module_name: str) -> set[str]:
    """The generator modules a result's code key covers."""
    return set(_sources(module_name))


def _sources(module_name: str) -> dict[str, str]:
    """{module: hash of its source} over a module and its generator imports.

    Hand-written because no library answers "which of my own files does this result depend
    on" without importing them; we parse imports statically so the check loads no torch."""
    seen: dict[str, str] = {}
    todo = [module_name]
    while todo:
        name = todo.pop()
        path = _module_path(name)
        if name in seen or path is None or name in DECLARATIONS:
            continue
        stat = path.stat()
        seen[name], imports = _parsed(str(path), stat.st_mtime_ns, stat.st_size)
        todo.extend(imports)
    return seen


@functools.lru_cache(maxsize=1024)
def _parsed(path: str, mtime_ns: int, size: int) -> tuple[str, tuple[str, ...]]:
    """(hash of a file's source, the generator modules it imports). Cached by the file's
    modification time and size: every status and build asks for each experiment's sources,
    and parsing them all again took seconds per build."""
    source = Path(path).read_text()
    imports = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("generator"):
            imports.append(node.module)
            imports.extend(f"{node.module}.{a.name}" for a in node.names)
        elif isinstance(node, ast.Import):
            imports.extend(a.name for a in node.names if a.name.startswith("generator"))
    return hashlib.sha256(source.encode()).hexdigest(), tuple(imports)


def _module_path(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != "generator":
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None
