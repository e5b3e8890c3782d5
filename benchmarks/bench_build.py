"""Time a whole report build on a model of GPT-2 small's exact shape (the budget of issues 10
and 20: 6 minutes for the whole build, plus 3 for the contrast and sentence_end experiments).

Not a test. A randomly initialised GPT2Config() model with the real GPT-2 tokenizer, saved to a
temporary folder, and the repository's report.yaml with that folder as its only model: every
experiment runs (nothing is reused), then the pages are rendered and the site is built, all in
the temporary folder, with the store's two threads. Prints each experiment's wall time and the
whole build's.

A random model's contrast families show no contrast, so contrast computes no circuit on it.
`--all-families` gives every family a circuit, as benchmarks/bench_contrast.py does (min_gap
lowered to a tiny value, the interval test skipped): a trained model's families may all have one.
A random model's corruptions of other positions also barely move its logit difference, so the
hypotheses experiment localises one of its three (the others are under its min_gap).
`--worst-case` adds those: every gate that a trained model may open is open, the build a
trained GPT-2 small would cost.

    python benchmarks/bench_build.py                   # the build as it is
    python benchmarks/bench_build.py --all-families    # every contrast family with a circuit
    python benchmarks/bench_build.py --worst-case      # and every hypotheses corruption localised
    python benchmarks/bench_build.py --only contrast   # some experiments (and their inputs), no site
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_sentence_end import save_gpt2_small_shaped  # noqa: E402
from generator.config import load_config  # noqa: E402
from generator.experiments import contrast  # noqa: E402
from generator.pipeline import run  # noqa: E402
from generator.site import build_site  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--all-families", action="store_true", help="every contrast family gets a circuit")
    parser.add_argument("--worst-case", action="store_true", help="--all-families, and every corruption localised")
    parser.add_argument("--only", action="append", default=[], help="run only this experiment (repeatable)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = save_gpt2_small_shaped(folder / "gpt2-small-shaped")
        data = yaml.safe_load((ROOT / "report.yaml").read_text())
        data["models"] = [str(model)]
        data["paths"] = {"templates": str(ROOT / "templates"), "mkdocs": str(ROOT / "mkdocs.yml")}
        if args.worst_case:
            args.all_families = True
            data["experiments"]["hypotheses"] = {**(data["experiments"].get("hypotheses") or {}), "min_gap": 1e-9}
        if args.all_families:
            data["experiments"]["contrast"] = {**(data["experiments"].get("contrast") or {}), "min_gap": 1e-9}
            summary = contrast.family_summary
            contrast.family_summary = lambda rows, p: {**summary(rows, p), "gap_ci": [1.0, 1.0]}
        (folder / "report.yaml").write_text(yaml.safe_dump(data))
        config = load_config(folder / "report.yaml")
        start = time.perf_counter()
        rows = run(config, only=tuple(args.only), log=lambda message: None)
        ran = time.perf_counter() - start
        if not args.only:  # with --only, the other pages have no results to draw
            build_site(config, log=lambda message: None)
        whole = time.perf_counter() - start
    for row in rows:
        if row["seconds"] is not None:  # with --only, the others did not run
            print(f"  {row['experiment']:<22} {row['seconds']:.1f} s")
    load = " ".join(f"{x:.1f}" for x in os.getloadavg())
    print(f"experiments {ran:.1f} s, with the site {whole:.1f} s ({whole / 60:.1f} min); load average now {load}")


if __name__ == "__main__":
    main()
