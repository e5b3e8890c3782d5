"""Exceptions: periods that are not followed by a sentence-starting capital.

For each family of the exceptions task (e-mail addresses, domains, file names, method calls,
abbreviations, P.S., titles, and ordinary sentence ends as the control), the primary measure
is the capital log-odds at the position after the period:

    log P(next token starts with a capital letter) − log P(next token starts with a lowercase letter)

over the whole vocabulary (a leading space stripped). It needs no answer pair, so it means the
same on every tokenizer; above zero the model treats the period as a sentence end. The logit
lens reads the same measure from each accumulated residual stream at the final position,
through the final LayerNorm (its scale recomputed for each residual, as in a logit lens) and
the unembedding.

Secondary: the logit difference capital − lowercase of each prompt's answer pair ("Com" /
"com"), only where both answers are single tokens for this model (the task marks the others
with answer ids −1; their difference is None). Prompts differ in length; those of equal token
length run as one batch.
"""

from __future__ import annotations

import torch

from generator.architecture import has_resid_mid
from generator.engine.ops import capital_log_odds  # written once, shared with the circuit runner
from generator.experiments import Result
from generator.experiments.params import Exceptions as Params
from generator.heads import stack_label
from generator.metrics import num, to_list
from generator.models import final_logits_only


def case_masks(model) -> tuple[torch.Tensor, torch.Tensor]:
    """Which vocabulary entries start (after any leading space) with an upper / lower case letter."""
    tokenizer = model.tokenizer
    words = [w.lstrip()[:1] for w in tokenizer.batch_decode([[i] for i in range(len(tokenizer))])]
    upper = torch.zeros(model.cfg.d_vocab, dtype=torch.bool)
    lower = torch.zeros(model.cfg.d_vocab, dtype=torch.bool)
    n = min(len(words), model.cfg.d_vocab)
    upper[:n] = torch.tensor([w.isupper() for w in words[:n]])
    lower[:n] = torch.tensor([w.islower() for w in words[:n]])
    return upper, lower


@torch.no_grad()
def run(model, batch, params: Params, inputs: dict) -> Result:
    spec = batch.spec
    rows, lenses, labels = measure(model, batch)
    control = spec.info["control"]
    control_rows = [r for r in rows if r["family"] == control]
    control_mean = mean([r["log_odds"] for r in control_rows])
    control_pair = mean_or_none([r["logit_diff"] for r in control_rows])
    families = [
        family_row(spec, f, [r for r in rows if r["family"] == f], control_mean, control_pair) for f in spec.groups
    ]
    lens = {f: to_list(lenses[[r["family"] == f for r in rows]].mean(0)) for f in spec.groups}
    others = [f for f in families if f["family"] != control]
    lowest = min(others, key=lambda f: f["vs_control"])
    metrics = {
        "control": control,
        "control_mean": num(control_mean),
        "control_mean_logit_diff": num(control_pair) if control_pair is not None else None,
        "n_prompts": len(rows),
        "n_pairs": sum(r["single_token_pair"] for r in rows),
        "unusable_pairs": [
            {
                "prompt": r["prompt"],
                "family": r["family"],
                "split": [model.to_str_tokens(a, prepend_bos=False) for a in (r["capital"], r["lowercase"])],
            }
            for r in rows
            if not r["single_token_pair"]
        ],
        "families": families,
        "per_prompt": rows,
        "lens": {"labels": labels, "families": lens},
        "agreement": num(mean([f["agrees"] for f in others])),
        "lens_split": lens_split(labels, lens[control], lens[lowest["family"]], lowest["family"]),
    }
    return Result(metrics)


def measure(model, batch) -> tuple[list[dict], torch.Tensor, list[str]]:
    """Per prompt: the capital log-odds and probabilities of the next token, the answer pair's
    logit difference where both answers are one token, and the logit lens of the log-odds
    ([prompt, lens entry], with the lens labels)."""
    spec = batch.spec
    upper, lower = (m.to(batch.answer_tokens.device) for m in case_masks(model))
    # prompts of equal token length run as one batch: far fewer forward passes than one each
    by_length: dict[int, list[int]] = {}
    for i, tokens in enumerate(batch.clean_tokens):
        by_length.setdefault(int(tokens.shape[1]), []).append(i)
    rows, lenses = [None] * len(spec.prompts), [None] * len(spec.prompts)
    for length, idx in by_length.items():
        tokens = torch.cat([batch.clean_tokens[i] for i in idx])
        logits, cache = model.run_with_cache(tokens, **final_logits_only(model))
        final = logits[:, -1]
        log_odds = capital_log_odds(final, upper, lower)
        probs = final.float().softmax(-1)
        resid, resid_labels = cache.accumulated_resid(
            layer=-1, incl_mid=has_resid_mid(model), pos_slice=-1, return_labels=True
        )
        lens_logits = cache.apply_ln_to_stack(resid, layer=-1, pos_slice=-1, recompute_ln=True) @ model.W_U + model.b_U
        lens = capital_log_odds(lens_logits, upper, lower)  # [lens entry, prompt]
        for j, i in enumerate(idx):
            p, pair = spec.prompts[i], batch.answer_tokens[i]
            single = bool((pair >= 0).all())
            rows[i] = {
                "prompt": p.text,
                "family": p.group,
                "notebook": p.from_notebook,
                "capital": p.answers[0],
                "lowercase": p.answers[1],
                "n_tokens": length,
                "log_odds": num(log_odds[j]),
                "p_capital": num(probs[j, upper].sum()),
                "p_lowercase": num(probs[j, lower].sum()),
                "single_token_pair": single,
                "logit_diff": num(final[j, pair[0]] - final[j, pair[1]]) if single else None,
            }
            lenses[i] = lens[:, j]
        del cache
    return rows, torch.stack(lenses), [stack_label(s) for s in resid_labels]


def family_row(spec, family: str, mine: list[dict], control_mean: float, control_pair: float | None) -> dict:
    """One family's summary: its mean capital log-odds, against the control's and against what
    written English expects."""
    expected = spec.info["families"][family]["expected"]
    odds = [r["log_odds"] for r in mine]
    pairs = [r["logit_diff"] for r in mine if r["logit_diff"] is not None]
    capital_side = mean(odds) > 0
    return {
        "family": family,
        "description": spec.info["families"][family]["description"],
        "expected": expected,
        "n": len(mine),
        "example": mine[0]["prompt"],
        "mean_log_odds": num(mean(odds)),
        "min_log_odds": min(odds),
        "max_log_odds": max(odds),
        "vs_control": num(mean(odds) - control_mean),
        # does the sign of each prompt's log-odds match written English?
        "agrees": num(mean([(o > 0) == (expected == "capital") for o in odds])),
        "sentence_end_like": capital_side,  # on average treated like a sentence end
        "as_english": capital_side == (expected == "capital"),
        "p_capital": num(mean([r["p_capital"] for r in mine])),
        "p_lowercase": num(mean([r["p_lowercase"] for r in mine])),
        "n_pairs": len(pairs),
        "mean_logit_diff": num(mean(pairs)) if pairs else None,
        "vs_control_logit_diff": num(mean(pairs) - control_pair) if pairs and control_pair is not None else None,
    }


def lens_split(labels: list[str], control: list[float], family: list[float], name: str) -> dict:
    """Where the lens tells a family apart from the control: their gap (control − family) at the
    first and final residual stream, and the first stream that carries half the final gap."""
    gap = [c - f for c, f in zip(control, family)]
    half = next((label for label, g in zip(labels, gap) if gap[-1] != 0 and g / gap[-1] >= 0.5), None)
    return {"family": name, "first": num(gap[0]), "final": num(gap[-1]), "half": half}


def mean(values) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values)


def mean_or_none(values) -> float | None:
    values = [v for v in values if v is not None]
    return mean(values) if values else None
