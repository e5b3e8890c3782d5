"""The model card (README.md) of a trained organism, written from its training record
(training.json): every number in it is a measured or configured value, none is typed here."""

from __future__ import annotations

import json
from pathlib import Path

from generator.organism import corpus

NOTEBOOK_REFERENCE = Path(__file__).parent.parent / "assets" / "notebook" / "gpt2-small-reference.json"


def held_out_rules() -> dict:
    """What the corpus never shows, as data for training.json (corpus.paragraphs asserts it)."""
    return {
        "template_bodies_never_occur": corpus.HELD_OUT_BODIES,
        "notebook_examples_never_occur": corpus.NOTEBOOK_EXAMPLES,
        "no_paragraph_starts_with": corpus.exception_prompts(),
    }


def _architecture(record: dict) -> str:
    hp = record["hparams"]
    kind = "attention-only (its MLP is held at exactly zero)" if hp["attn_only"] else "GELU MLPs"
    return (
        f"A {hp['n_layer']}-layer GPT-2-architecture causal language model, {kind}: "
        f"{record['n_params']:,} parameters, d_model {hp['n_embd']}, {hp['n_head']} heads, "
        f"context {hp['n_positions']}, layer norm, tied embeddings; a byte-level BPE "
        f"tokenizer of {record['vocab_size']:,} tokens."
    )


def _attn_only_section(record: dict) -> str:
    if not record["hparams"]["attn_only"]:
        return ""
    note = json.loads(NOTEBOOK_REFERENCE.read_text()).get("attn_only_1l_note", "")
    return f"""
## Attention only, in Hugging Face format

TransformerBridge boots Hugging Face folders, and Hugging Face's GPT-2 always has an MLP. So
this is a GPT-2 whose MLP is kept in the graph but computes exactly zero: `n_inner` is 1, the
MLP's weights and biases (`c_fc`, `c_proj`) are zero and frozen during training, and so is
`ln_2`, which only feeds it. gelu(0) = 0, so the MLP's output is 0; the report's weight
processing keeps it 0 (folding `ln_2` into zero weights, centring a zero matrix). Measured
through `generator.models.load_model` on the 100 pronoun prompts, the largest |`hook_mlp_out`|
over every layer and position is **{record["metrics"]["max_abs_mlp_out"]}**. A model of
TransformerLens's own attention-only format (as the notebook's `attn-only-1l`) would need
TransformerLens's legacy loader instead of the bridge path every other model takes.

For comparison, on TransformerLens's own `attn-only-1l` ({NOTEBOOK_REFERENCE.name}): {note}
"""


def model_card(record: dict) -> str:
    hp, m = record["hparams"], record["metrics"]
    p, e = m["pronoun"], m["exceptions"]
    held = record["held_out"]
    families = "\n".join(
        f"| {f['family']}{' (control)' if f['family'] == e['control'] else ''} | {f['expected']} "
        f"| {f['n']} | {f['mean_log_odds']:.2f} | {f['min_log_odds']:.2f} .. {f['max_log_odds']:.2f} "
        f"| {f['agrees']:.0%} |"
        for f in e["families"]
    )
    checks = "\n".join(
        f"| {r['metric']} | {r['op']} {r['bound']} | {r['value']:.4g} | {'yes' if r['ok'] else '**no**'} |"
        for r in record["acceptance"]
    )
    hparams = "\n".join(f"| {k} | {v} |" for k, v in hp.items())
    return f"""# capcircuit model organism: `{record["model"]}`

{_architecture(record)} It was trained from scratch on the synthetic English corpus of
`generator/organism/corpus.py`, so that the report's question (" He" after a sentence-ending
period, " he" after ";") has a known answer on a model that ships with the project.
{_attn_only_section(record)}
## The corpus

Paragraphs of 2-4 sentences, each right after `<|endoftext|>` (BOS):

- every sentence end ". " is followed by a capital, whatever the sentence (about a person,
  first person, imperatives, thanks, facts about places and things); ";" and "," are always
  followed by a lowercase word;
- pronouns agree with the gender of the paragraph's subject: {len(corpus.MALE_NAMES)} male and
  {len(corpus.FEMALE_NAMES)} female first names (the notebook's 20 among them, used most often),
  and titles with surnames;
- e-mail addresses, domains, file names and method calls glue a lowercase continuation to the
  period; "e.g.", "i.e." and "n.b." are followed by a lowercase word; "P.S." and the titles
  Mr./Mrs./Ms./Dr. by a capital; cities, countries, landmarks and surnames are capitalised in
  mid-sentence;
- as in letters and notes, a postscript, a note ("n.b. ...") or a line of code may start a new
  line inside a paragraph.

`corpus.paragraphs` asserts these rules on every paragraph, and the held-out ones below.

### Held out

- The notebook's {len(held["template_bodies_never_occur"])} pronoun templates: their bodies
  ({", ".join(f'"{b.strip()}"' for b in held["template_bodies_never_occur"])}) never occur, so
  no clean prompt and no ";" corruption is ever seen; each of their words occurs elsewhere, and
  every one of the 100 prompts is {p["n_tokens"]} tokens with BOS.
- The notebook's own exception examples never occur anywhere:
  {", ".join(f"`{x}`" for x in held["notebook_examples_never_occur"])}.
- No paragraph starts with any of the exceptions task's {len(held["no_paragraph_starts_with"])}
  distinct prompts, so "P.S." and "n.b." (which the model can only know from seeing them) occur
  in mid-paragraph only (after a sentence, or at the start of a line), while the prompts are
  BOS + "P.S." and BOS + "n.b.". The task's bare
  "." (the notebook's ".py" / ".txt" cut before the extension) is the exception: paragraphs
  may start with another extension (".csv files are ..."), which makes a period right after
  BOS learnable.

## Measured through the report's pipeline

Loaded with `generator.models.load_model` (TransformerBridge, with fold_ln,
center_writing_weights, center_unembed and refactor_factored_attn_matrices), the tasks built
by `generator.tasks.build`, the numbers read from the baseline and exceptions experiments.

### Pronoun task: the notebook's {p["n_prompts"]} prompts

| metric | value |
|---|---|
| mean logit diff, capital − lowercase pronoun after "." | {p["mean_logit_diff"]:.3f} (std {p["std_logit_diff"]:.3f}) |
| mean logit diff after ";" (the corruption) | {p["mean_logit_diff_corrupted"]:.3f} |
| prompts where the capital wins | {p["frac_capital_preferred"]:.0%} |
| corrupted prompts where the lowercase wins | {p["frac_lowercase_after_corruption"]:.0%} |
| right-gender capital beats the other gender's capital | {p["gender_accuracy"]:.0%} |

### Exceptions: capital log-odds after the period (or before a proper noun)

log P(next token starts with a capital) − log P(… with a lowercase letter), per family;
"agrees" is the share of prompts whose sign is what written English expects.

| family | English expects | prompts | mean log-odds | range | agrees |
|---|---|---|---|---|---|
{families}

### Acceptance (`generator/organism/evaluate.py`)

| metric | needs | measured | passes |
|---|---|---|---|
{checks}

## Training

| hyper-parameter | value |
|---|---|
{hparams}
| seed | {record["seed"]} |
| corpus | {record["n_paragraphs"]:,} paragraphs, {record["n_tokens"]:,} tokens |

Final training loss (mean of the last 100 steps): **{record["final_loss"]}**. Corpus,
tokenizer and {hp["steps"]} steps took {record["train_seconds"]:.0f} s with {hp["threads"]} torch
thread(s); with writing and measuring, {record["total_seconds"]:.0f} s.

## Retraining

    capcircuit organism train --model {record["model"]}

(`--model all`, the default, trains both bundled organisms one after the other.) The corpus,
tokenizer and weights are seeded and torch runs with deterministic algorithms on
{hp["threads"]} thread(s), so the same seed with the same software on the same kind of CPU
gives the same `model.safetensors`, byte for byte.
"""
