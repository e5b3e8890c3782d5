"""Time the contrast experiment on a model of GPT-2 small's exact shape.

Not a test. A randomly initialised GPT2Config() model with the real GPT-2 tokenizer (random
weights cost what GPT-2's cost), booted through the project's loader, the contrast task's
minimal pairs and the notebook's 100 prompts (the transfer matrix's pronoun column), as the
pipeline builds them, and the experiment's default parameters. A random model's families may
show no contrast (a family without one gets no circuit), so by default every family is given
a circuit (`--all-families`: min_gap is lowered to a tiny value and the interval test is
skipped), the worst case for the time.

    OMP_NUM_THREADS=1 python benchmarks/bench_contrast.py              # one thread, as measured
    OMP_NUM_THREADS=1 python benchmarks/bench_contrast.py --families 1 # one family's circuit
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")


ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_sentence_end import model_and_tasks  # noqa: E402
from benchmarks.timed import Timer  # noqa: E402
from generator.experiments import contrast  # noqa: E402
from generator.experiments.params import Contrast  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--families", type=int, default=None, help="only the first N families get a circuit")
    parser.add_argument("--as-measured", action="store_true", help="no forced circuits: only families with a contrast")
    args = parser.parse_args(argv)
    model, batch, tasks = model_and_tasks(args, "contrast")
    task = tasks[contrast.TASK]
    if args.families is not None:  # keep only the first N families' pairs
        keep = set(task.spec.groups[: args.families])
        print(f"families timed: {sorted(keep)}", flush=True)
    params = Contrast() if args.as_measured else Contrast(min_gap=1e-9)
    if not args.as_measured:
        summary = contrast.family_summary
        contrast.family_summary = lambda rows, p: {**summary(rows, p), "gap_ci": [1.0, 1.0]}  # "has a contrast"
    if args.families is not None:
        has = contrast.family_summary
        contrast.family_summary = lambda rows, p: (
            has(rows, p) if rows[0]["family"] in keep else {**has(rows, p), "gap": 0.0, "gap_ci": [-1.0, 1.0]}
        )
    timer = Timer()
    for name in ("measure", "family_circuit", "movers", "transfer"):
        timer.wrap(contrast, name)
    start, cpu = time.perf_counter(), time.process_time()
    result = contrast.run(model, batch, params, {"tasks": tasks})
    wall, cpu = time.perf_counter() - start, time.process_time() - cpu
    with_circuit = [f["family"] for f in result.metrics["families"] if f["circuit"] is not None]
    print(f"contrast: wall {wall:.1f} s, cpu {cpu:.1f} s on {args.threads} thread(s); circuits: {with_circuit}")
    print(timer.report(), flush=True)
    print("inside (wall, s):", result.timings, flush=True)


if __name__ == "__main__":
    main()
