"""Prepare one mutation-testing set's folder, .mutation/<set>/, and print its mutants' name globs.

mutmut reads its configuration from ./pyproject.toml, keeps its results in ./mutants/ and takes
one list of tests per run. Each set ([tool.capcircuit.mutation.<set>] in pyproject.toml: its
modules and its tests) is therefore run from a folder of its own: links to the project's source,
tests and the files the tests read, and a pyproject.toml whose [tool.mutmut] is the project's
shared keys plus the set's modules and tests. `make mutation` runs every set this way.

    python scripts/mutation_set.py --list   # the sets' names
    python scripts/mutation_set.py SET      # prepare .mutation/SET/, print its mutant globs
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest's own dependency
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
FOLDER = ROOT / ".mutation"
# Modules of which only some functions are the numeric core (the rest is orchestration, tested
# end to end, not by the fast tests): only these functions' mutants are run and counted.
SCOPE = {
    "generator/pipeline.py": ("key_parts", "input_key", "comparable", "model_part"),
    "generator/store.py": (
        "dumps",
        "digest",
        "read_json",
        "outdated",
        "record_problem",
        "timing_problem",
        "non_finite",
        "_json_type",
        "stale_reasons",
    ),
}


def project() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]


def sets() -> dict[str, dict]:
    return project()["capcircuit"]["mutation"]


def targets(only_mutate: list[str]) -> list[str]:
    """mutmut name globs: every mutant of a module, or of SCOPE's functions only where a
    module has a SCOPE (its other functions are orchestration: running their mutants would
    only cost time)."""
    out = []
    for path in only_mutate:
        module = path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        out += [f"{module}.x_{f}__mutmut_*" for f in SCOPE[path]] if path in SCOPE else [f"{module}.*"]
    return out


def toml(value) -> str:
    """A TOML value of the kinds a mutmut configuration holds (a JSON string is a TOML string)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, list):
        return "[" + ", ".join(toml(v) for v in value) + "]"
    if isinstance(value, (str, int, float)):
        return json.dumps(value)
    raise TypeError(f"no TOML for {value!r}")


def prepare(name: str) -> Path:
    """The set's folder, its links and its pyproject.toml; mutmut's results there (mutants/)
    are dropped when the set's configuration changed (other modules or tests), since mutmut
    keeps the copies and verdicts of modules no longer listed."""
    tool, spec = project(), sets()[name]
    folder = FOLDER / name
    folder.mkdir(parents=True, exist_ok=True)
    mutmut = {
        **tool["mutmut"],
        "only_mutate": spec["only_mutate"],
        "pytest_add_cli_args_test_selection": spec["tests"],
    }
    sections = {"tool.mutmut": mutmut, "tool.pytest.ini_options": tool["pytest"]["ini_options"]}
    text = "# written by scripts/mutation_set.py from ../../pyproject.toml: edit that instead\n" + "".join(
        f"\n[{section}]\n" + "".join(f"{k} = {toml(v)}\n" for k, v in values.items())
        for section, values in sections.items()
    )
    config = folder / "pyproject.toml"
    if not config.exists() or config.read_text(encoding="utf-8") != text:
        shutil.rmtree(folder / "mutants", ignore_errors=True)
        config.write_text(text, encoding="utf-8")
    for path in [*mutmut["source_paths"], "tests/", *mutmut.get("also_copy", [])]:
        path = path.rstrip("/")
        link = folder / path
        if (ROOT / path).exists() and not link.is_symlink():
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(os.path.relpath(ROOT / path, link.parent))
    return folder


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("set", nargs="?", help="the set to prepare")
    ap.add_argument("--list", action="store_true", help="print the sets' names, and stop")
    args = ap.parse_args()
    known = sets()
    if args.list:
        print(" ".join(known))
        return 0
    if args.set not in known:
        print(f"mutation set {args.set!r}: the sets are {', '.join(known)}", file=sys.stderr)
        return 2
    prepare(args.set)
    print(" ".join(targets(known[args.set]["only_mutate"])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
