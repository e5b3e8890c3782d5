"""Path patching: through which later component does each strong head's effect run?

For each sender head (a head whose output-patching effect, read from the `patching` experiment,
is at least `negligible`) and each receiver — every later head's query, key or value input,
every MLP that reads the sender's write (its own layer's too: the MLP reads the residual after
attention), and the logits (the direct path into the unembedding at the final position) — the
sender's clean-minus-corrupted output (z @ W_O) is added to that one receiver's own copy of the
residual stream, on the corrupted run, before the receiver's LayerNorm (recomputed); every
other component sees the corrupted run. This is the exact edge intervention: for heads
TransformerLens 4's `get_act_patch_direct_path` (tested equal), for MLPs and the logits the
same construction (tested against hooks on the model), and for every receiver the exact effect
of the circuit graph's edge sender -> receiver (tested equal to the circuit runner's). It runs
on generator.engine: all head receivers of a layer in one batched run that starts at their
layer, each MLP in a run that starts at its layer, the logits without any run. The metric is
the normalised mean logit difference (0 = corrupted, 1 = clean), so a path's number is the
share of the clean behaviour it carries alone; its share of the sender's own effect says which
route the sender's effect takes.
"""

from __future__ import annotations

import torch
from transformer_lens.tools.analysis import get_act_patch_direct_path

from generator.architecture import n_kv_heads
from generator.engine import PatchingEngine
from generator.engine.paths import logits_path, mlp_layers, mlp_sweep, path_sources
from generator.experiments import Result
from generator.experiments.params import PathPatching as Params
from generator.heads import Head, head_name
from generator.metrics import logit_diff, mean_logit_diff_metric, normalisation_scale, num, to_list
from generator.models import final_logits_only

HEAD_INPUTS = ("q", "k", "v")


class EngineSweeps:
    """Mean logit differences of every path from a sender, on generator.engine."""

    backend = "engine"

    def __init__(self, engine: PatchingEngine):
        self.engine = engine
        self.clean, self.corrupted = engine.clean_logit_diff.mean(), engine.corrupted_logit_diff.mean()

    def heads(self, sender: Head, component: str) -> torch.Tensor:
        """[n_layers, n_heads]; rows up to the sender's layer are the corrupted baseline."""
        e = self.engine
        layers = range(sender.layer + 1, e.n_layers)
        return e.sweep(
            f"head_{component}", source=path_sources(e, sender, component), source_shares_prefix=True, layers=layers
        )

    def mlps(self, sender: Head) -> tuple[torch.Tensor, range]:
        return mlp_sweep(self.engine, sender).mean(-1), mlp_layers(self.engine, sender)

    def logits(self, sender: Head) -> torch.Tensor:
        return logits_path(self.engine, sender).mean()


class HookSweeps:
    """The same paths with TransformerLens hooks, for models the engine does not implement:
    `get_act_patch_direct_path` for heads (one forward per receiver); for an MLP or the logits,
    the sender's write added at the receiver norm's input hook (the norm recomputes)."""

    backend = "transformer_lens"

    def __init__(self, model, batch):
        self.model, self.batch = model, batch
        last = final_logits_only(model)
        _, self.clean_cache = model.run_with_cache(batch.clean_tokens, **last)
        _, self.corrupted_cache = model.run_with_cache(batch.corrupted_tokens, **last)
        self.metric = mean_logit_diff_metric(batch.answer_tokens)
        self.clean = logit_diff(model(batch.clean_tokens, **last), batch.answer_tokens).mean()
        self.corrupted = logit_diff(model(batch.corrupted_tokens, **last), batch.answer_tokens).mean()

    def heads(self, sender: Head, component: str) -> torch.Tensor:
        return get_act_patch_direct_path(
            self.model,
            self.batch.corrupted_tokens,
            self.clean_cache,
            self.corrupted_cache,
            self.metric,
            sender.layer,
            sender.head,
            component=component,
            verbose=False,
        )

    def write(self, sender: Head) -> torch.Tensor:
        z = f"blocks.{sender.layer}.attn.hook_z"
        d = self.clean_cache[z][:, :, sender.head] - self.corrupted_cache[z][:, :, sender.head]
        return d @ self.model.W_O[sender.layer, sender.head]

    def through_norm(self, norm: str, delta: torch.Tensor, final_only: bool = False) -> torch.Tensor:
        """Mean logit difference with `delta` added at `norm`'s input only."""

        def add(x, hook):
            x = x.clone()
            if final_only:
                x[:, -1] += delta[:, -1]
            else:
                x += delta
            return x

        hooks = [(f"{norm}.hook_in", add)]
        return self.metric(
            self.model.run_with_hooks(self.batch.corrupted_tokens, fwd_hooks=hooks, **final_logits_only(self.model))
        )

    def mlps(self, sender: Head) -> tuple[torch.Tensor, range]:
        n = self.model.cfg.n_layers
        first = sender.layer + 1 if getattr(self.model.cfg, "parallel_attn_mlp", False) else sender.layer
        out = self.corrupted.expand(n).clone()
        delta = self.write(sender)
        for layer in range(first, n):
            out[layer] = self.through_norm(f"blocks.{layer}.ln2", delta)
        return out, range(first, n)

    def logits(self, sender: Head) -> torch.Tensor:
        return self.through_norm("ln_final", self.write(sender), final_only=True)


def make_sweeps(model, batch):
    """The engine where it implements the model, else TransformerLens hooks."""
    try:
        return EngineSweeps(PatchingEngine(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens))
    except NotImplementedError:
        return HookSweeps(model, batch)


def pick_senders(top_heads, params: Params) -> tuple[list, list]:
    """(senders, [negligible, beyond the quota]): the strongest heads by output patching whose
    |effect| reaches `negligible`, at most `sources`; the top heads left out for a negligible
    effect, and those left out because `sources` were already traced."""
    strong = [h for h in top_heads if abs(h.effect) >= params.negligible]
    weak = [h for h in top_heads if abs(h.effect) < params.negligible]
    left_out = [[{"sender": Head.of(h).as_dict(), "effect": h.effect} for h in heads] for heads in (weak, strong)]
    return [(Head.of(h), h.effect) for h in strong[: params.sources]], [left_out[0], left_out[1][params.sources :]]


def route(paths: list[dict], sender_effect: float, negligible: float) -> list[dict]:
    """The receivers through which the sender's effect runs: its paths carrying at least
    `negligible` alone, strongest first, each with its share of the sender's whole effect."""
    kept = sorted((p for p in paths if abs(p["effect"]) >= negligible), key=lambda p: abs(p["effect"]), reverse=True)
    return [{**p, "share": num(p["effect"] / sender_effect)} for p in kept]


@torch.no_grad()
def run(model, batch, params: Params, inputs: dict) -> Result:
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    sweeps = make_sweeps(model, batch)
    clean, corrupted = sweeps.clean, sweeps.corrupted
    scale = normalisation_scale("path_patching", clean, corrupted)
    senders, (passed_over, beyond_quota) = pick_senders(inputs["patching"].top_heads, params)
    # under grouped-query attention a key or value is shared by several query heads: a path
    # into one query head's key or value is not defined (TransformerLens refuses it too)
    kinds = [c for c in params.components if c not in ("k", "v") or n_kv_heads(model) == n_heads]
    left_out = [c for c in params.components if c not in kinds]

    def recovered(x):
        return (x - corrupted) / scale

    results, paths = [], []
    for sender, effect in senders:
        mine, grids = [], {}
        later_heads = sender.layer < n_layers - 1  # a last-layer head has no later head to read it
        for c in (c for c in kinds if c in HEAD_INPUTS and later_heads):
            grid = to_list(recovered(sweeps.heads(sender, c)))
            # rows up to the sender's layer are not measurements: stored as gaps (null)
            grids[c] = [[None] * n_heads if layer <= sender.layer else row for layer, row in enumerate(grid)]
            mine += [
                {"receiver": {"kind": c, "layer": layer, "head": h}, "effect": grids[c][layer][h]}
                for layer in range(sender.layer + 1, n_layers)
                for h in range(n_heads)
            ]
        mlps = None
        if "mlp" in kinds:
            values, reached = sweeps.mlps(sender)
            values = to_list(recovered(values))
            mlps = [values[layer] if layer in reached else None for layer in range(n_layers)]
            mine += [{"receiver": {"kind": "mlp", "layer": layer}, "effect": mlps[layer]} for layer in reached]
        direct = None
        if "logits" in kinds:
            direct = num(recovered(sweeps.logits(sender)))
            mine.append({"receiver": {"kind": "logits"}, "effect": direct})
        mine = [{"sender": sender.as_dict(), **p} for p in mine]
        paths += mine
        best = max(mine, key=lambda p: abs(p["effect"]))
        results.append(
            {
                "sender": sender.as_dict(),
                "sender_effect": effect,
                "figure": f"paths_from_{head_name(sender)}",  # the page's figure of this sender's paths
                "grids": grids,
                "mlps": mlps,
                "logits": direct,
                "strongest": best,
                "route": route(mine, effect, params.negligible),
            }
        )
    paths.sort(key=lambda p: abs(p["effect"]), reverse=True)
    # only the kinds with a receiver (a one-layer model has no later head)
    present = [c for c in kinds if any(p["receiver"]["kind"] == c for p in paths)]
    totals = {c: num(sum(abs(p["effect"]) for p in paths if p["receiver"]["kind"] == c)) for c in present}
    largest = abs(paths[0]["effect"]) if paths else 0.0
    metrics = {
        "clean_logit_diff": num(clean),
        "corrupted_logit_diff": num(corrupted),
        "n_layers": n_layers,
        "n_heads": n_heads,
        "backend": sweeps.backend,
        "components": kinds,
        "left_out": left_out,
        "senders": results,
        "passed_over": passed_over,
        "beyond_quota": beyond_quota,
        "top_paths": paths[: params.top_paths],
        # summed |effect| per receiver kind: which kind of reader the senders mostly feed
        "total_by_component": totals,
        "main_component": max(totals, key=totals.get) if paths else None,
        "largest_effect": num(largest),
        "negligible": params.negligible,
        "all_negligible": largest < params.negligible,
    }
    return Result(metrics)
