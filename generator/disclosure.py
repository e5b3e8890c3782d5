"""What the bundled models are, for the overview: each one's description, how it was accepted,
what that makes true by construction and what not, and its model card as a page of the site.

Torch-free (render side). Read from each bundled model's folder (generator/assets/<model>/):
training.json's fields (architecture, parameters, corpus sources) or, without them, its
`summary` (a paragraph the trainer writes) or the model card's (README.md) first paragraph;
training.json's `acceptance` (the checks a trained model had to pass before it was committed)."""

from __future__ import annotations

import json
from pathlib import Path

from markupsafe import Markup, escape

from generator.models import BUNDLED, slug
from generator.reproduction import is_gpt2_small

# acceptance checks about what a model *is* (its prompts' length, an MLP held at zero); every
# other check is about what it does, so passing it is a condition of the model, not a finding
STRUCTURAL = {"n_tokens", "max_abs_mlp_out", "n_params"}
OPS = {">=": "≥", "<=": "≤", "==": "=", ">": ">", "<": "<"}
CARDS = "model-cards"


def card_page(model: str) -> str:
    """The model card's page in docs/ (relative)."""
    return f"{CARDS}/{slug(model)}.md"


def first_paragraph(markdown: str) -> str:
    """The first paragraph of a markdown text that is not a heading."""
    for block in markdown.split("\n\n"):
        block = block.strip()
        if block and not block.startswith("#"):
            return " ".join(line.strip() for line in block.splitlines())
    return ""


def check_words(check: dict) -> str:
    """One acceptance check as text: 'mean_logit_diff ≥ 3.0'."""
    return f"{check['metric']} {OPS.get(check['op'], check['op'])} {check['bound']}"


def training_words(record: dict) -> str | None:
    """How it was trained, from the record's numbers: 'for 2,000 steps on a corpus of 1,838,709 tokens
    (seed 0; final training loss 1.53)'; None when the record has none of them."""
    steps = (record.get("hparams") or {}).get("steps")
    tokens = record.get("n_tokens") or (record.get("corpus") or {}).get("n_tokens")
    if steps is None and tokens is None:
        return None
    what = " ".join(
        part
        for part in (
            f"for {steps:,} steps" if steps is not None else "",
            f"on a corpus of {tokens:,} tokens" if tokens else "",
        )
        if part
    )
    notes = [f"seed {record['seed']}"] if "seed" in record else []
    if record.get("epochs") is not None:
        notes.append(f"{record['epochs']} epochs")
    if record.get("final_loss") is not None:
        notes.append(f"final training loss {record['final_loss']:.2f}")
    return what + (f" ({'; '.join(notes)})" if notes else "")


def what_it_is(record: dict) -> str | None:
    """What the model is and what it learned from, from the record's fields (the retrained
    organisms' format: hparams, n_params, corpus.sources); None when they are not there."""
    hp, sources = record.get("hparams") or {}, (record.get("corpus") or {}).get("sources")
    if not sources or "n_layer" not in hp or "n_params" not in record:
        return None
    layers = "one-layer" if hp["n_layer"] == 1 else f"{hp['n_layer']}-layer"
    kind = (
        f"{layers} attention-only GPT-2 (its MLP computes exactly zero)" if hp.get("attn_only") else f"{layers} GPT-2"
    )
    titles = [source["title"].split(" (")[0] for source in sources]
    texts = titles[0] if len(titles) == 1 else ", ".join(titles[:-1]) + " and " + titles[-1]
    held = ", with the report's prompts held out" if record.get("held_out") else ""
    return (
        f"A {kind} of {record['n_params']:,} parameters, trained from scratch on "
        f"English text from {len(titles)} source{'s' if len(titles) != 1 else ''}: {texts}{held}."
    )


def describe(model: str, folder: Path) -> dict:
    """One bundled model: its description (markdown, HTML-escaped), its acceptance split into
    checks of what it does and of what it is, and its card's page."""
    training = folder / "training.json"
    record = json.loads(training.read_text(encoding="utf-8")) if training.is_file() else {}
    card = folder / "README.md"
    card_text = card.read_text(encoding="utf-8") if card.is_file() else ""
    # the record's fields first: the trainer's summary also words the acceptance, which the
    # overview states itself (every check that gates behaviour makes that behaviour by construction)
    text = what_it_is(record) or record.get("summary") or first_paragraph(card_text)
    acceptance = record.get("acceptance") or []
    return {
        "model": model,
        # the trainer's own markdown (code spans for file names): shown as markdown, never as HTML
        "description": Markup(escape(text)) if text else None,
        "from_summary": bool(record.get("summary")),
        "training": training_words(record),
        "accepted_on_behaviour": [check_words(c) for c in acceptance if c["metric"] not in STRUCTURAL],
        "accepted_on_structure": [check_words(c) for c in acceptance if c["metric"] in STRUCTURAL],
        "acceptance_recorded": "acceptance" in record,
        "card": card_page(model) if card_text else None,
    }


def disclosure(results: dict) -> dict:
    """The overview's disclosure: every bundled model of this build, and whether GPT-2 small's
    results are in it. `results`: {model: {experiment: record}}."""
    return {
        "bundled": [describe(m, BUNDLED[m]) for m in results if m in BUNDLED],
        "gpt2_small": any("baseline" in r and is_gpt2_small(r["baseline"]) for r in results.values()),
    }


def cards(models: list[str]) -> dict[str, str]:
    """The model cards of the bundled models among `models`, as pages: {docs path: markdown}."""
    return {
        card_page(m): (BUNDLED[m] / "README.md").read_text(encoding="utf-8")
        for m in models
        if m in BUNDLED and (BUNDLED[m] / "README.md").is_file()
    }
