"""Check a model-organism checkpoint on the seed's pronoun task, loaded as the report loads it.

    python -m generator.organism.evaluate generator/assets/organism
"""

import pathlib
import sys

import torch

from generator.organism import corpus

SEED_NAMES = {"m": corpus.MALE_NAMES[:10], "f": corpus.FEMALE_NAMES[:10]}
ANSWERS = {"m": (" He", " he"), "f": (" She", " she")}

# Periods that do not end a sentence. The next token should not be capitalised, except after
# "P.S.", which opens a postscript (a control: a capital is right there).
EXCEPTION_PROMPTS = {
    "email": "{name} wrote to {lower}@gmail.",
    "domain": "{name} visited google.",
    "file name": "{name} opened the file notes.",
    "method call": "{name} used list.",
    "e.g.": "{name} likes food, e.g.",
    "n.b.": "{name} was at the park, n.b.",
    "P.S. (control: capital)": "{name} has a nice car. P.S.",
}

# What the bundled checkpoint must reach for the report's story to hold on it.
ACCEPTANCE = {
    "mean_logit_diff_clean": (">=", 3.0),
    "mean_logit_diff_corrupted": ("<=", -1.0),
    "gender_accuracy": (">=", 0.95),
}


def load(ckpt_dir):
    """The checkpoint through TransformerBridge with the seed notebook's weight processing."""
    from transformer_lens.model_bridge import TransformerBridge

    model = TransformerBridge.boot_transformers(str(ckpt_dir), device="cpu")
    model.enable_compatibility_mode(
        fold_ln=True, center_writing_weights=True, center_unembed=True,
        refactor_factored_attn_matrices=True,
    )
    return model


@torch.no_grad()
def pronoun_metrics(model) -> dict:
    """Mean capital-minus-lowercase logit diff on clean and ";"-corrupted prompts, gender accuracy."""
    diffs = {"clean": [], "corrupted": []}
    gender_right = []
    for g, names in SEED_NAMES.items():
        capital, lower = (model.to_single_token(a) for a in ANSWERS[g])
        other_capital = model.to_single_token(ANSWERS["f" if g == "m" else "m"][0])
        for kind in diffs:
            prompts = [t.format(name=n) for t in corpus.HELD_OUT_TEMPLATES for n in names]
            if kind == "corrupted":
                prompts = [p[:-1] + ";" for p in prompts]
            toks = model.to_tokens(prompts)  # prepends BOS
            assert toks.shape[1] == 8, f"seed prompts should be 8 tokens with BOS, got {toks.shape}"
            logits = model(toks)[:, -1]
            diffs[kind] += (logits[:, capital] - logits[:, lower]).tolist()
            if kind == "clean":
                gender_right += (logits[:, capital] > logits[:, other_capital]).tolist()
    return {
        "mean_logit_diff_clean": round(sum(diffs["clean"]) / len(diffs["clean"]), 4),
        "mean_logit_diff_corrupted": round(sum(diffs["corrupted"]) / len(diffs["corrupted"]), 4),
        "gender_accuracy": round(sum(gender_right) / len(gender_right), 4),
    }


@torch.no_grad()
def exception_capital_prob(model) -> dict:
    """Mean probability that the next token starts with a capital letter, per exception family."""
    tokens = model.tokenizer.convert_ids_to_tokens(list(range(model.cfg.d_vocab)))
    capital = torch.tensor([t.removeprefix("\u0120")[:1].isupper() for t in tokens])  # Ġ = space
    out = {}
    for family, template in EXCEPTION_PROMPTS.items():
        by_length = {}  # one forward pass per prompt length (the bridge's per-call cost is high)
        for name in SEED_NAMES["m"] + SEED_NAMES["f"]:
            toks = model.to_tokens(template.format(name=name, lower=name.lower()))[0]
            by_length.setdefault(len(toks), []).append(toks)
        probs = []
        for rows in by_length.values():
            p = model(torch.stack(rows))[:, -1].softmax(-1)
            probs += p[:, capital].sum(-1).tolist()
        out[family] = round(sum(probs) / len(probs), 4)
    return out


def check_acceptance(metrics: dict) -> None:
    """Raise, naming every metric that misses its threshold, so a bad retrain is never shipped."""
    misses = [f"{k} = {metrics[k]} (needs {op} {bound})" for k, (op, bound) in ACCEPTANCE.items()
              if not (metrics[k] >= bound if op == ">=" else metrics[k] <= bound)]
    if misses:
        raise ValueError("the trained organism misses its acceptance thresholds: "
                         + "; ".join(misses) + ". Train longer (steps=...) or fix the corpus.")


def evaluate(ckpt_dir) -> dict:
    model = load(ckpt_dir)
    metrics = pronoun_metrics(model)
    metrics["exception_capital_prob"] = exception_capital_prob(model)
    metrics["exception_prompts"] = {f: t.format(name="John", lower="john")
                                    for f, t in EXCEPTION_PROMPTS.items()}
    return metrics


if __name__ == "__main__":
    import json

    print(json.dumps(evaluate(pathlib.Path(sys.argv[1] if len(sys.argv) > 1 else
                                           "generator/assets/organism")), indent=2))
