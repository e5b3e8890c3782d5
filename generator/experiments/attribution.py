"""Attribution: which parts of the residual stream write "capital, not lowercase" at the end?

Direct logit attribution as in the seed notebook, on TransformerLens's cache tools: the
direction is model.tokens_to_residual_directions(correct) − (wrong), per prompt; a stack of
residual pieces is scaled by the final LayerNorm's cached scale
(cache.apply_ln_to_stack(..., layer=-1, pos_slice=-1)) and dotted with it. The stacks are
accumulated_resid (logit lens), decompose_resid (embeddings, attention and MLP per layer) and
stack_head_results (one per head). Because the scale is the one the model used, the pieces
add up to the final residual's attribution; the checks below measure how exactly.

Also the breakdowns: the logit difference and the top heads' attribution per template, name
and gender.
"""

from __future__ import annotations

import torch

from generator.architecture import has_resid_mid
from generator.experiments import Result
from generator.experiments.params import Attribution as Params
from generator.heads import Head, stack_label
from generator.metrics import logit_diff, num, to_list


def ld_attribution(cache, stack: torch.Tensor, direction: torch.Tensor) -> torch.Tensor:
    """[components, batch, d_model] residual pieces at the final position -> [components, batch]
    logit-difference attributions, with the final LayerNorm scale the model actually applied."""
    scaled = cache.apply_ln_to_stack(stack, layer=-1, pos_slice=-1)
    return (scaled * direction).sum(-1)


def attribute(model, tokens: torch.Tensor, answer_tokens: torch.Tensor) -> dict[str, torch.Tensor]:
    """Every attribution of one batch, per prompt."""
    logits, cache = model.run_with_cache(tokens)
    directions = model.tokens_to_residual_directions(answer_tokens)  # [batch, 2, d_model]
    direction = directions[..., 0, :] - directions[..., 1, :]
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    final = cache["resid_post", n_layers - 1][:, -1]
    lens, lens_labels = cache.accumulated_resid(
        layer=-1, incl_mid=has_resid_mid(model), pos_slice=-1, return_labels=True
    )
    parts, part_labels = cache.decompose_resid(layer=-1, pos_slice=-1, return_labels=True)
    heads = cache.stack_head_results(layer=-1, pos_slice=-1)
    # attention output biases are in attn_out but in no head: attributed separately so that
    # heads + biases can be checked against attn_out
    biases = torch.stack([output_bias(model, l, final[0]) for l in range(n_layers)])
    biases = biases[:, None].expand(n_layers, *final.shape)
    return {
        "logit_diff": logit_diff(logits, answer_tokens),
        "final_logits": logits[:, -1],
        "total": ld_attribution(cache, final[None], direction)[0],
        "lens": ld_attribution(cache, lens, direction),
        "lens_labels": lens_labels,
        "parts": ld_attribution(cache, parts, direction),
        "part_labels": part_labels,
        "heads": ld_attribution(cache, heads, direction).reshape(n_layers, n_heads, -1),
        "attn_bias": ld_attribution(cache, biases, direction),
    }


def output_bias(model, layer: int, like: torch.Tensor) -> torch.Tensor:
    """The attention output bias b_O of a layer (zeros for attention without one)."""
    bias = getattr(model.blocks[layer].attn, "b_O", None)
    return torch.zeros_like(like) if bias is None else bias


def top_heads(mean_heads: torch.Tensor, k: int, sign: int) -> list[dict]:
    """The k heads with the largest (sign=1) or most negative (sign=-1) mean attribution,
    keeping only heads of that sign (the notebook's torch.topk over per-head logit diffs)."""
    n_heads = mean_heads.shape[1]
    values, order = (sign * mean_heads.flatten()).sort(descending=True)
    return [
        {**Head(*divmod(i, n_heads)).as_dict(), "attribution": num(sign * v)}
        for v, i in zip(values[:k].tolist(), order[:k].tolist())
        if v > 0
    ]


@torch.no_grad()
def run(model, batch, params: Params, inputs: dict) -> Result:
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    clean = attribute(model, batch.clean_tokens, batch.answer_tokens)
    corrupted = attribute(model, batch.corrupted_tokens, batch.answer_tokens)
    heads = clean["heads"].mean(-1)
    attn_parts = torch.stack([clean["parts"][clean["part_labels"].index(f"{l}_attn_out")] for l in range(n_layers)])
    head_sum = clean["heads"].sum(1) + clean["attn_bias"]
    layer_labels = [f"L{l}" for l in range(n_layers)]
    head_labels = [f"H{h}" for h in range(n_heads)]
    positive = top_heads(heads, params.top_k, 1)
    negative = top_heads(heads, params.top_k, -1)
    metrics = {
        "n_prompts": len(batch.spec.prompts),
        "mean_logit_diff": num(clean["logit_diff"].mean()),
        "total": num(clean["total"].mean()),
        # the model's logit difference = DLA total + the unembedding bias's difference
        "unembed_bias": num((clean["logit_diff"] - clean["total"]).mean()),
        "decomposition_error": num((clean["parts"].sum(0) - clean["total"]).abs().max()),
        "head_error": num((head_sum - attn_parts).abs().max()),
        "heads_total": num(clean["heads"].sum((0, 1)).mean()),
        "not_heads": num((clean["total"] - clean["heads"].sum((0, 1))).mean()),
        "lens": {
            "labels": [stack_label(s) for s in clean["lens_labels"]],
            "clean": to_list(clean["lens"].mean(-1)),
            "corrupted": to_list(corrupted["lens"].mean(-1)),
        },
        "components": {
            "labels": [stack_label(s) for s in clean["part_labels"]],
            "values": to_list(clean["parts"].mean(-1)),
        },
        "heads": {"layers": layer_labels, "heads": head_labels, "values": to_list(heads)},
        "attn_bias": to_list(clean["attn_bias"].mean(-1)),
        "top_positive": positive,
        "top_negative": negative,
        "breakdowns": breakdowns(batch.spec, clean, positive + negative),
    }
    metrics.update(summary(metrics))
    return Result(metrics)


def summary(metrics: dict) -> dict:
    """What the page's prose states: the strongest components and where the lens gets going."""
    parts = list(zip(metrics["components"]["labels"], metrics["components"]["values"]))
    lens = list(zip(metrics["lens"]["labels"], metrics["lens"]["clean"]))
    final = lens[-1][1]
    # the first residual stream that carries half of the final logit difference (same sign)
    half = next((label for label, v in lens if final != 0 and v / final >= 0.5), None)
    return {
        "top_component": dict(zip(("label", "value"), max(parts, key=lambda x: x[1]))),
        "bottom_component": dict(zip(("label", "value"), min(parts, key=lambda x: x[1]))),
        "lens_half": half,
    }


def breakdowns(spec, clean: dict, top: list[dict]) -> dict:
    """Mean logit difference and each top head's attribution per template, name and gender;
    `heads` lists the top heads, each row's `heads` their values in that order."""
    keys = {"template": lambda p: f"template {p.template + 1}", "name": lambda p: p.name, "gender": lambda p: p.group}
    heads = [Head.of(h) for h in top]
    out = {}
    for kind, key in keys.items():
        groups = list(dict.fromkeys(key(p) for p in spec.prompts))  # first-seen order
        rows = []
        for g in groups:
            idx = torch.tensor([i for i, p in enumerate(spec.prompts) if key(p) == g])
            rows.append(
                {
                    "group": g,
                    "n": len(idx),
                    "logit_diff": num(clean["logit_diff"][idx].mean()),
                    "heads": [num(clean["heads"][h.layer, h.head, idx].mean()) for h in heads],
                }
            )
        out[kind] = {"heads": [h.as_dict() for h in heads], "rows": rows}
    if spec.templates:
        for row, text in zip(out["template"]["rows"], spec.templates):
            row["text"] = text
    return out
