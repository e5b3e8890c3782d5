"""Path patching: which later heads read the strongest heads' output, and through which input.

For each sender head (the strongest by head-output patching, read from the `patching`
experiment) and each receiver input (query, key, value), the direct path from the sender into
every later head's input is patched alone, on the corrupted run: the sender's clean-minus-
corrupted output (z @ W_O) is added to that one receiver's input, with the receiver's
LayerNorm scale held at the corrupted run's, and every other component sees the corrupted run.
This is exactly TransformerLens's `get_act_patch_direct_path` (tested equal), computed on
generator.engine: all receivers of a layer in one batched run that starts at their layer and
position (TransformerLens runs one full forward per receiver). The metric is the normalised
mean logit difference (0 = corrupted, 1 = clean), so a cell is the share of the clean
behaviour carried by that single path.
"""

from __future__ import annotations

import torch
from transformer_lens.tools.analysis import get_act_patch_direct_path

from generator.engine import PatchingEngine
from generator.engine.paths import path_sources
from generator.experiments import Result
from generator.experiments.params import PathPatching as Params
from generator.heads import Head, head_name
from generator.metrics import logit_diff, mean_logit_diff_metric, normalisation_scale, num, to_list


def make_sweeper(model, batch):
    """(backend, sweep(sender, component) -> [n_layers, n_heads] mean logit difference, clean,
    corrupted): the engine where it implements the model, else TransformerLens's
    `get_act_patch_direct_path` (one forward per receiver)."""
    try:
        engine = PatchingEngine(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens)
    except NotImplementedError:
        _, clean_cache = model.run_with_cache(batch.clean_tokens)
        _, corrupted_cache = model.run_with_cache(batch.corrupted_tokens)
        metric = mean_logit_diff_metric(batch.answer_tokens)

        def tl_sweep(sender: Head, component: str) -> torch.Tensor:
            return get_act_patch_direct_path(
                model,
                batch.corrupted_tokens,
                clean_cache,
                corrupted_cache,
                metric,
                sender.layer,
                sender.head,
                component=component,
                verbose=False,
            )

        clean = logit_diff(model(batch.clean_tokens), batch.answer_tokens).mean()
        corrupted = logit_diff(model(batch.corrupted_tokens), batch.answer_tokens).mean()
        return "transformer_lens", tl_sweep, clean, corrupted
    return (
        "engine",
        lambda sender, c: path_sweep(engine, sender, c),
        engine.clean_logit_diff.mean(),
        engine.corrupted_logit_diff.mean(),
    )


def path_sweep(engine: PatchingEngine, sender: Head, component: str) -> torch.Tensor:
    """[n_layers, n_heads] mean logit difference with each path sender -> (layer, head).component
    patched alone; rows up to the sender's layer are the corrupted baseline (no path leads there)."""
    layers = range(sender.layer + 1, engine.n_layers)
    return engine.sweep(
        f"head_{component}", source=path_sources(engine, sender, component), source_shares_prefix=True, layers=layers
    )


@torch.no_grad()
def run(model, batch, params: Params, inputs: dict) -> Result:
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    backend, sweep, clean, corrupted = make_sweeper(model, batch)
    scale = normalisation_scale("path_patching", clean, corrupted)
    # a head in the last layer has no later heads to read it
    top = inputs["patching"].top_heads
    senders = [(Head.of(h), h.effect) for h in top if h.layer < n_layers - 1][: params.sources]

    results, paths = [], []
    for sender, effect in senders:
        grids = {}
        for c in params.components:
            recovered = to_list((sweep(sender, c) - corrupted) / scale)
            # rows up to the sender's layer are not measurements: stored as gaps (null)
            grids[c] = [[None] * n_heads if layer <= sender.layer else row for layer, row in enumerate(recovered)]
            paths += [
                {
                    "sender": sender.as_dict(),
                    "receiver": {"layer": layer, "head": h},
                    "component": c,
                    "effect": grids[c][layer][h],
                }
                for layer in range(sender.layer + 1, n_layers)
                for h in range(n_heads)
            ]
        name = f"paths_from_{head_name(sender)}"  # the page's figure of this sender's paths
        mine = [p for p in paths if p["sender"] == sender.as_dict()]
        best = max(mine, key=lambda p: abs(p["effect"]))
        results.append(
            {"sender": sender.as_dict(), "sender_effect": effect, "figure": name, "grids": grids, "strongest": best}
        )
    paths.sort(key=lambda p: abs(p["effect"]), reverse=True)
    totals = {c: num(sum(abs(p["effect"]) for p in paths if p["component"] == c)) for c in params.components}
    largest = abs(paths[0]["effect"]) if paths else 0.0
    metrics = {
        "clean_logit_diff": num(clean),
        "corrupted_logit_diff": num(corrupted),
        "n_layers": n_layers,
        "n_heads": n_heads,
        "backend": backend,
        "components": list(params.components),
        "senders": results,
        "top_paths": paths[: params.top_paths],
        # summed |effect| per receiver input: which input the senders mostly feed
        "total_by_component": totals,
        "main_component": max(totals, key=totals.get) if paths else None,
        "largest_effect": num(largest),
        "negligible": params.negligible,
        "all_negligible": largest < params.negligible,
    }
    return Result(metrics)
