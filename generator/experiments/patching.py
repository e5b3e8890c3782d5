"""Activation patching, with attribution patching beside every sweep.

Each sweep runs the corrupted prompts (";") with one activation copied from the clean run
(".") and reports the mean logit difference, normalised so that 0 is the corrupted run and 1
the clean run: the notebook's residual stream, attention and MLP outputs by layer × position
and head outputs by layer × head, plus head outputs by layer × position × head and head values
and attention patterns (the value- vs pattern-patching scatter of the TransformerLens demo).
The targets are rows of generator/patch_targets.py. They run on generator.engine; for
architectures the engine does not implement, on TransformerLens's own sweeps (the result
records which).

Attribution patching approximates each sweep to first order from one clean forward and one
corrupted forward + backward: (clean − corrupted activation) · d(metric)/d(activation) at the
corrupted run, summed over the patched slice. Its Pearson and Spearman correlations with the
exact sweep show where the linear approximation holds. Activations and gradients come from
TransformerLens's `cache_activation_and_gradient`; its `attribution_patch` is not used because
its nodes are only head and MLP outputs, while the estimate sits beside every sweep.
"""

from __future__ import annotations

import einops
import torch
from transformer_lens import patching as tl_patching
from transformer_lens.tools.analysis.attribution_patching import cache_activation_and_gradient

from generator.architecture import n_kv_heads, per_query_head
from generator.engine import PatchingEngine
from generator.experiments import Result
from generator.experiments.params import Patching as Params
from generator.heads import Head, layer_group
from generator.metrics import logit_diff, mean_logit_diff_metric, normalisation_scale, num, to_list
from generator.models import final_logits_only
from generator.patch_targets import TARGETS


def make_engine(model, batch) -> PatchingEngine | None:
    """The fast exact engine where it implements the model's architecture, else None."""
    try:
        return PatchingEngine(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens)
    except NotImplementedError:
        return None


def sweep(engine, model, batch, clean_cache, target: str) -> torch.Tensor:
    """Mean logit difference with `target` patched clean -> corrupted at every index of the
    sweep: the engine's numbers where it runs, TransformerLens's otherwise (equal to 1e-5)."""
    if engine is not None:
        return engine.sweep(target)
    tl_sweep = getattr(tl_patching, TARGETS[target].tl_sweep)
    return tl_sweep(model, batch.corrupted_tokens, clean_cache, mean_logit_diff_metric(batch.answer_tokens))


def hook_names(model, targets) -> list[str]:
    return [f"blocks.{layer}.{TARGETS[t].hook}" for t in targets for layer in range(model.cfg.n_layers)]


def attribution(model, batch, targets, scale: float) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Attribution-patching estimate of each sweep, divided by `scale` (clean − corrupted mean
    logit difference) so it is on the normalised scale; and a mask of the cells whose clean and
    corrupted activations differ at all (elsewhere both exact and estimate are zero)."""
    names = hook_names(model, targets)
    metric = mean_logit_diff_metric(batch.answer_tokens)
    clean = cache_activation_and_gradient(model, batch.clean_tokens, metric, names, compute_gradient=False)
    with torch.enable_grad():
        corrupted = cache_activation_and_gradient(model, batch.corrupted_tokens, metric, names)
    out = {}
    for t in targets:
        estimate, differs = [], []
        for layer in range(model.cfg.n_layers):
            name = f"blocks.{layer}.{TARGETS[t].hook}"
            delta = clean.activations[name] - corrupted.activations[name]
            estimate.append(einops.reduce(delta * corrupted.gradients[name], TARGETS[t].reduce, "sum") / scale)
            differs.append(einops.reduce(delta.abs(), TARGETS[t].reduce, "sum") > 0)
        out[t] = (torch.stack(estimate), torch.stack(differs))
    return out


def correlations(exact: torch.Tensor, estimate: torch.Tensor, mask: torch.Tensor, min_points: int) -> dict:
    """Pearson and Spearman correlation over the cells where clean and corrupted differ; None
    where fewer than `min_points` cells (a correlation of 4 points says little) or a constant
    side leave them unreported."""
    x, y = exact[mask].double(), estimate[mask].double()
    result = {
        "n_cells": int(mask.sum()),
        "n_total": mask.numel(),
        "pearson": None,
        "spearman": None,
        "max_abs_error": num((exact - estimate).abs().max()) if mask.any() else 0.0,
    }
    if len(x) >= max(3, min_points) and x.std() > 0 and y.std() > 0:
        result["pearson"] = num(torch.corrcoef(torch.stack([x, y]))[0, 1])
        rx, ry = ranks(x), ranks(y)
        if rx.std() > 0 and ry.std() > 0:
            result["spearman"] = num(torch.corrcoef(torch.stack([rx, ry]))[0, 1])
    return result


def ranks(x: torch.Tensor) -> torch.Tensor:
    """Ranks with ties sharing their average rank (Spearman's convention)."""
    order = x.argsort()
    r = torch.empty_like(x)
    r[order] = torch.arange(len(x), dtype=x.dtype, device=x.device)
    for value in x.unique():  # average the ranks of tied values
        tied = x == value
        r[tied] = r[tied].mean()
    return r


def top_heads(head_out, head_v, head_pattern, k: int) -> list[dict]:
    """The k heads with the largest |effect| of output patching (the notebook's top_k = 10)."""
    n_layers, n_heads = head_out.shape
    rows = []
    for i in head_out.flatten().abs().argsort(descending=True)[:k].tolist():
        head = Head(*divmod(i, n_heads))
        rows.append(
            {
                **head.as_dict(),
                "group": layer_group(head.layer, n_layers),
                "effect": num(head_out[head]),
                "value": num(head_v[head]),
                "pattern": num(head_pattern[head]),
            }
        )
    return rows


def resid_flow(resid_pre: torch.Tensor, batch, params: Params) -> dict:
    """Where the resid_pre effect sits per layer: does information move between positions?
    The corrupted positions are where clean and corrupted tokens differ."""
    labels = batch.position_labels
    final = len(labels) - 1
    changed = sorted(set((batch.clean_tokens != batch.corrupted_tokens).nonzero()[:, 1].tolist()))
    dominant = resid_pre.abs().argmax(dim=1).tolist()
    moves_at = None
    if final not in changed:
        # first layer where the final position carries more of the effect than any corrupted one
        for layer in range(resid_pre.shape[0]):
            if resid_pre[layer, final].abs() > resid_pre[layer, changed].abs().max():
                moves_at = layer
                break
    final_effect = resid_pre[:, final]
    unchanged = float(resid_pre[:, : changed[0]].abs().max()) if changed[0] > 0 else 0.0
    return {
        "changed_positions": changed,
        "final_position": final,
        "changed_is_final": changed == [final],
        "dominant_by_layer": dominant,
        "moves_at_layer": moves_at,
        "final_effect_by_layer": to_list(final_effect),
        "final_effect_constant": float(final_effect.max() - final_effect.min()) < params.constant_range,
        "changed_effect_by_layer": to_list(resid_pre[:, changed].abs().max(dim=1).values),
        # positions before the first changed token see the same tokens in both runs
        "unchanged_max_effect": num(unchanged),
        "unchanged_is_noise": unchanged < params.noise,
    }


@torch.no_grad()
def run(model, batch, params: Params, inputs: dict) -> Result:
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    targets = list(params.targets)
    last = final_logits_only(model)
    names = hook_names(model, targets)
    clean_logits, clean_cache = model.run_with_cache(batch.clean_tokens, names_filter=names, **last)
    clean = logit_diff(clean_logits, batch.answer_tokens).mean()
    corrupted = logit_diff(model(batch.corrupted_tokens, **last), batch.answer_tokens).mean()
    scale = normalisation_scale("patching", clean, corrupted)

    engine = make_engine(model, batch)
    exact = {t: (sweep(engine, model, batch, clean_cache, t) - corrupted) / scale for t in targets}
    approx = attribution(model, batch, targets, scale)
    # under grouped-query attention the k / v sweeps are per key/value head: per query head here
    exact = {t: per_query_head(model, v, TARGETS[t].axes) for t, v in exact.items()}
    approx = {t: tuple(per_query_head(model, x, TARGETS[t].axes) for x in v) for t, v in approx.items()}
    agreement = {t: correlations(exact[t], *approx[t], params.min_correlation_points) for t in targets}
    heads_table = top_heads(
        exact["head_out"], exact["head_v"], exact["head_pattern"], min(params.top_heads, n_layers * n_heads)
    )
    positions = batch.position_roles or batch.position_labels  # the maps average over prompts
    metrics = {
        "clean_logit_diff": num(clean),
        "corrupted_logit_diff": num(corrupted),
        "n_layers": n_layers,
        "n_heads": n_heads,
        "n_key_value_heads": n_kv_heads(model),
        "positions": positions,
        "backend": "engine" if engine is not None else "transformer_lens",
        "targets": targets,  # sweep order (the store sorts dict keys)
        "sweeps": {t: to_list(v) for t, v in exact.items()},
        "attribution": {t: to_list(approx[t][0]) for t in targets},
        "agreement": agreement,
        "top_heads": heads_table,
        "resid_flow": resid_flow(exact["resid_pre"], batch, params),
        "strongest": {t: strongest(exact[t], t) for t in targets},
        # heads whose effect runs more through what they move (values) than where they look
        "value_dominated": sum(abs(r["value"]) > abs(r["pattern"]) for r in heads_table),
        "attribution_fit": fit_summary(agreement, params),
    }
    return Result(metrics)


def strongest(values: torch.Tensor, target: str) -> dict:
    """The cell with the largest |effect|, as its index along the target's axes."""
    flat = int(values.flatten().abs().argmax())
    index = [int(i) for i in torch.unravel_index(torch.tensor(flat), values.shape)]
    return {"index": dict(zip(TARGETS[target].axes, index)), "value": num(values.flatten()[flat])}


def fit_summary(agreement: dict, params: Params) -> dict:
    """Which sweeps the approximation tracks (Pearson >= threshold), which it does not, and
    which have too few differing cells for a correlation."""
    fit = {
        "threshold": params.good_correlation,
        "min_points": params.min_correlation_points,
        "good": [],
        "poor": [],
        "undefined": [],
    }
    for t, a in agreement.items():
        kind = "undefined" if a["pearson"] is None else ("good" if a["pearson"] >= params.good_correlation else "poor")
        fit[kind].append(t)
    worst = max(agreement, key=lambda t: agreement[t]["max_abs_error"])
    error = agreement[worst]["max_abs_error"]
    fit["largest_error"] = {"target": worst, "error": error, "too_large": error > params.large_error}
    return fit
