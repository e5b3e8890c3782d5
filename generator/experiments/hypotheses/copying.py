"""Hypothesis 1, "copying? But how do you copy the concept of capital letter?".

Two tests. (1) Prompt sets: the pronoun task's templates with lowercase names, with a lowercase
subject that is no name, and with a capitalised subject that is no name: if the capital were
copied from a capitalised word in context, the preference for " He" over " he" would need one.
(2) The capitalisation direction: the mean of W_U[:, " Word"] − W_U[:, " word"] over the
vocabulary's single-token word pairs (the task's own answer pairs left out). Direct logit
attribution at the final position (TransformerLens's get_full_resid_decomposition: embeddings,
each head, each MLP, the biases; scaled by the final LayerNorm the model applied, as the
attribution experiment does) onto that direction, onto each pair's own direction and onto the
task's He − he: if the components that write He − he are those that write every word's
capital, the model has a general "capitalise next" feature rather than a copy.
"""

from __future__ import annotations

import torch

from generator.metrics import logit_diff, num, to_list
from generator.models import final_logits_only


def word_pairs(model, exclude: set[int]) -> list[tuple[int, int]]:
    """(id of " Word", id of " word") for every single-token title-case word whose lowercase
    form is also a single token, from the tokenizer itself; `exclude`: capital ids left out."""
    texts = {model.to_string([i]): i for i in range(model.cfg.d_vocab)}
    pairs = []
    for text, i in texts.items():
        word = text[1:]
        if text[:1] == " " and len(word) >= 2 and word.isascii() and word.isalpha() and word.istitle():
            j = texts.get(" " + word.lower())
            if j is not None and i not in exclude:
                pairs.append((i, j))
    return sorted(pairs)


def capital_direction(model, pairs: list[tuple[int, int]]) -> torch.Tensor | None:
    """The mean of W_U[:, " Word"] − W_U[:, " word"] over the pairs (None without pairs)."""
    if not pairs:
        return None
    cap_ids, low_ids = torch.tensor(pairs).T
    return (model.W_U[:, cap_ids] - model.W_U[:, low_ids]).mean(-1)


def components(model, tokens: torch.Tensor) -> tuple[torch.Tensor, list[str], torch.Tensor]:
    """The final position's residual stream split into components, LayerNorm-scaled as the
    model scaled it: ([component, batch, d_model], labels, logits)."""
    logits, cache = model.run_with_cache(tokens)
    stack, labels = cache.get_full_resid_decomposition(layer=-1, pos_slice=-1, expand_neurons=False, return_labels=True)
    return cache.apply_ln_to_stack(stack, layer=-1, pos_slice=-1), list(labels), logits


def answer_directions(model, answer_tokens: torch.Tensor) -> torch.Tensor:
    """[batch, d_model]: W_U[:, correct] − W_U[:, wrong] per prompt."""
    return model.W_U[:, answer_tokens[:, 0]].T - model.W_U[:, answer_tokens[:, 1]].T


def cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    """Cosine of two vectors; 0 where one is zero."""
    norm = a.norm() * b.norm()
    return float((a @ b) / norm) if norm > 0 else 0.0


def set_logit_diff(model, batch) -> torch.Tensor:
    """Per-prompt logit difference of a task whose prompts may differ in length (grouped by
    length, so each forward is one batch without padding)."""
    rows = batch.clean_tokens if isinstance(batch.clean_tokens, list) else list(batch.clean_tokens[:, None])
    out = torch.empty(len(rows))
    by_length: dict[int, list[int]] = {}
    for i, row in enumerate(rows):
        by_length.setdefault(row.shape[-1], []).append(i)
    for idx in by_length.values():
        tokens = torch.cat([rows[i] for i in idx])
        answers = batch.answer_tokens[idx]
        out[idx] = logit_diff(model(tokens, **final_logits_only(model)), answers).float().cpu()
    return out


def direction_analysis(model, batch, pairs: list[tuple[int, int]], min_cosine: float) -> dict:
    """DLA of every component onto He − he, the capitalisation direction and each pair's."""
    answers = batch.answer_tokens
    scaled, labels, logits = components(model, batch.clean_tokens)
    pron = (scaled * answer_directions(model, answers)).sum(-1).mean(-1)  # [component]
    result = {
        "n_pairs": len(pairs),
        "example_pairs": [[model.to_string([i]), model.to_string([j])] for i, j in pairs[:12]],
        "components": labels,
        "pronoun_dla": to_list(pron),
        "logit_diff": num(logit_diff(logits, answers).mean()),
    }
    if not pairs:
        return {
            **result,
            "capital_dla": None,
            "profile_cosine": None,
            "direction_cosine": None,
            "pair_cosines": None,
            "along_share": None,
        }
    cap_ids, low_ids = torch.tensor(pairs).T
    pair_dirs = model.W_U[:, cap_ids] - model.W_U[:, low_ids]  # [d_model, pair]
    cap = pair_dirs.mean(-1)
    mean_scaled = scaled.mean(1)  # [component, d_model]: DLA is linear in the prompt
    cap_profile = mean_scaled @ cap
    pair_profiles = (mean_scaled @ pair_dirs).T  # [pair, component]
    pair_cos = torch.tensor([cosine(p, cap_profile) for p in pair_profiles])
    # the part of each prompt's He − he direction that lies along the capitalisation direction,
    # as a share of its logit difference (DLA total)
    dirs = answer_directions(model, answers)
    beta = (dirs @ cap) / (cap @ cap)
    final = scaled.sum(0)  # [batch, d_model]
    along = (beta * (final @ cap)).mean() / (final * dirs).sum(-1).mean()
    return {
        **result,
        "capital_dla": to_list(cap_profile),
        "profile_cosine": num(cosine(pron, cap_profile)),
        # how far the answers' own direction is the general one, in weight space
        "direction_cosine": num(sum(cosine(d, cap) for d in dirs) / len(dirs)),
        "pair_cosines": {
            "median": num(pair_cos.median()),
            "share_above": num((pair_cos >= min_cosine).float().mean()),
            "min": num(pair_cos.min()),
        },
        "along_share": num(along),
    }


SETS = ("copy_lowercase_names", "copy_no_capital", "copy_capital_word")


def prompt_sets(model, batch, tasks: dict) -> dict:
    """Mean logit difference of the pronoun task and of each copying prompt set, the share of
    prompts where the capital wins, and each set's mean as a share of the task's."""
    base = logit_diff(model(batch.clean_tokens, **final_logits_only(model)), batch.answer_tokens).float().cpu()
    rows = [
        {
            "task": batch.spec.name,
            "n": len(base),
            "logit_diff": num(base.mean()),
            "capital_wins": num((base > 0).float().mean()),
        }
    ]
    for name in SETS:
        values = set_logit_diff(model, tasks[name])
        usable = values[(tasks[name].answer_tokens >= 0).all(-1).cpu()]
        rows.append(
            {
                "task": name,
                "n": len(usable),
                "logit_diff": num(usable.mean()),
                "capital_wins": num((usable > 0).float().mean()),
            }
        )
    for row in rows:
        row["kept"] = num(row["logit_diff"] / rows[0]["logit_diff"]) if rows[0]["logit_diff"] != 0 else None
    return {"rows": rows}


def verdict(sets: dict, direction: dict, keeps: float, same: float) -> dict:
    """Which reading the numbers support:
    - no_behaviour: the task's own logit difference is not positive (nothing to explain);
    - copying: the capital preference keeps less than `keeps` of its size without a capitalised
      word in context but keeps it with a capitalised word that is no name;
    - general_feature: it keeps at least `keeps` without any capitalised word, and the
      components writing He − he write the capitalisation direction (profile cosine >= `same`)
      for most word pairs (median per-pair cosine >= `same`);
    - pronoun_specific: it keeps without a capitalised word, but through components that do not
      write the capitalisation direction in general;
    - needs_name: it falls below `keeps` both without a capitalised word and with a
      capitalised word that is no name: only a capitalised name brings it."""
    kept = {r["task"]: r["kept"] for r in sets["rows"]}
    base = sets["rows"][0]["logit_diff"]
    without = min(kept["copy_lowercase_names"], kept["copy_no_capital"]) if base > 0 else None
    with_capital = kept["copy_capital_word"] if base > 0 else None
    general = (
        direction["profile_cosine"] is not None
        and direction["profile_cosine"] >= same
        and direction["pair_cosines"]["median"] >= same
    )
    if base <= 0:
        kind = "no_behaviour"
    elif without >= keeps:
        kind = "general_feature" if general else "pronoun_specific"
    elif with_capital >= keeps:
        kind = "copying"
    else:
        kind = "needs_name"
    return {
        "kind": kind,
        "kept_without_capital": without,
        "kept_with_capital_word": with_capital,
        "kept_lowercase_names": kept["copy_lowercase_names"],
        "kept_no_capital": kept["copy_no_capital"],
        "same_components": general,
    }
