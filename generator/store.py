"""The results store: one JSON file per (model, experiment), written atomically, keyed by a
hash of everything that determines the result, and validated when read: a record that does
not parse, lacks a field, holds a non-finite number or does not match its own key is a
StoreError naming the file, the problem and the fix, never a page. Importing this module
never imports torch, so rendering from a committed store works on a machine without it."""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import re
from pathlib import Path
from typing import Any

from generator import ReportError, schemas
from generator.files import check_free_space, check_writable, shown, write_all

try:
    import fcntl
except ImportError:  # Windows: no flock; saves are then only atomic, not serialised
    fcntl = None


def dumps(data: Any) -> str:
    """Deterministic JSON: sorted keys, fixed separators, a final newline."""
    return json.dumps(data, sort_keys=True, indent=1, ensure_ascii=False, allow_nan=False) + "\n"


def digest(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


class StoreError(ReportError):
    """A stored file that cannot be used. `problem` alone is what `status` shows."""

    def __init__(self, path: Path, problem: str, fix: str):
        self.path, self.problem, self.fix = path, problem, fix
        super().__init__(f"{shown(path)}: {problem}; {fix}")


RECORD_FIELDS = {"key": str, "key_parts": dict, "provenance": dict, "metrics": dict}
PROVENANCE_FIELDS = ("generator", "config", "device", "seed", "dtype", "model", "versions")
TIMING_FIELDS = {"wall_s", "parts_s"}
# free disk space `run` asks for before running anything: a model's results take well under a
# megabyte on the organisms and a few on GPT-2 small (patching by position, the circuit's edges)
FREE_SPACE = 16_000_000
NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]*")


class Store:
    """results/<model>/<experiment>.json (+ .timing.json, which varies run to run)."""

    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, model: str, experiment: str, suffix: str = ".json") -> Path:
        # model: a slug (generator.models.slug); experiment: a registry name. Checked again
        # here so that no name, however it got here, reads or writes outside the store.
        for kind, name in (("model folder", model), ("experiment", experiment)):
            if not NAME.fullmatch(name) or name in (".", ".."):
                raise ReportError(f"{kind} name {name!r} cannot be a file name in the results store")
        return self.root / model / f"{experiment}{suffix}"

    # ---- reading -------------------------------------------------------------------------

    def read(self, model: str, experiment: str) -> dict | None:
        """The stored record, validated (with its timing file); None when there is none; a
        StoreError when it cannot be used."""
        path = self.path(model, experiment)
        if not path.exists():
            return None
        fix = f"re-run with `capcircuit run --only {experiment} --force`"
        record = read_json(path, fix)
        if outdated(record):  # an older capcircuit's record: stale (its key_parts differ), not corrupt
            return {"key_parts": record["key_parts"], "outdated": record["key_parts"].get("schema", 1)}
        problem = record_problem(record, experiment)
        if problem:
            raise StoreError(path, problem, fix)
        self.timing(model, experiment)  # a record never lacks its timing (see save)
        if "skipped" in record:  # the experiment cannot run on this model: no metrics, a reason
            return {**record, "metrics": None}
        return {**record, "metrics": schemas.validate(experiment, record["metrics"])}

    def load(self, model: str, experiment: str) -> dict:
        """The stored record, validated; a ReportError naming the file when it is missing or
        cannot be used."""
        record = self.read(model, experiment)
        if record is None:
            raise StoreError(
                self.path(model, experiment), "no stored result", f"run `capcircuit run --only {experiment}`"
            )
        if "outdated" in record:
            raise StoreError(
                self.path(model, experiment),
                f"written under result schema {record['outdated']} (this capcircuit reads {schemas.SCHEMA_VERSION})",
                f"re-run it with `capcircuit run --only {experiment}`",
            )
        return record

    def inspect(self, model: str, experiment: str) -> tuple[dict | None, str | None]:
        """(record or None, None), or (None, why it is corrupt): for `status` and planning."""
        try:
            return self.read(model, experiment), None
        except StoreError as e:
            where = "" if e.path == self.path(model, experiment) else f"{e.path.name}: "
            return None, where + e.problem

    def timing(self, model: str, experiment: str) -> dict:
        """The run's timing ({"wall_s": s, "parts_s": {...}}), validated."""
        path = self.path(model, experiment, ".timing.json")
        fix = f"re-run with `capcircuit run --only {experiment} --force` (it is written with the result)"
        if not path.exists():
            raise StoreError(path, "missing (every stored result has one)", fix)
        timing = read_json(path, fix)
        problem = timing_problem(timing)
        if problem:
            raise StoreError(path, problem, fix)
        return timing

    # ---- writing -------------------------------------------------------------------------

    def save(self, model: str, experiment: str, record: dict, timing: dict) -> None:
        """Write a record and its timing under the store's lock, so that two processes saving
        the same result do not interleave their pairs of files."""
        for what, problem in (("result", record_problem(record, experiment)), ("timing", timing_problem(timing))):
            if problem:  # never write what reading would reject
                raise ReportError(f"experiment {experiment}: its {what} cannot be stored: {problem}")
        with self.lock():
            # one unit: both temp files are written before either is renamed, so a failed write
            # (a full disk) replaces neither; the timing is renamed first, so a record never lacks it
            write_all(
                {
                    self.path(model, experiment, ".timing.json"): dumps(timing),
                    self.path(model, experiment): dumps(record),
                }
            )

    @contextlib.contextmanager
    def lock(self):
        """An exclusive lock on the store (results/.lock, flock: released when the process dies)."""
        self.root.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            yield
            return
        with open(self.root / ".lock", "a") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    def check_writable(self, models: list[str]) -> None:
        """Fail now, not after an experiment has run for minutes, when results cannot be saved."""
        for folder in [self.root] + [self.root / model for model in models]:  # the root holds the lock
            check_writable(folder, "save results", "paths.results")
        check_free_space(self.root, FREE_SPACE, "save results", "paths.results")


def read_json(path: Path, fix: str) -> Any:
    """A JSON file's data, or a StoreError saying how it is broken (NaN and Infinity parse
    here; record_problem rejects them with where they are)."""
    try:
        data = path.read_bytes()
    except OSError as e:
        raise StoreError(path, f"cannot be read ({e.strerror or e})", "check its permissions") from None
    if not data.strip():
        raise StoreError(path, "empty file", fix)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise StoreError(path, f"not UTF-8 text (byte 0x{data[e.start]:02x} at byte {e.start})", fix) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        at = len(text[: e.pos].encode())
        body = text.rstrip()
        if e.pos >= len(body) or e.msg.startswith("Unterminated string") or not body.endswith(("}", "]")):
            problem = f"truncated JSON at byte {len(data)} (the file ends before its JSON does)"
        else:
            problem = f"invalid JSON at byte {at} (line {e.lineno}, column {e.colno}): {e.msg}"
        raise StoreError(path, problem, fix) from None
    except RecursionError:
        raise StoreError(path, "JSON nested too deeply", fix) from None


def outdated(record: Any) -> bool:
    """A record of an older result schema (an older capcircuit wrote it): read as stale, so
    that `run` replaces it and publishing refuses it, rather than called corrupt."""
    if not isinstance(record, dict) or not isinstance(record.get("key_parts"), dict):
        return False
    return record["key_parts"].get("schema", 1) != schemas.SCHEMA_VERSION


def record_problem(record: Any, experiment: str) -> str | None:
    """What is wrong with a result record, or None: the fields (key, key_parts, provenance,
    metrics), a key that matches its key_parts, finite numbers, and metrics that match the
    experiment's declared schema (generator.schemas)."""
    if not isinstance(record, dict):
        return f"holds a JSON {_json_type(record)}, not a result record (an object with {', '.join(RECORD_FIELDS)})"
    missing = [f for f in RECORD_FIELDS if f not in record]
    if missing:
        return f"not a result record: no {', '.join(missing)}"
    extra = sorted(set(record) - set(RECORD_FIELDS) - {"skipped"})
    if extra:
        return f"not a result record: unexpected field {', '.join(extra)}"
    for name, kind in RECORD_FIELDS.items():
        if not isinstance(record[name], kind):
            return f"{name} is a JSON {_json_type(record[name])}, not {'a string' if kind is str else 'an object'}"
    missing = [f for f in PROVENANCE_FIELDS if f not in record["provenance"]]
    if missing:
        return f"provenance has no {', '.join(missing)}"
    where = non_finite(record)
    if where:
        return f"non-finite number {where[1]} at {where[0]}"
    try:
        key = digest(record["key_parts"])
    except (TypeError, ValueError, RecursionError):
        return "key_parts cannot be hashed"
    if record["key"] != key:
        return "its key does not match its key_parts (was it edited by hand?)"
    if "skipped" in record:
        if not isinstance(record["skipped"], str) or not record["skipped"].strip() or record["metrics"]:
            return "a skipped record holds a reason (skipped: text) and no metrics"
        return None
    try:  # as it will be read back: JSON (a tuple is then a list)
        schemas.validate(experiment, json.loads(json.dumps(record["metrics"])))
    except ValueError as e:
        return str(e)
    return None


def timing_problem(timing: Any) -> str | None:
    if not isinstance(timing, dict):
        return f"holds a JSON {_json_type(timing)}, not a timing object ({{'wall_s': seconds}})"
    extra = sorted(set(timing) - TIMING_FIELDS)
    if extra or "wall_s" not in timing:
        return f"not a timing object: {'unexpected ' + ', '.join(extra) if extra else 'no wall_s'}"
    parts = timing.get("parts_s", {})
    if not isinstance(parts, dict):
        return "parts_s is not an object of seconds"
    for where, value in [("wall_s", timing["wall_s"]), *((f"parts_s.{k}", v) for k, v in parts.items())]:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
            return f"{where} is {value!r}, not a number of seconds"
    return None


def non_finite(value: Any, where: str = "") -> tuple[str, str] | None:
    """(where, value) of the first NaN or infinity in a JSON-like tree, else None."""
    todo = [(where, value)]
    while todo:
        where, value = todo.pop()
        if isinstance(value, float) and not math.isfinite(value):
            return where or "top level", str(value)
        if isinstance(value, dict):
            todo.extend((f"{where}.{k}" if where else str(k), v) for k, v in reversed(value.items()))
        elif isinstance(value, list):
            todo.extend((f"{where}[{i}]", v) for i, v in reversed(list(enumerate(value))))
    return None


def _json_type(value: Any) -> str:
    names = {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}
    return names.get(type(value), "number")


def stale_reasons(record: dict | None, key_parts: dict) -> list[str]:
    """Why a stored result no longer matches: the names of the key parts that changed."""
    if record is None:
        return ["no stored result"]
    old = record.get("key_parts", {})
    return [f"{k} changed" for k in sorted(key_parts) if old.get(k) != key_parts[k]] + [
        f"{k} removed" for k in sorted(set(old) - set(key_parts))
    ]
