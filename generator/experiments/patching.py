"""Activation patching, with attribution patching beside every sweep.

Each sweep runs the corrupted prompts (";") with one activation copied from the clean run
(".") and reports the mean logit difference, normalised so that 0 is the corrupted run and 1
the clean run. Sweeps: the residual stream (resid_pre), attention and MLP outputs by layer ×
position; head outputs by layer × head and by layer × position × head; head values and head
attention patterns by layer × head (the value- vs pattern-patching scatter of the
TransformerLens demo). All come from `transformer_lens.patching`.

Attribution patching approximates each sweep to first order from one clean forward and one
corrupted forward + backward: (clean − corrupted activation) · d(metric)/d(activation) at the
corrupted run, summed over the patched slice. Its Pearson and Spearman correlations with the
exact sweep show where the linear approximation holds and where it fails. The activations and
gradients come from TransformerLens's `cache_activation_and_gradient`; its `attribution_patch`
is not used here because its nodes are only head outputs and MLP outputs, while the estimate
has to sit beside every sweep (residual stream, attention output, head values and patterns too).
"""

from __future__ import annotations

import einops
import plotly.graph_objects as go
import torch
from transformer_lens import patching as tl_patching
from transformer_lens.tools.analysis.attribution_patching import cache_activation_and_gradient

from generator import ReportError
from generator.engine import PatchingEngine
from generator.experiments import Result
from generator.experiments.common import logit_diff, num, to_list
from generator.experiments.params import Patching as Params
from generator.figures import heatmap, plotly_spec

# target -> the TransformerLens sweep: the fallback for models generator.engine does not
# implement (e.g. attention-only), and the reference the engine is tested against.
SWEEPS = {
    "resid_pre": tl_patching.get_act_patch_resid_pre,  # [layer, pos]
    "attn_out": tl_patching.get_act_patch_attn_out,  # [layer, pos]
    "mlp_out": tl_patching.get_act_patch_mlp_out,  # [layer, pos]
    "head_out": tl_patching.get_act_patch_attn_head_out_all_pos,  # [layer, head]
    "head_out_by_pos": tl_patching.get_act_patch_attn_head_out_by_pos,  # [layer, pos, head]
    "head_v": tl_patching.get_act_patch_attn_head_v_all_pos,  # [layer, head]
    "head_pattern": tl_patching.get_act_patch_attn_head_pattern_all_pos,  # [layer, head]
}

# target -> (hook in each block, how the attribution product reduces to the sweep's axes)
GRADIENT_HOOKS = {
    "resid_pre": ("hook_resid_pre", "b p d -> p"),
    "attn_out": ("hook_attn_out", "b p d -> p"),
    "mlp_out": ("hook_mlp_out", "b p d -> p"),
    "head_out": ("attn.hook_z", "b p h d -> h"),
    "head_out_by_pos": ("attn.hook_z", "b p h d -> p h"),
    "head_v": ("attn.hook_v", "b p h d -> h"),
    "head_pattern": ("attn.hook_pattern", "b h q k -> h"),
}

TITLES = {
    "resid_pre": "Residual stream (resid_pre)",
    "attn_out": "Attention output",
    "mlp_out": "MLP output",
    "head_out": "Head output (all positions)",
    "head_out_by_pos": "Head output by position",
    "head_v": "Head values",
    "head_pattern": "Head attention patterns",
}


def make_engine(model, batch) -> PatchingEngine | None:
    """The fast exact engine where it implements the model's architecture, else None."""
    try:
        return PatchingEngine(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens)
    except NotImplementedError:
        return None


def sweep(engine, model, batch, clean_cache, target: str) -> torch.Tensor:
    """Mean logit difference with `target` patched clean -> corrupted at every index of the
    sweep: the engine's numbers where it runs, TransformerLens's otherwise (the same to 1e-5)."""
    if engine is not None:
        return engine.sweep(target)
    metric = lambda logits: logit_diff(logits, batch.answer_tokens).mean()  # noqa: E731
    return SWEEPS[target](model, batch.corrupted_tokens, clean_cache, metric)


def hook_names(model, targets) -> list[str]:
    return [f"blocks.{layer}.{GRADIENT_HOOKS[t][0]}" for t in targets for layer in range(model.cfg.n_layers)]


def attribution(model, batch, targets, scale: float) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """Attribution-patching estimate of each sweep, divided by `scale` (clean − corrupted mean
    logit difference) so it is on the normalised scale; and a mask of the cells whose clean and
    corrupted activations differ at all (elsewhere both exact and estimate are zero)."""
    names = hook_names(model, targets)
    metric = lambda logits: logit_diff(logits, batch.answer_tokens).mean()  # noqa: E731
    clean = cache_activation_and_gradient(model, batch.clean_tokens, metric, names, compute_gradient=False)
    with torch.enable_grad():
        corrupted = cache_activation_and_gradient(model, batch.corrupted_tokens, metric, names)
    out = {}
    for t in targets:
        hook, pattern = GRADIENT_HOOKS[t]
        estimate, differs = [], []
        for layer in range(model.cfg.n_layers):
            name = f"blocks.{layer}.{hook}"
            delta = clean.activations[name] - corrupted.activations[name]
            estimate.append(einops.reduce(delta * corrupted.gradients[name], pattern, "sum") / scale)
            differs.append(einops.reduce(delta.abs(), pattern, "sum") > 0)
        out[t] = (torch.stack(estimate), torch.stack(differs))
    return out


def correlations(exact: torch.Tensor, estimate: torch.Tensor, mask: torch.Tensor) -> dict:
    """Pearson and Spearman correlation over the cells where clean and corrupted differ; None
    where fewer than three cells or a constant side leave them undefined."""
    x, y = exact[mask].double(), estimate[mask].double()
    result = {"n_cells": int(mask.sum()), "n_total": mask.numel(), "pearson": None, "spearman": None,
              "max_abs_error": num((exact - estimate).abs().max()) if mask.any() else 0.0}
    if len(x) >= 3 and x.std() > 0 and y.std() > 0:
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


def layer_group(layer: int, n_layers: int) -> str:
    """Early / middle / late: the model's layers split into thirds."""
    return ("early", "middle", "late")[min(2, 3 * layer // n_layers)]


def group_ranges(n_layers: int) -> dict[str, str]:
    ranges = {}
    for g in ("early", "middle", "late"):
        layers = [layer for layer in range(n_layers) if layer_group(layer, n_layers) == g]
        ranges[g] = f"L{layers[0]}–L{layers[-1]}" if len(layers) > 1 else (f"L{layers[0]}" if layers else "none")
    return ranges


def top_heads(head_out, head_v, head_pattern, k: int) -> list[dict]:
    n_layers, n_heads = head_out.shape
    order = head_out.flatten().abs().argsort(descending=True)[:k]
    rows = []
    for i in order.tolist():
        layer, head = divmod(i, n_heads)
        rows.append({"head": f"L{layer}H{head}", "layer": layer, "head_index": head,
                     "group": layer_group(layer, n_layers), "effect": num(head_out[layer, head]),
                     "value": num(head_v[layer, head]), "pattern": num(head_pattern[layer, head])})
    return rows


def resid_flow(resid_pre: torch.Tensor, batch) -> dict:
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
                moves_at = f"L{layer}"
                break
    return {"changed_positions": [labels[p] for p in changed], "final_position": labels[final],
            "changed_is_final": changed == [final], "dominant_by_layer": [labels[p] for p in dominant],
            "moves_at_layer": moves_at, "final_effect_by_layer": to_list(resid_pre[:, final]),
            "changed_effect_by_layer": to_list(resid_pre[:, changed].abs().max(dim=1).values),
            # positions before the first changed token see the same tokens in both runs
            "unchanged_max_effect": num(resid_pre[:, : changed[0]].abs().max()) if changed[0] > 0 else 0.0}


@torch.no_grad()
def run(model, batch, params: Params, inputs: dict) -> Result:
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    layers = [f"L{layer}" for layer in range(n_layers)]
    heads = [f"H{h}" for h in range(n_heads)]
    head_labels = [f"L{layer}H{h}" for layer in range(n_layers) for h in range(n_heads)]
    targets = [t for t in SWEEPS if params.head_by_position or t != "head_out_by_pos"]

    clean_logits, clean_cache = model.run_with_cache(batch.clean_tokens, names_filter=hook_names(model, targets))
    clean = logit_diff(clean_logits, batch.answer_tokens).mean()
    corrupted = logit_diff(model(batch.corrupted_tokens), batch.answer_tokens).mean()
    scale = float(clean - corrupted)
    if abs(scale) < 1e-6:
        raise ReportError(f"patching: the clean and corrupted mean logit differences are equal ({float(clean):.4g}), "
                          "so the normalised metric is undefined; this model does not react to the corruption")

    engine = make_engine(model, batch)
    exact = {t: (sweep(engine, model, batch, clean_cache, t) - corrupted) / scale for t in targets}
    approx = attribution(model, batch, targets, scale)
    agreement = {t: correlations(exact[t], *approx[t]) for t in targets}

    heads_table = top_heads(exact["head_out"], exact["head_v"], exact["head_pattern"], min(params.top_heads, n_layers * n_heads))
    groups = {g: [r["head"] for r in heads_table if r["group"] == g] for g in ("early", "middle", "late")}
    metrics = {
        "clean_logit_diff": num(clean), "corrupted_logit_diff": num(corrupted),
        "n_layers": n_layers, "n_heads": n_heads,
        "layers": layers, "heads": heads, "positions": batch.position_labels,
        "targets": targets,  # sweep order (the store sorts dict keys)
        "sweeps": {t: to_list(v) for t, v in exact.items()},
        "attribution": {t: to_list(approx[t][0]) for t in targets},
        "agreement": agreement,
        "sweep_titles": {t: TITLES[t] for t in targets},
        "top_heads": heads_table, "head_groups": groups, "group_layers": group_ranges(n_layers),
        "resid_flow": resid_flow(exact["resid_pre"], batch),
        "strongest": {t: strongest(exact[t], cell_labels(t, layers, heads, batch.position_labels)) for t in targets},
        # heads whose effect runs more through what they move (values) than where they look
        "value_dominated": sum(abs(r["value"]) > abs(r["pattern"]) for r in heads_table),
        "attribution_fit": fit_summary(agreement, params.good_correlation),
    }
    colorbar = "recovered"
    figures = {
        t: heatmap(to_list(exact[t]), batch.position_labels, layers, TITLES[t], "position", "layer", colorbar)
        for t in ("resid_pre", "attn_out", "mlp_out")
    }
    figures["head_out"] = heatmap(to_list(exact["head_out"]), heads, layers, TITLES["head_out"], "head", "layer", colorbar)
    if "head_out_by_pos" in exact:
        by_pos = einops.rearrange(exact["head_out_by_pos"], "l p h -> (l h) p")
        figures["head_out_by_pos"] = heatmap(to_list(by_pos), batch.position_labels, head_labels,
                                             TITLES["head_out_by_pos"], "position", "head", colorbar)
        figures["head_out_by_pos"]["figure"]["layout"]["height"] = max(400, 16 * len(head_labels) + 120)
    figures["value_vs_pattern"] = scatter_figure(
        {"heads": (exact["head_v"].flatten(), exact["head_pattern"].flatten(), head_labels)},
        "Value patching vs pattern patching, per head", "value patching (recovered)",
        "pattern patching (recovered)")
    figures["attribution"] = scatter_figure(
        {TITLES[t]: (exact[t].flatten(), approx[t][0].flatten(), cell_labels(t, layers, heads, batch.position_labels))
         for t in targets},
        "Attribution patching vs exact activation patching", "exact (recovered)", "attribution estimate (recovered)")
    return Result(metrics, figures)


def strongest(values: torch.Tensor, labels: list[str]) -> dict:
    i = int(values.flatten().abs().argmax())
    return {"cell": labels[i], "value": num(values.flatten()[i])}


def fit_summary(agreement: dict, threshold: float) -> dict:
    """Which sweeps the approximation tracks (Pearson >= threshold), which it does not, and
    which have too few differing cells for a correlation."""
    fit = {"threshold": threshold, "good": [], "poor": [], "undefined": []}
    for t, a in agreement.items():
        kind = "undefined" if a["pearson"] is None else ("good" if a["pearson"] >= threshold else "poor")
        fit[kind].append(TITLES[t])
    worst = max(agreement, key=lambda t: agreement[t]["max_abs_error"])
    fit["largest_error"] = {"sweep": TITLES[worst], "error": agreement[worst]["max_abs_error"]}
    return fit


def cell_labels(target: str, layers, heads, positions) -> list[str]:
    """One hover label per flattened cell, in the sweep's axis order."""
    if target in ("resid_pre", "attn_out", "mlp_out"):
        return [f"{layer} · {p}" for layer in layers for p in positions]
    if target == "head_out_by_pos":
        return [f"{layer}{h} · {p}" for layer in layers for p in positions for h in heads]
    return [f"{layer}{h}" for layer in layers for h in heads]


def scatter_figure(series: dict, title: str, x_title: str, y_title: str) -> dict:
    """One point per cell, a trace per series, with the y = x diagonal for reference."""
    fig = go.Figure()
    values = []
    for name, (x, y, labels) in series.items():
        fig.add_trace(go.Scatter(x=to_list(x), y=to_list(y), text=labels, mode="markers", name=name,
                                 hovertemplate="%{text}<br>x %{x:.3f}<br>y %{y:.3f}<extra>" + name + "</extra>"))
        values += to_list(x) + to_list(y)
    low, high = min(values + [0.0]), max(values + [1.0])
    fig.add_trace(go.Scatter(x=[low, high], y=[low, high], mode="lines", name="y = x",
                             line=dict(dash="dot", color="gray"), hoverinfo="skip"))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, height=480)
    return plotly_spec(fig)
