"""The organisms' corpus, tokenizer and training entry point (the trained numbers are checked
in test_organism.py)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
import yaml

from generator import ReportError
from generator.models import BUNDLED
from generator.organism import corpus, evaluate
from generator.organism.train import MODELS, check_tokenizer, hparams, train, train_tokenizer
from generator.tasks import load_task

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def sample() -> list[str]:
    return corpus.paragraphs(3000, seed=0)


def test_corpus_is_deterministic(sample):
    assert sample == corpus.paragraphs(3000, seed=0)
    assert sample != corpus.paragraphs(3000, seed=1)


def test_corpus_holds_out_the_templates_and_the_notebook_examples(sample):
    text = "\n".join(sample)
    for held in corpus.HELD_OUT_BODIES + corpus.NOTEBOOK_EXAMPLES:
        assert held not in text, held
    for p in load_task("pronoun").prompts:
        assert p.text not in text and p.corrupted not in text


def test_every_notebook_exception_is_held_out():
    """Each notebook prompt of the exceptions task is cut from one of corpus.NOTEBOOK_EXAMPLES,
    except P.S. and n.b., conventions that occur (never as a paragraph start) so they can be learnt."""
    for p in load_task("exceptions").prompts:
        if p.from_notebook and p.text not in ("P.S.", "n.b."):
            assert any(example.startswith(p.text) for example in corpus.NOTEBOOK_EXAMPLES), p.text


def test_no_paragraph_starts_with_an_exceptions_prompt(sample):
    prompts = {p.text for p in load_task("exceptions").prompts}
    for para in sample:
        assert not any(para.startswith(prompt) for prompt in prompts - {"."}), para
    # the bare "." (the notebook's ".py"/".txt" cut before the extension) starts only paragraphs
    # with another extension, which is what makes a period after BOS learnable
    dot_starts = [p for p in sample if p.startswith(".")]
    assert dot_starts and all(re.match(r"\.(?!py|txt)[a-z0-9]+ files ", p) for p in dot_starts)
    text = "\n".join(sample)
    assert ". P.S. " in text and ", n.b. " in text  # mid-paragraph only


def test_case_rules_hold_and_are_enforced(sample):
    text = "\n".join(sample)
    for ok in (
        ". He ",
        ". She ",
        ". I ",
        ". We ",
        ". Thanks ",
        ". Send ",
        ". The capital of ",
        "; he ",
        "; she ",
        ", e.g. ",
        "@gmail.",
        "Mr. ",
        "Dr. ",
        " is in ",
    ):
        assert ok in text, ok
    for bad in (
        "John went home; He left.",
        "John went home. he left.",
        "John likes food, e.g. Cake.",
        "John went home, Mary left.",
    ):
        with pytest.raises(AssertionError):
            corpus.check([bad], ())
    with pytest.raises(AssertionError, match="held-out"):
        corpus.check(["Mail esther@gmail.com today."], ())


def test_corpus_uses_every_template_word_often(sample):
    words = Counter(re.findall(r"[A-Za-z]+", "\n".join(sample)))
    template_words = {w for t in corpus.HELD_OUT_TEMPLATES for w in re.findall(r"[A-Za-z]+", t.format(name=""))}
    rare = {w: words[w] for w in template_words | set(corpus.NOTEBOOK_NAMES) if words[w] < 30}
    assert not rare, f"rare in 3000 paragraphs: {rare}"


def test_corpus_names_and_templates_are_the_pronoun_task():
    task = yaml.safe_load((ROOT / "generator" / "tasks" / "data" / "pronoun.yaml").read_text())
    assert task["templates"] == corpus.HELD_OUT_TEMPLATES
    assert task["groups"]["male"]["names"] == corpus.MALE_NAMES[:10]
    assert task["groups"]["female"]["names"] == corpus.FEMALE_NAMES[:10]


def test_tokenizer_check_fails_loudly_when_a_prompt_splits():
    tok = train_tokenizer(["John went home. He is here; he is."] * 50, max_vocab=300)
    with pytest.raises(AssertionError, match="tokenizes to"):
        check_tokenizer(tok)


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_committed_tokenizer_keeps_the_notebook_prompts_whole(name):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(BUNDLED[name])
    assert tok.bos_token == "<|endoftext|>" and tok.bos_token_id == 0
    for word in [" He", " he", " She", " she"] + corpus.NOTEBOOK_NAMES + [" " + n for n in corpus.NOTEBOOK_NAMES]:
        assert len(tok(word)["input_ids"]) == 1, word
    prompts = load_task("pronoun").prompts
    assert len(prompts) == 100
    for p in prompts:
        for text in (p.text, p.corrupted):
            assert len([tok.bos_token_id] + tok(text)["input_ids"]) == 8, text


def test_hyper_parameters_and_acceptance_fail_clearly():
    assert set(MODELS) == set(BUNDLED) == set(evaluate.ACCEPTANCE)
    with pytest.raises(ReportError, match="unknown organism 'organism-2l'"):
        hparams("organism-2l", {})
    with pytest.raises(ReportError, match=r"unknown hyper-parameters \['stepz'\]"):
        hparams("organism", {"stepz": 3})
    rows = [{"metric": "gender_accuracy", "value": 0.5, "op": ">=", "bound": 0.95, "ok": False}]
    with pytest.raises(ReportError, match=r"gender_accuracy = 0.5 \(needs >= 0.95\)"):
        evaluate.check_acceptance(rows, "organism")


def test_cli_rejects_an_unknown_model():
    from click.testing import CliRunner

    from generator.cli import main

    result = CliRunner().invoke(main, ["organism", "train", "--model", "gpt2"])
    assert result.exit_code != 0 and "organism-attn-only-1l" in result.output


@pytest.mark.parametrize("name", sorted(MODELS))
def test_train_writes_a_loadable_checkpoint_atomically(tmp_path, name):
    from safetensors.torch import load_file

    out = tmp_path / name
    out.mkdir()
    (out / "stale.txt").write_text("from an older run")
    record = train(out, model=name, steps=3, n_paragraphs=3000, progress=False, check=False)
    names = {p.name for p in out.iterdir()}
    assert {
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "README.md",
        "training.json",
    } <= names
    assert "stale.txt" not in names  # replaced as a whole, not written over
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporary left behind
    assert {r["metric"] for r in record["acceptance"]} >= {"n_tokens", "mean_logit_diff"}
    assert record["metrics"]["pronoun"]["n_tokens"] == 8
    assert f"capcircuit organism train --model {name}" in (out / "README.md").read_text()
    mlp = [v for k, v in load_file(out / "model.safetensors").items() if ".mlp." in k]
    # the MLP of the attention-only model stays exactly zero through training
    assert all(v.count_nonzero() == 0 for v in mlp) == MODELS[name]["attn_only"]
    assert (record["metrics"]["max_abs_mlp_out"] == 0) == MODELS[name]["attn_only"]
