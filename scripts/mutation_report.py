"""Kill rate per module of the last `make mutation` (read from each set's results,
.mutation/<set>/mutants/**/*.meta), without the survivors judged equivalent
(scripts/mutation_equivalent.txt: one mutant name per line, then why). A mutant with no test
reaching it counts as a survivor.

    python scripts/mutation_report.py [--min 90]
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

from mutation_set import FOLDER, ROOT, SCOPE

KILLED = {1, 3, 37}  # test failed, pytest internal error, caught by the type check
TIMEOUT = {36, 24, -24, 152, 255}


def equivalent() -> dict[str, str]:
    path = ROOT / "scripts" / "mutation_equivalent.txt"
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines() if path.exists() else []:
        if line.strip() and not line.startswith("#"):
            name, _, why = line.partition(" ")
            out[name] = why.strip()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--min", type=float, default=0.0, help="fail below this kill rate (percent) on any module")
    args = ap.parse_args()
    metas = sorted(FOLDER.glob("*/mutants/**/*.py.meta"))
    if not metas:
        print("no mutmut results: run `make mutation` first")
        return 1
    skip = equivalent()
    counts: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    survivors, stale = [], []
    for meta in metas:
        module = "/".join(meta.relative_to(FOLDER).parts[2:]).removesuffix(".meta")  # <set>/mutants/<path>
        for name, code in json.loads(meta.read_text())["exit_code_by_key"].items():
            function = name.rpartition(".")[2].removeprefix("x_").partition("__mutmut_")[0]
            if module in SCOPE and function.rpartition("ǁ")[2] not in SCOPE[module]:
                continue
            c = counts[
                module
                + (" (keys)" if module.endswith("pipeline.py") else "")
                + (" (validation)" if module.endswith("store.py") else "")
            ]
            c["total"] += 1
            if name in skip:
                c["equivalent"] += 1
                if code in KILLED:  # mutmut numbers a function's mutants in order: code moved
                    stale.append(name)
            elif code in KILLED:
                c["killed"] += 1
            elif code in TIMEOUT:
                c["timeout"] += 1
            elif code is None:
                c["unchecked"] += 1
            elif code in (5, 33):
                c["no tests"] += 1
                survivors.append(name)
            else:
                c["survived"] += 1
                survivors.append(name)
    worst = 100.0
    head = ("mutants", "killed", "timeout", "equiv", "alive", "no tests", "unchecked", "kill rate")
    print(f"{'module':48} " + " ".join(f"{h:>9}" for h in head))
    for module, c in sorted(counts.items()):
        judged = c["total"] - c["equivalent"] - c["unchecked"]
        rate = 100 * (c["killed"] + c["timeout"]) / judged if judged else float("nan")
        worst = min(worst, rate) if judged else worst
        print(
            f"{module:48} "
            + " ".join(
                f"{c[k]:9}" for k in ("total", "killed", "timeout", "equivalent", "survived", "no tests", "unchecked")
            )
            + f" {rate:8.1f}%"
        )
    if survivors:
        print(f"\n{len(survivors)} survivors (`mutmut show NAME` shows one):")
        print("\n".join(f"  {s}" for s in survivors))
    if stale:
        print(f"\n{len(stale)} listed as equivalent but killed: the list names another mutant now (check it):")
        print("\n".join(f"  {s}" for s in stale))
    return 1 if worst < args.min or stale else 0


if __name__ == "__main__":
    sys.exit(main())
