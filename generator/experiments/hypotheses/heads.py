"""Hypothesis 2, "why does the attention head attend to Capital pronoun rather than non capital
pronoun after a fullstop?": a head at the final position reads source tokens, never the answer,
so the question becomes where the heads that matter look from the final "." and whether the
capital comes from where they look (QK, the pattern) or from what they write (OV, the values).

Per head, by source role (roles.py, per prompt): its attention from the final position; its
attention score (q·k/√d_head, pre-softmax: the QK circuit's preference of the "." query); and
its output split by source position — pattern × (value @ W_O), scaled by the final LayerNorm as
the model scaled it — onto He − he and the capitalisation direction: what it writes from each
role (attention-weighted, summing to the head's DLA without b_O) and per unit of attention (the
OV circuit of that role's tokens). Patching's head_v / head_pattern sweeps (stored) say whether
its effect runs through the values or the pattern.
"""

from __future__ import annotations

import torch

from generator.experiments.hypotheses.roles import role_masks
from generator.heads import Head
from generator.metrics import num


def chosen_heads(model, attribution, patching, k: int) -> list[Head]:
    """Every head of a one-layer model (there the heads are the whole mechanism besides the
    embeddings); else attribution's top k of each sign and patching's top k, in that order."""
    if model.cfg.n_layers == 1:
        return [Head(0, h) for h in range(model.cfg.n_heads)]
    heads = [Head.of(h) for h in attribution.top_positive[:k]]
    if patching is not None:
        heads += [Head.of(h) for h in patching.top_heads[:k]]
    heads += [Head.of(h) for h in attribution.top_negative[:k]]
    return list(dict.fromkeys(heads))


def by_role(values: torch.Tensor, masks: dict, reduce: str) -> dict[str, float]:
    """values [prompt, src] -> {role: mean over prompts of the sum (or mean) over that role's
    positions}."""
    out = {}
    for role, mask in masks.items():
        summed = (values * mask).sum(-1)
        if reduce == "mean":
            count = mask.sum(-1)
            summed = torch.where(count > 0, summed / count.clamp(min=1), torch.zeros_like(summed))
            present = count > 0
            out[role] = num(summed[present].mean())
        else:
            out[role] = num(summed.mean())
    return out


@torch.no_grad()
def analyse(model, batch, roles, heads: list[Head], pron_dirs, cap_dir, patching) -> list[dict]:
    layers = sorted({h.layer for h in heads})
    names = ["ln_final.hook_scale"] + [
        f"blocks.{l}.attn.hook_{x}" for l in layers for x in ("pattern", "attn_scores", "v")
    ]
    _, cache = model.run_with_cache(batch.clean_tokens, names_filter=names)
    scale = cache["ln_final.hook_scale"][:, -1]  # [prompt, 1]
    masks = role_masks(roles, device=batch.clean_tokens.device)
    rows = []
    for h in heads:
        pattern = cache["pattern", h.layer][:, h.head, -1]  # [prompt, src]
        scores = cache["attn_scores", h.layer][:, h.head, -1]
        written = (
            cache["v", h.layer][:, :, h.head] @ model.W_O[h.layer, h.head] / scale[:, None]
        )  # [prompt, src, d_model]
        per_unit_pron = (written * pron_dirs[:, None]).sum(-1)
        per_unit_cap = written @ cap_dir if cap_dir is not None else None
        row = {
            **h.as_dict(),
            "attention": by_role(pattern, masks, "sum"),
            "score": by_role(scores, masks, "mean"),
            "writes_pronoun": by_role(pattern * per_unit_pron, masks, "sum"),
            "per_unit_pronoun": by_role(per_unit_pron, masks, "mean"),
            "writes_capital": by_role(pattern * per_unit_cap, masks, "sum") if cap_dir is not None else None,
            "per_unit_capital": by_role(per_unit_cap, masks, "mean") if cap_dir is not None else None,
            "dla": num((pattern * per_unit_pron).sum(-1).mean()),
        }
        # the role its write onto the answer direction comes from most, either sign
        row["source"] = max(row["writes_pronoun"], key=lambda role: abs(row["writes_pronoun"][role]))
        if patching is not None:
            sweeps = patching.sweeps
            row["patching"] = {
                t: num(sweeps[t][h.layer][h.head]) for t in ("head_out", "head_v", "head_pattern") if t in sweeps
            }
        rows.append(row)
    return rows


def summary(rows: list[dict], logit_diff: float, mostly: float) -> dict:
    """The head that writes most He − he (by |DLA|), where it looks, which role its He − he
    comes from, and whether patching says its effect runs through values or pattern."""
    if not rows:
        return {"top": None}
    top = max(rows, key=lambda r: abs(r["dla"]))
    focus = max(top["attention"], key=top["attention"].get)
    source = top["source"]
    p = top.get("patching") or {}
    route = None
    if "head_v" in p and "head_pattern" in p:
        route = "value" if abs(p["head_v"]) > abs(p["head_pattern"]) else "pattern"
    return {
        "top": Head.of(top).as_dict(),
        "top_dla": top["dla"],
        "top_share": num(top["dla"] / logit_diff) if logit_diff else None,
        "heads_share": num(sum(r["dla"] for r in rows) / logit_diff) if logit_diff else None,
        "focus": focus,
        "focus_weight": top["attention"][focus],
        "focus_mostly": top["attention"][focus] >= mostly,
        "preferred": max(top["score"], key=top["score"].get),
        "source": source,
        "source_share": num(top["writes_pronoun"][source] / top["dla"]) if top["dla"] else None,
        "route": route,
        "patched": p or None,  # its head_out / head_v / head_pattern recovered shares
    }
