"""Baseline: does the model prefer the capital pronoun after ". " and the lowercase after ";"?

The notebook's "Create Dataset" and "Make corrupted dataset" cells: per-prompt logit
differences (correct capital minus lowercase of the same gender) on clean and corrupted
prompts, gender agreement, and the notebook's single-prompt probes: `test_prompt` on "." alone
(answer " He"), on "Daniel is a great friend." (answer " he", as the notebook ran it on
attn-only-1l) and on the example prompt, plus the logit difference of "David is a really great
friend." (its "Tests" section).
"""

from __future__ import annotations

import torch

from generator.experiments import Result
from generator.experiments.params import Baseline as Params
from generator.metrics import logit_diff, num


def test_prompt(model, prompt: str, answer: str, k: int) -> dict:
    """TransformerLens's `utils.test_prompt` (prepend_bos=True) as data rather than print-out:
    the top-k next tokens with logits and probabilities, and the answer's rank among them all.
    Written here because test_prompt prints and returns nothing."""
    logits = model(model.to_tokens(prompt))[0, -1]
    probs = logits.softmax(-1)
    top = probs.topk(k)
    ids = model.to_tokens(answer, prepend_bos=False)[0]
    row = {
        "prompt": prompt,
        "answer": answer,
        "str_tokens": model.to_str_tokens(prompt),
        "top": [
            {"rank": i, "token": model.to_string(int(t)), "prob": num(p), "logit": num(logits[t])}
            for i, (p, t) in enumerate(zip(top.values, top.indices))
        ],
        "answer_single_token": len(ids) == 1,
        "answer_rank": None,
        "answer_logit": None,
        "answer_prob": None,
    }
    if len(ids) == 1:
        a = int(ids[0])
        row.update(answer_rank=int((logits > logits[a]).sum()), answer_logit=num(logits[a]), answer_prob=num(probs[a]))
    return row


def pair_logit_diff(model, prompt: str, answers: list[str]) -> float | None:
    """logit(answers[0]) − logit(answers[1]) after `prompt`; None where an answer is not one token."""
    ids = [model.to_tokens(a, prepend_bos=False)[0] for a in answers]
    if any(len(i) != 1 for i in ids):
        return None
    pair = torch.stack([i[0] for i in ids])[None]
    return num(logit_diff(model(model.to_tokens(prompt)), pair)[0])


def attention_only(model) -> bool:
    """No MLP, or MLPs held at exactly zero (the bundled attention-only organism)."""
    if getattr(model.cfg, "attn_only", False):
        return True
    return bool((model.W_out == 0).all()) and bool((model.b_out == 0).all())


def other_group_capital(spec) -> list[list[str]]:
    """For each prompt, the capital answers of the other groups (the other gender)."""
    capitals = sorted({p.answers[0] for p in spec.prompts})
    return [[c for c in capitals if c != p.answers[0]] for p in spec.prompts]


@torch.no_grad()
def run(model, batch, params: Params, inputs: dict) -> Result:
    spec = batch.spec
    clean_logits = model(batch.clean_tokens)[:, -1]
    corrupted_logits = model(batch.corrupted_tokens)[:, -1]
    clean = logit_diff(clean_logits, batch.answer_tokens)
    corrupted = logit_diff(corrupted_logits, batch.answer_tokens)

    # gender agreement: the right capital pronoun beats every other group's capital pronoun
    capital_ids = {p.answers[0]: int(batch.answer_tokens[i, 0]) for i, p in enumerate(spec.prompts)}
    agrees = [
        all(clean_logits[i, batch.answer_tokens[i, 0]] > clean_logits[i, capital_ids[o]] for o in others)
        for i, others in enumerate(other_group_capital(spec))
    ]

    names = list(dict.fromkeys(p.name for p in spec.prompts))
    rows = [
        {
            "index": i,
            "prompt": p.text,
            "corrupted_prompt": p.corrupted,
            "template": p.template,
            "name": p.name,
            "group": p.group,
            "correct": p.answers[0],
            "wrong": p.answers[1],
            "clean": num(clean[i]),
            "corrupted": num(corrupted[i]),
            "gender_ok": bool(agrees[i]),
        }
        for i, p in enumerate(spec.prompts)
    ]
    mean, frac = float(clean.mean()), float((clean > 0).float().mean())
    cfg = model.cfg
    metrics = {
        "n_prompts": len(rows),
        "n_tokens": int(batch.clean_tokens.shape[1]),
        "mean_logit_diff": num(mean),
        "mean_logit_diff_corrupted": num(corrupted.mean()),
        "std_logit_diff": num(clean.std()),
        "frac_capital_preferred": num(frac),
        "frac_lowercase_after_corruption": num((corrupted < 0).float().mean()),
        "gender_accuracy": num(sum(agrees) / len(agrees)),
        # the notebook's question for a model: can it perform this task? (thresholds: params)
        "performs_task": mean >= params.performs_min_logit_diff and frac >= params.performs_min_fraction,
        "performs_thresholds": {"logit_diff": params.performs_min_logit_diff, "fraction": params.performs_min_fraction},
        "example_prompt": spec.example,
        "position_str_tokens": model.to_str_tokens(spec.example),
        "probes": [test_prompt(model, prompt, answer, params.top_k) for prompt, answer in params.probes],
        "single_prompt": {
            "prompt": params.single_prompt,
            "answers": list(params.single_prompt_answers),
            "logit_diff": pair_logit_diff(model, params.single_prompt, params.single_prompt_answers),
        },
        "per_prompt": rows,
        "templates": list(spec.templates),
        "names": names,
        "model_shape": {
            "n_layers": cfg.n_layers,
            "n_heads": cfg.n_heads,
            "d_model": cfg.d_model,
            "d_vocab": cfg.d_vocab,
            "attn_only": attention_only(model),
        },
    }
    return Result(metrics)
