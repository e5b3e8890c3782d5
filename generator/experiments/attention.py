"""Attention: where do the heads that matter most look?

Attention patterns (from the cache's hook_pattern) of the top positive and top negative heads
by direct logit attribution (read from the attribution experiment), for the example prompt and
averaged over all prompts: circuitsvis AttentionHeads views of the whole pattern, and plotly
heatmaps of the row that matters, attention from the final position.

When the patching experiment's metrics are passed in too (`after` gains "patching"), its top
heads are shown grouped into early, middle and late layers: it provides
`top_heads: [{"head": "L9H1", "group": "late", ...}, ...]` (a missing "group" is derived here).
"""

from __future__ import annotations

import re

import plotly.graph_objects as go
import torch

from generator.experiments import Result
from generator.experiments.common import num, to_list
from generator.experiments.params import Attention as Params
from generator.figures import circuitsvis_spec, plotly_spec


def parse_head(name: str) -> tuple[int, int]:
    layer, head = re.fullmatch(r"L(\d+)H(\d+)", name).groups()
    return int(layer), int(head)


def layer_band(layer: int, n_layers: int) -> str:
    """Early / middle / late: the layers cut into thirds (for 12 layers: 0-3, 4-7, 8-11), as
    the patching experiment groups them."""
    return ("early", "middle", "late")[min(2, 3 * layer // n_layers)]


def patterns(cache, heads: list[str]) -> torch.Tensor:
    """[n_selected, batch, dest, src] attention patterns of the named heads."""
    return torch.stack([cache["pattern", l][:, h] for l, h in map(parse_head, heads)])


@torch.no_grad()
def run(model, batch, params: Params, inputs: dict) -> Result:
    attribution = inputs["attribution"]
    groups = {"positive": [h["head"] for h in attribution["top_positive"][:params.top_k]],
              "negative": [h["head"] for h in attribution["top_negative"][:params.top_k]]}
    if "patching" in inputs:
        bands: dict[str, list[str]] = {}
        for h in inputs["patching"]["top_heads"]:
            band = h.get("group") or layer_band(parse_head(h["head"])[0], model.cfg.n_layers)
            bands.setdefault(band, []).append(h["head"])
        groups.update({f"patching_{b}": bands[b] for b in ("early", "middle", "late") if b in bands})
    example = next((i for i, p in enumerate(batch.spec.prompts) if p.text == batch.spec.example), 0)
    needed = sorted({parse_head(h)[0] for heads in groups.values() for h in heads})
    _, cache = model.run_with_cache(batch.clean_tokens,
                                    names_filter=[f"blocks.{l}.attn.hook_pattern" for l in needed] or None)
    tokens = model.to_str_tokens(batch.clean_tokens[example])
    labels = batch.position_labels
    # a list, not a dict: the store sorts keys, and the page shows groups in this order
    metrics = {"example_prompt": batch.spec.prompts[example].text, "positions": labels, "groups": []}
    figures = {}
    for group, heads in groups.items():
        if not heads:
            metrics["groups"].append({"group": group, "heads": []})
            continue
        pattern = patterns(cache, heads)
        example_pattern, mean_pattern = pattern[:, example], pattern.mean(1)
        final = mean_pattern[:, -1]
        metrics["groups"].append({
            "group": group, "heads": heads,
            "final_example": to_list(example_pattern[:, -1]), "final_mean": to_list(final),
            # where each head looks most from the final position, on average over prompts
            "focus": [{"head": h, "position": labels[int(final[i].argmax())], "weight": num(final[i].max())}
                      for i, h in enumerate(heads)]})
        for kind, p in (("example", example_pattern), ("mean", mean_pattern)):
            figures[f"{group}_{kind}"] = circuitsvis_spec("AttentionHeads", {
                "attention": to_list(p, 4), "tokens": tokens, "attentionHeadNames": heads,
                "maskUpperTri": True})
            figures[f"{group}_{kind}_final"] = final_row_figure(p[:, -1], heads, labels, group, kind)
    return Result(metrics, figures)


def final_row_figure(rows: torch.Tensor, heads: list[str], labels: list[str], group: str, kind: str) -> dict:
    """Attention from the final position: one row per head, one column per source position."""
    what = "the example prompt" if kind == "example" else "the mean over prompts"
    fig = go.Figure(go.Heatmap(z=to_list(rows, 4), x=labels, y=heads, zmin=0, zmax=1,
                               colorscale="Blues", colorbar=dict(title="attention"),
                               hovertemplate="%{y} attends from the final position to %{x}: %{z:.3f}<extra></extra>"))
    fig.update_layout(title=f"Attention from the final position, {group} heads, {what}",
                      xaxis_title="source position (token_index)", yaxis_title="head",
                      height=160 + 40 * len(heads))
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category", autorange="reversed")
    return plotly_spec(fig)
