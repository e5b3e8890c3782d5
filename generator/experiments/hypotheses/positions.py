"""Which positions matter? The ";" corruption changes only the last token, so patching it can
find nothing but the last position. These corruptions change other positions (the name swapped
across gender, the verb, the subject lowercased); the residual stream before each layer is
patched clean -> corrupted at each position (the patching experiment's engine, or
TransformerLens's get_act_patch_resid_pre where the engine does not run), with positions
labelled by role (roles.py); and each head's output at the final position, to find the heads
that bring the changed position's information to where the prediction is made.

The heads are patched at the final position only, as movers are found (the IOI study patches
head outputs at END): patching a head at every position also counts what it does at the
positions in between, which the residual-stream sweep already places, and it costs a run of
every later position per head (on GPT-2 small's shape, 60 s per corruption against 9 s)."""

from __future__ import annotations

import pandas as pd
import torch
from transformer_lens import patching as tl_patching

from generator.experiments.hypotheses.roles import batch_roles, position_roles
from generator.experiments.patching import make_engine, sweep
from generator.metrics import logit_diff, mean_logit_diff_metric, num, to_list
from generator.models import final_logits_only
from generator.tasks import Unbuildable

TASKS = ("positions_name_gender", "positions_verb", "positions_subject")


@torch.no_grad()
def analyse(model, batch, matters: float, min_gap: float) -> dict:
    if isinstance(batch, Unbuildable):  # this model's tokenizer breaks the prompt set
        return {"task": batch.name, "unusable": batch.reason}
    last = final_logits_only(model)
    clean = logit_diff(model(batch.clean_tokens, **last), batch.answer_tokens).mean()
    corrupted = logit_diff(model(batch.corrupted_tokens, **last), batch.answer_tokens).mean()
    gap = float(clean - corrupted)
    labels = position_roles(batch_roles(model, batch))
    changed = sorted(set((batch.clean_tokens != batch.corrupted_tokens).nonzero()[:, 1].tolist()))
    out = {
        "task": batch.spec.name,
        "unusable": None,
        "clean_logit_diff": num(clean),
        "corrupted_logit_diff": num(corrupted),
        "roles": labels,
        "positions": batch.position_labels,
        "changed": changed,
        "recovered": None,
        "matters": [],
        "final_head_out": None,
        "top_head": None,
    }
    if abs(gap) < min_gap:
        return out  # the corruption barely moves the metric: nothing to localise
    names = [f"blocks.{l}.{x}" for l in range(model.cfg.n_layers) for x in ("hook_resid_pre", "attn.hook_z")]
    _, clean_cache = model.run_with_cache(batch.clean_tokens, names_filter=names, **last)
    engine = make_engine(model, batch)
    recovered = (sweep(engine, model, batch, clean_cache, "resid_pre") - corrupted) / gap
    # which heads bring the changed position's information to where it is used
    heads = (final_heads(engine, model, batch, clean_cache) - corrupted) / gap
    top = int(heads.abs().flatten().argmax())
    out["final_head_out"] = to_list(heads)
    out["top_head"] = {"layer": top // heads.shape[1], "head": top % heads.shape[1], "value": num(heads.flatten()[top])}
    best = recovered.abs().max(0)  # over layers, per position
    out["recovered"] = to_list(recovered)
    out["matters"] = [
        {
            "position": p,
            "role": labels[p],
            "max_recovered": num(recovered[best.indices[p], p]),
            "layers": [l for l in range(recovered.shape[0]) if abs(float(recovered[l, p])) >= matters],
        }
        for p in range(recovered.shape[1])
        if float(best.values[p]) >= matters
    ]
    return out


def final_heads(engine, model, batch, clean_cache) -> torch.Tensor:
    """[layer, head] mean logit difference with one head's output at the final position patched
    clean -> corrupted: the engine's by-position sweep at that position, or TransformerLens's."""
    last = batch.clean_tokens.shape[1] - 1
    if engine is not None:
        return engine.sweep("head_out_by_pos", positions=[last])[:, last]
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    cells = pd.DataFrame(
        [(l, last, h) for l in range(n_layers) for h in range(n_heads)], columns=["layer", "pos", "head"]
    )
    metric = mean_logit_diff_metric(batch.answer_tokens)
    out = tl_patching.get_act_patch_attn_head_out_by_pos(
        model, batch.corrupted_tokens, clean_cache, metric, index_axis_names=None, index_df=cells
    )
    return out.reshape(n_layers, n_heads)
