"""The results store: one JSON file per (model, experiment), written atomically, keyed by a
hash of everything that determines the result. Importing this module never imports torch,
so rendering from a committed store works on a machine without it."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

PACKAGE_DIR = Path(__file__).parent


def write_atomic(path: Path, text: str) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def dumps(data: Any) -> str:
    """Deterministic JSON: sorted keys, fixed separators, a final newline."""
    return json.dumps(data, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def source_fingerprint(module_name: str) -> str:
    """Hash of a module's source and of every generator module it imports, transitively.

    Hand-written because no library answers "which of my own files does this result depend
    on" without importing them; we parse imports statically so the check loads no torch."""
    seen: dict[str, str] = {}
    todo = [module_name]
    while todo:
        name = todo.pop()
        path = _module_path(name)
        if name in seen or path is None:
            continue
        source = path.read_text()
        seen[name] = hashlib.sha256(source.encode()).hexdigest()
        for node in ast.walk(ast.parse(source)):
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("generator"):
                todo.append(node.module)
                todo.extend(f"{node.module}.{a.name}" for a in node.names)
            elif isinstance(node, ast.Import):
                todo.extend(a.name for a in node.names if a.name.startswith("generator"))
    return digest(sorted(seen.items()))


def _module_path(name: str) -> Path | None:
    parts = name.split(".")
    if parts[0] != "generator":
        return None
    base = PACKAGE_DIR.joinpath(*parts[1:])
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


class Store:
    """results/<model>/<experiment>.json (+ .timing.json, which varies run to run)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, model: str, experiment: str, suffix: str = ".json") -> Path:
        return self.root / model / f"{experiment}{suffix}"

    def load(self, model: str, experiment: str) -> dict | None:
        path = self.path(model, experiment)
        if not path.exists():
            return None
        try:
            return json.loads(path.read_text())
        except json.JSONDecodeError:
            return None  # treated as missing: it will be re-run and replaced

    def save(self, model: str, experiment: str, record: dict, timing: dict) -> None:
        # temp files of a build that was killed mid-write are garbage: remove them
        for leftover in self.path(model, experiment).parent.glob(f".{experiment}.*.tmp"):
            leftover.unlink(missing_ok=True)
        # the record carries the cache key; write timing first so a record never lacks it
        write_atomic(self.path(model, experiment, ".timing.json"), dumps(timing))
        write_atomic(self.path(model, experiment), dumps(record))

    def timing(self, model: str, experiment: str) -> dict:
        path = self.path(model, experiment, ".timing.json")
        return json.loads(path.read_text()) if path.exists() else {}


def stale_reasons(record: dict | None, key_parts: dict) -> list[str]:
    """Why a stored result no longer matches: the names of the key parts that changed."""
    if record is None:
        return ["no stored result"]
    old = record.get("key_parts", {})
    return [f"{k} changed" for k in sorted(key_parts) if old.get(k) != key_parts[k]] + [
        f"{k} removed" for k in sorted(set(old) - set(key_parts))
    ]
