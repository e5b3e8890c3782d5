"""The model card (README.md) and the one-paragraph summary of a trained organism, written from
its training record (training.json): every number in them is a measured or configured value,
none is typed here."""

from __future__ import annotations

import json
from pathlib import Path

NOTEBOOK_REFERENCE = Path(__file__).parent.parent / "assets" / "notebook" / "gpt2-small-reference.json"


def _architecture(record: dict) -> str:
    hp = record["hparams"]
    kind = "attention-only (its MLP is held at exactly zero)" if hp["attn_only"] else "GELU MLPs"
    return (
        f"A {hp['n_layer']}-layer GPT-2-architecture causal language model, {kind}: "
        f"{record['n_params']:,} parameters, d_model {hp['n_embd']}, {hp['n_head']} heads, "
        f"context {hp['n_positions']}, layer norm, tied embeddings; a byte-level BPE "
        f"tokenizer of {record['vocab_size']:,} tokens."
    )


def _corpus_words(record: dict) -> str:
    names = [s["title"].split(" (")[0] for s in record["corpus"]["sources"]]
    return ", ".join(names[:-1]) + " and " + names[-1]


def pronoun_finding(record: dict) -> str:
    """What the model does on the notebook's task, in words, from its numbers."""
    p = record["metrics"]["pronoun"]
    clean, corrupted = p["mean_logit_diff"], p["mean_logit_diff_corrupted"]
    if clean > 0 and corrupted < clean:
        verdict = "prefers the capital pronoun after the period" + (
            ", and the lowercase one after the semicolon" if corrupted < 0 else ", less so after the semicolon"
        )
    elif clean > 0:
        verdict = "prefers the capital pronoun after the period, but no less after the semicolon"
    else:
        verdict = "does not prefer the capital pronoun after the period"
    return (
        f"On the notebook's {p['n_prompts']} prompts it {verdict}: a mean logit difference "
        f'(capital − lowercase) of {clean:.2f} after "." and {corrupted:.2f} after ";".'
    )


def summary(record: dict) -> str:
    """One paragraph for the overview: what the model is, what it learned from, how it was
    accepted, and what is by construction and what is not."""
    hp, c = record["hparams"], record["corpus"]
    kind = (
        "a one-layer attention-only GPT-2 (its MLP computes exactly zero)"
        if hp["attn_only"]
        else f"a {hp['n_layer']}-layer GPT-2"
    )
    gate = "; ".join(f"{r['metric']} {r['op']} {r['bound']}" for r in record["acceptance"])
    exceptions = exceptions_finding(record)
    return (
        f"`{record['model']}` is {kind} of {record['n_params']:,} parameters, trained from scratch "
        f"on {c['n_tokens']:,} tokens of English that nobody wrote for this report: "
        f"{_corpus_words(record)}, fetched as Debian packages, cleaned of markup only, with the "
        f"report's prompts held out. {pronoun_finding(record)} On the exceptions (the capital "
        f"log-odds of the next token), {exceptions[0].lower()}{exceptions[1:]} It was accepted on {gate}"
        f"{' (the pronoun task only)' if 'mean_logit_diff' in gate else ' (what it is, not what it does)'}. "
        "By construction: the architecture, the held-out prompts, and the tokenizer's whole-word "
        "tokens for the prompts' names and words (so that each prompt is 8 tokens, as with GPT-2). "
        "Not by construction: everything it does after a period, a semicolon, an e-mail address, "
        "an abbreviation or a title, which it learned from the text and the report measures as found."
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

The notebook asked whether a one-layer attention-only model does the task when trained on
language. This one was trained on the same text as `organism`, and nothing about its
behaviour is gated. {pronoun_finding(record)}

For comparison, on TransformerLens's own `attn-only-1l` ({NOTEBOOK_REFERENCE.name}): {note}
"""


def _sources_table(c: dict) -> str:
    return "\n".join(
        f"| {s['title']} | `{s['package']}` {s['version']} | {s['licence']} | {s['kind']} "
        f"| {s['raw_chars'] / 1e6:.2f} M | {s['clean_chars'] / 1e6:.2f} M | {s['paragraphs']:,} | {s['rows']:,} |"
        for s in c["sources"]
    )


def exceptions_finding(record: dict) -> str:
    """Which exception families the model treats as English does, in words, from its numbers."""
    families = record["metrics"]["exceptions"]["families"]
    right = [f["family"] for f in families if f["agrees"] >= 0.9]
    wrong = [f["family"] for f in families if f["agrees"] <= 0.1]
    parts = []
    if right:
        parts.append(f"as English does in {', '.join(right)} (at least 90% of prompts)")
    if wrong:
        parts.append(f"the other way from English in {', '.join(wrong)} (at most 10%)")
    mixed = len(families) - len(right) - len(wrong)
    if mixed:
        parts.append(f"mixed in {mixed} famil{'y' if mixed == 1 else 'ies'}")
    return "It behaves " + "; ".join(parts) + "."


def _counts(counts: dict) -> str:
    return ", ".join(f'"{k}" ({v})' for k, v in sorted(counts.items())) or "none"


def model_card(record: dict) -> str:
    hp, m, c, held = record["hparams"], record["metrics"], record["corpus"], record["held_out"]
    p, e = m["pronoun"], m["exceptions"]
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
    sha = "\n".join(f"| {k} | `{v}` |" for k, v in record["sha256"].items())
    added = record["corpus"]["whole_word_tokens_added"]
    return f"""# capcircuit model organism: `{record["model"]}`

{_architecture(record)} It was trained from scratch on English text that nobody wrote for this
report — {_corpus_words(record)} — so that what it does after ". ", ";", "john@gmail." or
"Mr." is what it learned from language, as GPT-2 small learned it, and is *found* by the
report rather than designed into it.

{record["summary"]}
{_attn_only_section(record)}
## The corpus

Three Debian packages, fetched by name with `apt-get download` and unpacked with `dpkg-deb -x`
(`capcircuit organism fetch`; `organism train` does it too), pinned to the versions Debian 12
released with. The text is not committed: the packages are the source.

| text | Debian package | licence | what it is | raw chars | cleaned chars | paragraphs | rows |
|---|---|---|---|---|---|---|---|
{_sources_table(c)}

Cleaning (`generator/organism/sources.py`) only drops markup and normalises whitespace: the
lines of a paragraph are joined with single spaces; Gutenberg's `_italics_` underscores, the
Jargon File's `{{cross-reference}}` braces and the Debian Reference's ASCII tables are dropped.
No sentence is inserted, rewritten or selected. Paragraphs longer than the context are cut at
a space into rows; each row is trained as `<|endoftext|>` + row, {c["n_rows"]:,} rows and
{c["n_tokens"]:,} tokens in all ({c["rows_truncated"]} rows were longer than {hp["n_positions"]}
tokens and lost their last {c["tokens_truncated"]:,} tokens). sha256 of the rows:
`{c["corpus_sha256"]}`.

### Held out

- **Verbatim**: no row starts with any of the report's {len(held["row_starts"])} distinct
  prompts (the pronoun task's 100 prompts and their ";" corruptions, the exceptions task's
  prompts). A row is fed as BOS + text, as a prompt is, so such a row would be the prompt with
  its answer. Rows dropped: {c["rows_dropped"]} ({_counts(c["verbatim_starts"])}).
- **Near-duplicates**, anywhere in a paragraph, in any case: the five pronoun templates'
  bodies (any name, "." or ";" after them), every multi-word or e-mail prompt of the exceptions
  task, and the seed notebook's own exception examples but for the bare extensions ".py" and
  ".txt" — {len(held["anywhere"])} texts in all. Paragraphs dropped:
  {c["paragraphs_dropped"]} ({_counts(c["near_duplicates"])}).

### Tokenizer

Byte-level BPE (as GPT-2's) learnt on the rows, {hp["max_vocab"]:,} tokens. GPT-2's vocabulary
has a token for each name and word of the notebook's prompts, so each prompt is 8 tokens with
BOS; a vocabulary learnt on this corpus splits {len(added)} of them, so merges appended after
the learnt ones make each of them one token (the text is unchanged, only its segmentation):
{", ".join(f"`{w}`" for w in added) or "none"}. A name the corpus never uses gets a token
whose embedding training barely moves.

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

### Exceptions: capital log-odds after the period (or before a proper noun), as found

log P(next token starts with a capital) − log P(… with a lowercase letter), per family;
"agrees" is the share of prompts whose sign is what written English expects. Nothing here is
gated. {exceptions_finding(record)}

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

{hp["steps"]:,} steps of {hp["batch_size"]} rows, {record["epochs"]} passes over the corpus.
Final training loss (mean of the last 100 steps): **{record["final_loss"]}**. Fetching, corpus,
tokenizer and training took {record["train_seconds"]:.0f} s with {hp["threads"]} torch
thread(s) on a shared 2-core machine; with writing and measuring, {record["total_seconds"]:.0f} s.

## Retraining

    capcircuit organism train --model {record["model"]}
    capcircuit organism train --model {record["model"]} --verify   # retrain elsewhere, compare bytes

(`--model all`, the default, trains both bundled organisms one after the other.) The corpus,
tokenizer and weights are seeded and torch runs with deterministic algorithms on
{hp["threads"]} thread(s), so the same seed with the same software on the same kind of CPU
gives the same bytes:

| file | sha256 |
|---|---|
{sha}
"""


def rewrite(folder: Path) -> None:
    """Rewrite a checkpoint's README.md and its record's summary from training.json, after a
    change to this module's wording (no retraining; the weights and numbers are untouched)."""
    from generator.store import write_atomic

    path = Path(folder) / "training.json"
    record = json.loads(path.read_text())
    record["summary"] = summary(record)
    write_atomic(path, json.dumps(record, indent=2) + "\n")
    write_atomic(Path(folder) / "README.md", model_card(record))


if __name__ == "__main__":  # python -m generator.organism.card generator/assets/organism ...
    import sys

    for arg in sys.argv[1:]:
        rewrite(Path(arg))
