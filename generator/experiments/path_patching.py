"""Path patching: which later heads read the strongest heads' output, and through which input.

For each source head (the strongest by head-output patching, read from the `patching`
experiment) and each receiver input (query, key, value), the direct path from the source into
every later head's input is patched alone: the source's clean-minus-corrupted write is added
to that one head's copy of the residual stream, every other reader still sees the corrupted
run (`transformer_lens.patching.get_act_patch_direct_path`). The metric is the normalised
mean logit difference (0 = corrupted, 1 = clean), so a cell is the share of the clean
behaviour carried by that single edge.
"""

from __future__ import annotations

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from transformer_lens import patching as tl_patching

from generator import ReportError
from generator.experiments import Result
from generator.experiments.common import logit_diff, num, to_list
from generator.experiments.params import PathPatching as Params
from generator.figures import plotly_spec

COMPONENT_NAMES = {"q": "query", "k": "key", "v": "value"}


def path_sweep(model, batch, clean_cache, corrupted_cache, source: tuple[int, int], component: str) -> torch.Tensor:
    """[n_layers, n_heads] mean logit difference with the path source -> (layer, head).component
    patched; rows up to the source's layer are placeholders. The one place path sweeps run."""
    metric = lambda logits: logit_diff(logits, batch.answer_tokens).mean()  # noqa: E731
    return tl_patching.get_act_patch_direct_path(model, batch.corrupted_tokens, clean_cache, corrupted_cache,
                                                 metric, *source, component=component, verbose=False)


@torch.no_grad()
def run(model, batch, params: Params, inputs: dict) -> Result:
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    # a head in the last layer has no later heads to read it
    sources = [h for h in inputs["patching"]["top_heads"] if h["layer"] < n_layers - 1][: params.sources]
    names = [f"blocks.{layer}.attn.hook_z" for layer in range(n_layers)]
    clean_logits, clean_cache = model.run_with_cache(batch.clean_tokens, names_filter=names)
    corrupted_logits, corrupted_cache = model.run_with_cache(batch.corrupted_tokens, names_filter=names)
    clean = logit_diff(clean_logits, batch.answer_tokens).mean()
    corrupted = logit_diff(corrupted_logits, batch.answer_tokens).mean()
    scale = float(clean - corrupted)
    if abs(scale) < 1e-6:
        raise ReportError("path_patching: the clean and corrupted mean logit differences are equal, so the "
                          "normalised metric is undefined; this model does not react to the corruption")

    layers = [f"L{layer}" for layer in range(n_layers)]
    heads = [f"H{h}" for h in range(n_heads)]
    results, paths, figures = [], [], {}
    for s in sources:
        grids = {}
        for c in params.components:
            recovered = (path_sweep(model, batch, clean_cache, corrupted_cache, (s["layer"], s["head_index"]), c)
                         - corrupted) / scale
            # rows up to the source's layer are not measurements: store them as gaps (null)
            grid = [[None] * n_heads if layer <= s["layer"] else row
                    for layer, row in enumerate(to_list(recovered))]
            grids[c] = grid
            for layer in range(s["layer"] + 1, n_layers):
                for h in range(n_heads):
                    paths.append({"source": s["head"], "receiver": f"L{layer}H{h}", "component": c,
                                  "component_name": COMPONENT_NAMES[c], "effect": grid[layer][h]})
        name = f"paths_from_{s['head']}"
        figures[name] = path_figure(s["head"], grids, layers, heads)
        best = max(((c, layer, h) for c in grids for layer in range(s["layer"] + 1, n_layers) for h in range(n_heads)),
                   key=lambda k: abs(grids[k[0]][k[1]][k[2]]))
        results.append({"source": s["head"], "source_effect": s["effect"], "figure": name, "grids": grids,
                        "strongest": {"receiver": f"L{best[1]}H{best[2]}", "component": best[0],
                                      "component_name": COMPONENT_NAMES[best[0]],
                                      "effect": grids[best[0]][best[1]][best[2]]}})
    paths.sort(key=lambda p: abs(p["effect"]), reverse=True)
    totals = {c: num(sum(abs(p["effect"]) for p in paths if p["component"] == c)) for c in params.components}
    metrics = {
        "clean_logit_diff": num(clean), "corrupted_logit_diff": num(corrupted),
        "n_layers": n_layers, "n_heads": n_heads, "layers": layers, "heads": heads,
        "components": list(params.components), "sources": results,
        "top_paths": paths[: params.top_paths],
        # summed |effect| per receiver input: which input the sources mostly feed
        "total_by_component": totals,
        "main_component": COMPONENT_NAMES[max(totals, key=totals.get)] if paths else None,
    }
    return Result(metrics, figures)


def path_figure(source: str, grids: dict, layers: list[str], heads: list[str]) -> dict:
    """One heatmap per receiver input (receiver layer × head), on one shared colour scale."""
    values = [v for g in grids.values() for row in g for v in row if v is not None]
    bound = max([abs(v) for v in values] + [1e-6])
    fig = make_subplots(rows=1, cols=len(grids), shared_yaxes=True, horizontal_spacing=0.04,
                        subplot_titles=[f"into {COMPONENT_NAMES[c]} ({c})" for c in grids])
    for col, (c, grid) in enumerate(grids.items(), start=1):
        fig.add_trace(go.Heatmap(
            z=grid, x=heads, y=layers, zmin=-bound, zmax=bound, colorscale="RdBu", reversescale=True,
            showscale=col == len(grids), colorbar=dict(title="recovered"),
            hovertemplate=f"{source} → %{{y}}%{{x}}.{c}<br>%{{z:.3f}}<extra></extra>"), row=1, col=col)
    fig.update_xaxes(type="category", title_text="receiver head")
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_yaxes(title_text="receiver layer", row=1, col=1)
    fig.update_layout(title=f"Direct paths from {source} into later heads", height=420)
    return plotly_spec(fig)
