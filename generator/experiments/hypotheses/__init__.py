"""The notebook's hypotheses ("Hypothesis of what is really going on?"), tested: copying
(copying.py), the attention head (heads.py), and which positions matter (positions.py). Each
returns numbers and a verdict computed from them with the thresholds in Params; the page words
the verdicts."""

from __future__ import annotations

import torch

from generator.experiments import Result
from generator.experiments.baseline import attention_only
from generator.experiments.hypotheses import copying, heads, positions
from generator.experiments.hypotheses.roles import ROLES, batch_roles
from generator.experiments.params import Hypotheses as Params
from generator.metrics import num

EXTRA_TASKS = copying.SETS + positions.TASKS


@torch.no_grad()
def run(model, batch, params: Params, inputs: dict) -> Result:
    tasks = inputs["tasks"]
    sets = copying.prompt_sets(model, batch, tasks)
    pairs = copying.word_pairs(model, set(batch.answer_tokens.flatten().tolist()))
    direction = copying.direction_analysis(model, batch, pairs, params.same_components)
    cap_dir = copying.capital_direction(model, pairs)
    chosen = heads.chosen_heads(model, inputs["attribution"], inputs.get("patching"), params.heads)
    pron_dirs = copying.answer_directions(model, batch.answer_tokens)
    roles = batch_roles(model, batch)
    rows = heads.analyse(model, batch, roles, chosen, pron_dirs, cap_dir, inputs.get("patching"))
    present = [r for r in ROLES if any(r in row for row in roles)]  # a list: the store sorts dict keys
    ld = direction["logit_diff"]
    parts = dict(zip(direction["components"], direction["pronoun_dla"]))
    metrics = {
        "n_layers": model.cfg.n_layers,
        "attn_only": attention_only(model),
        "thresholds": params.model_dump(),
        "copying": {
            "sets": sets["rows"],
            "direction": direction,
            "verdict": copying.verdict(sets, direction, params.keeps, params.same_components),
        },
        "attention": {
            "roles": present,
            "heads": rows,
            "role_totals": {r: num(sum(row["writes_pronoun"][r] for row in rows)) for r in present},
            "all_heads_share": num(sum(v for k, v in parts.items() if k.startswith("L")) / ld) if ld else None,
            "mechanism": mechanism(parts, ld),
            "verdict": heads.summary(rows, ld, params.mostly),
            "heads_minor": abs(sum(v for k, v in parts.items() if k.startswith("L"))) < params.minor * abs(ld),
        },
        "positions": [positions.analyse(model, tasks[t], params.matters, params.min_gap) for t in positions.TASKS],
    }
    return Result(metrics)


def mechanism(parts: dict[str, float], logit_diff: float) -> dict:
    """The logit difference as the sum of its direct parts (embeddings, heads, MLPs, biases):
    what a one-layer attention-only model's mechanism is, completely."""
    total = sum(parts.values())
    return {
        "embed": num(parts.get("embed", 0.0) + parts.get("pos_embed", 0.0)),
        "heads": num(sum(v for k, v in parts.items() if k.startswith("L"))),
        "mlps": num(sum(v for k, v in parts.items() if k.endswith("mlp_out"))),
        "bias": num(parts.get("bias", 0.0)),
        "total": num(total),
        "unembed_bias": num(logit_diff - total),
    }
