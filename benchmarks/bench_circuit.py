"""Time circuit discovery and path patching: this project's batched machinery against
TransformerLens's per-prompt tools, on a model of GPT-2 small's exact shape.

Not a test. On a randomly initialised GPT2Config() model with the real GPT-2 tokenizer (no
weights are downloaded; random weights cost exactly what GPT-2's cost), booted through the
project's loader (the seed's processing), and the notebook's 100 pronoun prompts:

1. ours: EAP-IG scoring (5 steps) over all prompts plus exact verification at MIB's ten sizes
   (one batched forward per size), and the whole circuit experiment (EAP, EAP-IG, exact node
   ranking, random orders, both rankings, the position-aware graph, the held-out half);
2. TransformerLens: `attribution_patch` (edge granularity, one prompt at a time; it has no
   EAP-IG) and `faithfulness` at the same ten sizes, prompt by prompt, on --tl-prompts prompts,
   with the time per prompt extrapolated to all of them (said so in the output); the largest
   difference of scores and of recovered fractions between the two is printed;
3. path patching from three heads into every later head's q, k and v: the engine on all
   prompts against `get_act_patch_direct_path` on one sender and component over
   --tl-path-prompts prompts (extrapolated), and their largest difference.

    python benchmarks/bench_circuit.py --threads 1             # on 2 shared CPU cores
    python benchmarks/bench_circuit.py --quick                 # 8 prompts, 1 TL prompt
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_patching import timed  # noqa: E402
from generator.engine import PatchingEngine  # noqa: E402
from generator.engine.graph import CircuitRunner  # noqa: E402
from generator.experiments import circuit, params  # noqa: E402
from generator.experiments.path_patching import path_sweep  # noqa: E402
from generator.heads import Head  # noqa: E402
from generator.metrics import logit_diff, mean_logit_diff_metric  # noqa: E402
from generator.models import load_model, resolve  # noqa: E402
from generator.tasks import build, load_task  # noqa: E402
from tests.conftest import subset  # noqa: E402

TOKENIZER = ROOT / "tests" / "fixtures" / "gpt2-tokenizer"  # the real GPT-2 BPE (MIT)


def gpt2_small_shaped(folder: Path, device: str):
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    torch.manual_seed(0)
    GPT2LMHeadModel(GPT2Config()).save_pretrained(folder)
    GPT2TokenizerFast.from_pretrained(str(TOKENIZER)).save_pretrained(folder)
    return load_model(resolve(str(folder)), device=device)


def ours(model, batch, device, fractions):
    """EAP-IG scores and the ten exact verifications, and their times."""
    runner, setup = timed(
        lambda: CircuitRunner(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens), device
    )
    scores, scoring = timed(lambda: runner.scores(ig_steps=5), device)
    evaluator = circuit.Evaluator(runner, position_aware=True)
    order = circuit.ranking(evaluator.edge_scores(scores), absolute=True)
    sizes = circuit.sizes_for(fractions, evaluator.n_edges)
    curve, verify = timed(lambda: evaluator.curve(order, sizes), device)
    print(
        f"ours: setup {setup:.1f} s, EAP-IG scoring (5 steps, {len(batch.clean_tokens)} prompts) {scoring:.1f} s, "
        f"ten exact verifications {verify:.1f} s; edges {evaluator.n_edges}",
        flush=True,
    )
    return runner, evaluator, order, sizes, curve, setup + scoring + verify


def transformer_lens(model, batch, runner, evaluator, order, sizes, n_prompts, device):
    """TL's per-prompt EAP and faithfulness on the first n_prompts prompts, checked against ours."""
    from transformer_lens.tools.analysis import EdgeAttributionConfig, attribution_patch, faithfulness

    g = runner.graph
    n_pos = runner.n_pos

    shape = (len(g.writers), len(g.readers), n_pos)
    circuits = []
    for n in sizes:
        flat = evaluator.edges[order[:n]]
        circuits.append(
            [
                g.to_transformer_lens(int(f) // (shape[1] * shape[2]), int(f) // shape[2] % shape[1], int(f) % shape[2])
                for f in flat
            ]
        )
    eap_time = faith_time = 0.0
    score_diff = recovered_diff = 0.0
    for i in range(n_prompts):
        one = slice(i, i + 1)
        clean, corrupted, answers = batch.clean_tokens[one], batch.corrupted_tokens[one], batch.answer_tokens[one]

        def metric(logits, answers=answers):
            return logit_diff(logits, answers)[0]

        def eap(clean=clean, corrupted=corrupted, metric=metric):
            return attribution_patch(model, clean, corrupted, metric, EdgeAttributionConfig(granularity="edge"))

        with torch.enable_grad():
            result, t = timed(eap, device)
        eap_time += t
        single = CircuitRunner(model, batch.clean_tokens[one], batch.corrupted_tokens[one], batch.answer_tokens[one])
        mine = single.scores(1)
        for (w, r), score in result.edge_scores.items():
            (wi, position), (ri, _) = g.from_transformer_lens(w), g.from_transformer_lens(r)
            score_diff = max(score_diff, abs(float(mine[wi, ri, position]) - score))
        ours_curve = circuit.Evaluator(single, True).curve(order, sizes)
        for k, edges in enumerate(circuits):
            f, t = timed(
                lambda edges=edges, clean=clean, corrupted=corrupted, metric=metric: faithfulness(
                    model, clean, corrupted, metric, edges
                ),
                device,
            )
            faith_time += t
            recovered = (ours_curve[k, 0] - single.corrupted_metric[0]) / (
                single.clean_metric[0] - single.corrupted_metric[0]
            )
            recovered_diff = max(recovered_diff, abs(float(recovered) - f.recovered))
        print(
            f"  TL prompt {i + 1}/{n_prompts}: EAP {eap_time:.1f} s, faithfulness {faith_time:.1f} s so far", flush=True
        )
    total = len(batch.clean_tokens)
    scale = total / n_prompts
    print(
        f"TransformerLens on {n_prompts} prompt(s): attribution_patch {eap_time:.1f} s, faithfulness x10 "
        f"{faith_time:.1f} s; extrapolated to {total} prompts: {eap_time * scale:.0f} s + {faith_time * scale:.0f} s "
        f"(EAP, not EAP-IG: TL has none)",
        flush=True,
    )
    print(f"largest |score difference| {score_diff:.2e}, largest |recovered difference| {recovered_diff:.2e}")
    return (eap_time + faith_time) * scale


def path_patching(model, batch, device, tl_prompts: int, components=("q", "k", "v")):
    """The engine on every prompt; TransformerLens (one full forward of the batch per receiver)
    on the first sender and component over tl_prompts prompts, checked against the engine on the
    same prompts, its time extrapolated to all senders, components and prompts (its cost grows
    with the batch; said so in the output)."""
    from transformer_lens.tools.analysis import get_act_patch_direct_path

    engine, setup = timed(
        lambda: PatchingEngine(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens), device
    )
    senders = [Head(layer, 0) for layer in (0, 3, 6)]  # three senders at different depths
    ours_time = setup
    for s in senders:
        for c in components:
            _, t = timed(lambda s=s, c=c: path_sweep(engine, s, c), device)
            ours_time += t
    print(
        f"path patching, {len(senders)} senders x q/k/v, {len(batch.clean_tokens)} prompts: engine "
        f"{ours_time:.1f} s (setup {setup:.1f} s)",
        flush=True,
    )
    if not tl_prompts:
        return
    few = subset(batch, list(range(tl_prompts)))
    small = PatchingEngine(model, few.clean_tokens, few.corrupted_tokens, few.answer_tokens)
    _, clean_cache = model.run_with_cache(few.clean_tokens)
    _, corrupted_cache = model.run_with_cache(few.corrupted_tokens)
    s, c = senders[0], components[0]
    with torch.no_grad():
        expected, tl_time = timed(
            lambda: get_act_patch_direct_path(
                model,
                few.corrupted_tokens,
                clean_cache,
                corrupted_cache,
                mean_logit_diff_metric(few.answer_tokens),
                s.layer,
                s.head,
                component=c,
                verbose=False,
            ),
            device,
        )
    diff = float((path_sweep(small, s, c)[s.layer + 1 :] - expected[s.layer + 1 :]).abs().max())
    # TL runs one forward per receiver (every head after the sender's layer), on the whole batch
    receivers = [(model.cfg.n_layers - 1 - r.layer) * model.cfg.n_heads for r in senders]
    total = tl_time / receivers[0] * sum(receivers) * len(components) * len(batch.clean_tokens) / tl_prompts
    print(
        f"TransformerLens get_act_patch_direct_path, {s.name}.{c} on {tl_prompts} prompts: {tl_time:.1f} s; "
        f"extrapolated to {len(senders)} senders x q/k/v x {len(batch.clean_tokens)} prompts: {total:.0f} s, "
        f"{total / ours_time:.0f}x the engine; largest |difference| {diff:.2e}",
        flush=True,
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--prompts", type=int, default=100)
    parser.add_argument("--tl-prompts", type=int, default=2)
    parser.add_argument("--tl-path-prompts", type=int, default=10)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--quick", action="store_true", help="8 prompts, 1 TL prompt")
    parser.add_argument("--skip-tl", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.prompts, args.tl_prompts = 8, 1
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch threads {torch.get_num_threads()}, device {args.device}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        model, load_time = timed(lambda: gpt2_small_shaped(Path(tmp), args.device), args.device)
    print(f"loaded a GPT-2-small-shaped model in {load_time:.1f} s", flush=True)
    task = build(load_task("pronoun"), model)
    batch = subset(task, [i * 100 // args.prompts for i in range(args.prompts)]) if args.prompts < 100 else task
    fractions = params.MIB_SIZES
    runner, evaluator, order, sizes, _, ours_total = ours(model, batch, args.device, fractions)
    exceptions = build(load_task("exceptions"), model)
    result, experiment = timed(
        lambda: circuit.run(model, batch, params.Circuit(), {"tasks": {"exceptions": exceptions}}), args.device
    )
    print(f"the whole circuit experiment: {experiment:.1f} s; parts {result.timings}", flush=True)
    if not args.skip_tl:
        tl_total = transformer_lens(model, batch, runner, evaluator, order, sizes, args.tl_prompts, args.device)
        print(
            f"EAP-IG + ten verifications, ours {ours_total:.1f} s vs TransformerLens's EAP + faithfulness "
            f"{tl_total:.0f} s (extrapolated): {tl_total / ours_total:.0f}x",
            flush=True,
        )
    path_patching(model, batch, args.device, 0 if args.skip_tl else args.tl_path_prompts)


if __name__ == "__main__":
    main()
