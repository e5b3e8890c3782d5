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

import torch

from generator.experiments import Result
from generator.experiments.params import Attention as Params
from generator.heads import GROUPS, Head, layer_group
from generator.metrics import num, to_list


def head_groups(attribution, patching, k: int, n_layers: int) -> dict[str, list[Head]]:
    """The heads shown, by group: attribution's top k of each sign, then patching's top heads
    by depth (a group with no head is kept, empty, so the page can say so)."""
    groups = {
        "positive": [Head.of(h) for h in attribution.top_positive[:k]],
        "negative": [Head.of(h) for h in attribution.top_negative[:k]],
    }
    if patching is not None:
        heads = [Head.of(h) for h in patching.top_heads]
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
    metrics = {
        "example_prompt": batch.spec.prompts[example].text,
        "positions": labels,
        # averaged maps are labelled by what each position holds in every prompt
        "mean_positions": batch.position_roles or labels,
        "tokens": tokens,
        "mostly": params.mostly,
        "groups": [],
    }
    for group, heads in groups.items():
        entry = {"group": group, "heads": [h.as_dict() for h in heads]}
        metrics["groups"].append(entry)
        if not heads:
            continue
        pattern = torch.stack([cache["pattern", h.layer][:, h.head] for h in heads])  # [head, batch, dest, src]
        example_pattern, mean_pattern = pattern[:, example], pattern.mean(1)
        final = mean_pattern[:, -1]
        entry.update(
            # [head, dest, src], to 4 digits: what the page draws (circuitsvis and the final row)
            pattern_example=to_list(example_pattern, 4),
            pattern_mean=to_list(mean_pattern, 4),
            final_example=to_list(example_pattern[:, -1]),
            final_mean=to_list(final),
            # where each head looks most from the final position, on average over prompts, and
            # whether that is most of its attention (the page says "mostly" only then)
            focus=[
                {
                    **h.as_dict(),
                    "position": int(final[i].argmax()),
                    "weight": num(final[i].max()),
                    "mostly": bool(final[i].max() > params.mostly),
                }
                for i, h in enumerate(heads)
            ],
        )
    return Result(metrics)
