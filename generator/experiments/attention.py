"""Attention: where do the heads that matter most look? (the notebook's "Attention Analysis")

Attention patterns (the cache's hook_pattern) of the top positive and top negative heads by
direct logit attribution (read from the attribution experiment; the notebook's top_k = 3), and
of the top heads by activation patching (read from the patching experiment; the notebook's
top 10 by |head-output patching|) grouped into early, middle and late layers as the notebook
does (first_mid_layer = 7, first_late_layer = 9 of GPT-2's 12, scaled to other depths): for
the example prompt (the notebook's tokens[0]) and averaged over all prompts, as circuitsvis
AttentionHeads views and as plotly heatmaps of the row that matters, attention from the final
position.
"""

from __future__ import annotations

import plotly.graph_objects as go
import torch

from generator.experiments import Result
from generator.experiments.params import Attention as Params
from generator.figures import circuitsvis_spec, plotly_spec
from generator.heads import GROUPS, Head, head_name, layer_group
from generator.metrics import num, to_list


def head_groups(attribution: dict, patching: dict | None, k: int, n_layers: int) -> dict[str, list[Head]]:
    """The heads shown, by group: attribution's top k of each sign, then patching's top heads
    by depth (a group with no head is kept, empty, so the page can say so)."""
    groups = {
        "positive": [Head.of(h) for h in attribution["top_positive"][:k]],
        "negative": [Head.of(h) for h in attribution["top_negative"][:k]],
    }
    if patching is not None:
        heads = [Head.of(h) for h in patching["top_heads"]]
        for g in GROUPS:
            groups[f"patching_{g}"] = [h for h in heads if layer_group(h.layer, n_layers) == g]
    return groups


@torch.no_grad()
def run(model, batch, params: Params, inputs: dict) -> Result:
    groups = head_groups(inputs["attribution"], inputs.get("patching"), params.top_k, model.cfg.n_layers)
    example = next((i for i, p in enumerate(batch.spec.prompts) if p.text == batch.spec.example), 0)
    needed = sorted({h.layer for heads in groups.values() for h in heads})
    _, cache = model.run_with_cache(
        batch.clean_tokens, names_filter=[f"blocks.{l}.attn.hook_pattern" for l in needed] or None
    )
    tokens = model.to_str_tokens(batch.clean_tokens[example])
    labels = batch.position_labels
    # a list, not a dict: the store sorts keys, and the page shows groups in this order
    metrics = {"example_prompt": batch.spec.prompts[example].text, "positions": labels, "groups": []}
    figures = {}
    for group, heads in groups.items():
        entry = {"group": group, "heads": [h.as_dict() for h in heads]}
        metrics["groups"].append(entry)
        if not heads:
            continue
        names = [head_name(h) for h in heads]
        pattern = torch.stack([cache["pattern", h.layer][:, h.head] for h in heads])  # [head, batch, dest, src]
        example_pattern, mean_pattern = pattern[:, example], pattern.mean(1)
        final = mean_pattern[:, -1]
        entry.update(
            final_example=to_list(example_pattern[:, -1]),
            final_mean=to_list(final),
            # where each head looks most from the final position, on average over prompts
            focus=[
                {**h.as_dict(), "position": int(final[i].argmax()), "weight": num(final[i].max())}
                for i, h in enumerate(heads)
            ],
        )
        for kind, p in (("example", example_pattern), ("mean", mean_pattern)):
            figures[f"{group}_{kind}"] = circuitsvis_spec(
                "AttentionHeads",
                {"attention": to_list(p, 4), "tokens": tokens, "attentionHeadNames": names, "maskUpperTri": True},
            )
            figures[f"{group}_{kind}_final"] = final_row_figure(p[:, -1], names, labels, group, kind)
    return Result(metrics, figures)


def final_row_figure(rows: torch.Tensor, heads: list[str], labels: list[str], group: str, kind: str) -> dict:
    """Attention from the final position: one row per head, one column per source position."""
    what = "the example prompt" if kind == "example" else "the mean over prompts"
    fig = go.Figure(
        go.Heatmap(
            z=to_list(rows, 4),
            x=labels,
            y=heads,
            zmin=0,
            zmax=1,
            colorscale="Blues",
            colorbar=dict(title="attention"),
            hovertemplate="%{y} attends from the final position to %{x}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Attention from the final position, {group.replace('_', ' ')} heads, {what}",
        xaxis_title="source position (token_index)",
        yaxis_title="head",
        height=160 + 40 * len(heads),
    )
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category", autorange="reversed")
    return plotly_spec(fig)
