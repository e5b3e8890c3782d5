"""Time the seed's exact patching suite: TransformerLens's sweeps vs generator.engine.

Not a test. On a randomly initialised model of exactly GPT-2 small's shape (GPT2Config() and
the real GPT-2 tokenizer; no weights are downloaded) and the seed's pronoun prompts, it runs
the seed's suite -- resid_pre, attn_out and mlp_out by layer x position, head outputs by
layer x head -- with ``transformer_lens.patching`` and with ``generator.engine`` in the same
process, and prints both times, their ratio and the largest absolute difference. It also times
attribution patching (gradient x activation difference, one clean forward and one corrupted
forward + backward through TransformerLens's hooks) as the floor for an approximation.

    python benchmarks/bench_patching.py                   # 100 prompts, device auto
    python benchmarks/bench_patching.py --quick           # smoke run, 8 prompts
    python benchmarks/bench_patching.py --tl-prompts 20   # TL side on 20 prompts only
    python benchmarks/bench_patching.py --threads 1       # on busy shared cores
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TQDM_DISABLE", "1")  # TransformerLens's sweeps draw progress bars

import torch  # noqa: E402
import yaml  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from generator.engine import PatchingEngine  # noqa: E402
from generator.metrics import logit_diff  # noqa: E402
from generator.patch_targets import TARGETS  # noqa: E402

TOKENIZER = ROOT / "tests" / "fixtures" / "gpt2-tokenizer"  # the real GPT-2 BPE (MIT)
TASK = ROOT / "generator" / "tasks" / "data" / "pronoun.yaml"
SUITE = ("resid_pre", "attn_out", "mlp_out", "head_out")
# The hook families each suite target reads, for attribution patching.
ATTRIBUTION_HOOKS = {
    "resid_pre": "hook_resid_pre",
    "attn_out": "hook_attn_out",
    "mlp_out": "hook_mlp_out",
    "head_out": "attn.hook_z",
}


def seed_prompts(n: int):
    """The seed's 100 pronoun prompts (5 templates x 20 names), ``n`` of them spread evenly."""
    spec = yaml.safe_load(TASK.read_text())
    rows = []
    for template in spec["templates"]:
        for group in spec["groups"].values():
            for name in group["names"]:
                rows.append((template.format(name=name), group["answers"]))
    picked = [rows[i * len(rows) // n] for i in range(n)] if n < len(rows) else rows
    old, new = spec["corruption"]["replace"], spec["corruption"]["with"]
    return [p for p, _ in picked], [p.replace(old, new) for p, _ in picked], [a for _, a in picked]


def gpt2_small_shaped(device: str):
    """A random-weight GPT-2 small (GPT2Config()) booted through the bridge, seed processing."""
    from transformer_lens.model_bridge import TransformerBridge
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as tmp:
        GPT2LMHeadModel(GPT2Config()).save_pretrained(tmp)
        GPT2TokenizerFast.from_pretrained(str(TOKENIZER)).save_pretrained(tmp)
        model = TransformerBridge.boot_transformers(tmp, device=device)
    model.enable_compatibility_mode(
        fold_ln=True,
        center_writing_weights=True,
        center_unembed=True,
        refactor_factored_attn_matrices=True,
    )
    return model


def tokens_for(model, n: int, device: str):
    clean, corrupted, answers = seed_prompts(n)
    clean_tokens = model.to_tokens(clean).to(device)
    corrupted_tokens = model.to_tokens(corrupted).to(device)
    ids = [[model.to_single_token(a) for a in pair] for pair in answers]
    return clean_tokens, corrupted_tokens, torch.tensor(ids, device=device)


def timed(fn, device: str):
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device == "cuda":
        torch.cuda.synchronize()
    return out, time.perf_counter() - start


def run_tl(model, clean_tokens, corrupted_tokens, answers, clean_cache, device):
    from transformer_lens import patching

    metric = lambda logits: logit_diff(logits, answers).mean()  # noqa: E731
    results, times = {}, {}
    for target in SUITE:
        sweep = getattr(patching, TARGETS[target].tl_sweep)
        with torch.no_grad():
            results[target], times[target] = timed(
                lambda sweep=sweep: sweep(model, corrupted_tokens, clean_cache, metric), device
            )
        print(f"  TL {target:10s} {times[target]:8.2f} s", flush=True)
    return results, times


def run_engine(model, clean_tokens, corrupted_tokens, answers, clean_cache, device, max_rows):
    times = {}
    engine, times["setup"] = timed(
        lambda: PatchingEngine(
            model,
            clean_tokens,
            corrupted_tokens,
            answers,
            clean_cache=clean_cache,
            max_rows=max_rows,
        ),  # fmt: skip
        device,
    )
    results = {}
    for target in SUITE:
        results[target], times[target] = timed(lambda target=target: engine.sweep(target), device)
    print(
        "  engine " + ", ".join(f"{k} {v:.2f} s" for k, v in times.items()),
        flush=True,
    )
    return results, times


def run_attribution(model, clean_tokens, corrupted_tokens, answers):
    """Gradient x (clean - corrupted) at every suite index: the linear approximation."""
    from transformer_lens.tools.analysis.attribution_patching import (
        cache_activation_and_gradient,
    )

    n_layers = model.cfg.n_layers
    names = [f"blocks.{l}.{h}" for h in ATTRIBUTION_HOOKS.values() for l in range(n_layers)]
    metric = lambda logits: logit_diff(logits, answers).mean()  # noqa: E731
    clean = cache_activation_and_gradient(model, clean_tokens, metric, names_filter=names, compute_gradient=False)
    corrupted = cache_activation_and_gradient(model, corrupted_tokens, metric, names_filter=names)
    estimates = {}
    for target, hook in ATTRIBUTION_HOOKS.items():
        per_layer = []
        for l in range(n_layers):
            name = f"blocks.{l}.{hook}"
            effect = (clean.activations[name] - corrupted.activations[name]) * corrupted.gradients[name]
            # [batch, pos, d] -> [pos]; [batch, pos, head, d_head] -> [head] (all positions)
            per_layer.append(effect.sum((0, 1, 3)) if target == "head_out" else effect.sum((0, 2)))
        estimates[target] = corrupted.metric + torch.stack(per_layer)
    return estimates


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    parser.add_argument("--prompts", type=int, default=100, help="seed prompts (default 100)")
    parser.add_argument("--quick", action="store_true", help="smoke run on 8 prompts")
    parser.add_argument(
        "--tl-prompts", type=int, default=None,
        help="run the TransformerLens side (and the engine again) on fewer prompts",
    )  # fmt: skip
    parser.add_argument("--skip-tl", action="store_true", help="time the engine only")
    parser.add_argument("--max-rows", type=int, default=None, help="engine batch budget")
    parser.add_argument(
        "--threads", type=int, default=None,
        help="torch intra-op threads (default torch's); on cores shared with other jobs, 1 "
        "avoids OpenMP threads spin-waiting on each other",
    )  # fmt: skip
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    n = 8 if args.quick else args.prompts
    n_tl = min(args.tl_prompts or n, n)
    max_rows = args.max_rows or (16384 if device == "cuda" else 2048)
    where = torch.cuda.get_device_name() if device == "cuda" else f"{torch.get_num_threads()} threads"
    print(
        f"device {device} ({where}), torch {torch.__version__}, prompts {n}, TL prompts {n_tl}, max_rows {max_rows}",
        flush=True,
    )

    model, load_s = timed(lambda: gpt2_small_shaped(device), device)
    print(f"model: GPT2Config() random weights, booted in {load_s:.1f} s", flush=True)

    clean_tokens, corrupted_tokens, answers = tokens_for(model, n, device)
    with torch.no_grad():
        (_, clean_cache), cache_s = timed(lambda: model.run_with_cache(clean_tokens), device)
    print(f"clean cache (shared input of both sides): {cache_s:.2f} s", flush=True)

    print(f"engine on {n} prompts:", flush=True)
    exact, engine_times = run_engine(model, clean_tokens, corrupted_tokens, answers, clean_cache, device, max_rows)
    engine_total = sum(engine_times.values())

    ratio_line = "TransformerLens: skipped (--skip-tl)"
    if not args.skip_tl:
        if n_tl < n:  # same prompts as the TL side, for a like-for-like ratio
            pick = torch.linspace(0, n - 1, n_tl).round().long().to(device)
            sub = tuple(t[pick] for t in (clean_tokens, corrupted_tokens, answers))
            with torch.no_grad():
                _, tl_cache = model.run_with_cache(sub[0])
            print(f"engine on the TL side's {n_tl} prompts:", flush=True)
            exact_tl, times_tl = run_engine(model, *sub, tl_cache, device, max_rows)
        else:
            sub, tl_cache = (clean_tokens, corrupted_tokens, answers), clean_cache
            exact_tl, times_tl = exact, engine_times
        print(f"TransformerLens on {n_tl} prompts:", flush=True)
        tl, tl_times = run_tl(model, *sub, tl_cache, device)
        tl_total = sum(tl_times.values())
        diffs = {t: float((tl[t].to(exact_tl[t]) - exact_tl[t]).abs().max()) for t in SUITE}
        print("max |TL - engine| per sweep: " + ", ".join(f"{t} {d:.2e}" for t, d in diffs.items()))
        engine_sub_total = sum(times_tl.values())
        ratio_line = (
            f"TransformerLens {tl_total:.1f} s vs engine {engine_sub_total:.2f} s on {n_tl} prompts: "
            f"{tl_total / engine_sub_total:.0f}x faster, max abs difference {max(diffs.values()):.2e}"
        )

    with torch.enable_grad():
        approx, attr_s = timed(lambda: run_attribution(model, clean_tokens, corrupted_tokens, answers), device)
    attr_err = max(float((approx[t] - exact[t]).abs().max()) for t in SUITE)

    print()
    print(f"engine (exact), {n} prompts: {engine_total:.2f} s")
    print(ratio_line)
    print(
        f"attribution patching (approximate floor), {n} prompts: {attr_s:.2f} s; "
        f"its largest error vs exact patching {attr_err:.3g} (logit-diff units)"
    )


if __name__ == "__main__":
    main()
