"""The six bugs issue 24 names, planted one at a time (text replaced in the source, the file
restored after), each followed by the tests that must catch it; prints CAUGHT or MISSED. A
pattern that no longer matches the code (it was rewritten) stops the script: update it.

    OMP_NUM_THREADS=1 PYTHONPATH=$PWD python scripts/named_mutants.py [part of a name ...]
"""

import subprocess
import sys
from pathlib import Path

MUTANTS = [
    (
        "bootstrap without replacement",
        "generator/circuit_stats.py",
        "draws = torch.randint(len(ids), (n, len(ids)), generator=generator)",
        "draws = torch.stack([torch.randperm(len(ids), generator=generator) for _ in range(n)])",
        "tests/test_circuit_stats_fast.py",
    ),
    (
        "held-out halves overlap by one",
        "generator/circuit_stats.py",
        "return picked, [i for i, p in enumerate(prompts) if p.name not in scoring]",
        "return picked, [picked[0]] + [i for i, p in enumerate(prompts) if p.name not in scoring]",
        "tests/test_circuit_stats_fast.py",
    ),
    (
        "seed dropped from the key",
        "generator/pipeline.py",
        '        "seed": config.seed,\n        "dtype"',
        '        "dtype"',
        "tests/test_keys.py",
    ),
    (
        "dtype dropped from the key",
        "generator/pipeline.py",
        '"dtype": config.dtype,\n        "schema"',
        '"schema"',
        "tests/test_keys.py",
    ),
    (
        "one-sided per-prompt tolerance",
        "generator/reproduction.py",
        "diffs = [abs(r.clean - v) for",
        "diffs = [(r.clean - v) for",
        "tests/test_reproduction_bounds.py",
    ),
    (
        "corruption replaces only the last",
        "generator/tasks/__init__.py",
        "corrupted = text.replace(old, new)",
        "corrupted = new.join(text.rsplit(old, 1))",
        "tests/test_task_corruption.py",
    ),
    (
        "acceptance operands swapped",
        "generator/organism/evaluate.py",
        "OPS[op](values[key], bound)",
        "OPS[op](bound, values[key])",
        "tests/test_organism_train.py::test_acceptance_is_the_pronoun_task_at_its_bounds",
    ),
]
only = sys.argv[1:]
for name, path, old, new, tests in MUTANTS:
    if only and not any(o in name for o in only):
        continue
    p = Path(path)
    src = p.read_text()
    assert src.count(old) == 1, (name, src.count(old))
    p.write_text(src.replace(old, new))
    try:
        r = subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", tests],
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        p.write_text(src)
    last = (r.stdout.strip().splitlines() or ["?"])[-1]
    print(f"{'CAUGHT' if r.returncode else 'MISSED'}  {name}: {tests}: {last}", flush=True)
