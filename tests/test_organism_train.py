"""The organism's corpus, tokenizer and training entry point (the trained numbers are checked
in test_organism.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from generator.organism import corpus, evaluate
from generator.organism.train import check_tokenizer, train, train_tokenizer

ROOT = Path(__file__).resolve().parent.parent
ORGANISM_DIR = ROOT / "generator" / "assets" / "organism"


def test_corpus_is_deterministic_and_holds_out_the_seed_templates():
    first = corpus.paragraphs(2000, seed=0)
    assert first == corpus.paragraphs(2000, seed=0)
    assert first != corpus.paragraphs(2000, seed=1)
    text = "\n".join(first)
    for body in corpus.HELD_OUT_BODIES:
        assert body not in text
    assert ". He" in text and "; he" in text and ", he" in text
    assert "@gmail." in text and "e.g. " in text and "P.S. " in text


def test_corpus_names_and_templates_are_the_pronoun_task():
    task = yaml.safe_load((ROOT / "generator" / "tasks" / "data" / "pronoun.yaml").read_text())
    assert task["templates"] == corpus.HELD_OUT_TEMPLATES
    assert task["groups"]["male"]["names"] == corpus.MALE_NAMES[:10]
    assert task["groups"]["female"]["names"] == corpus.FEMALE_NAMES[:10]


def test_tokenizer_check_fails_loudly_when_a_prompt_splits():
    tok = train_tokenizer(["John went home. He is here; he is."] * 50, max_vocab=300)
    with pytest.raises(AssertionError, match="tokenizes to"):
        check_tokenizer(tok)


def test_committed_tokenizer_keeps_the_seed_prompts_whole():
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(ORGANISM_DIR)
    assert tok.bos_token == "<|endoftext|>" and tok.bos_token_id == 0
    for answer in [" He", " he", " She", " she"]:
        assert len(tok(answer)["input_ids"]) == 1
    for template in corpus.HELD_OUT_TEMPLATES:
        for name in corpus.MALE_NAMES[:10] + corpus.FEMALE_NAMES[:10]:
            prompt = template.format(name=name)
            assert len(tok(prompt)["input_ids"]) == 7, prompt
            assert len(tok(prompt[:-1] + ";")["input_ids"]) == 7, prompt


def test_check_acceptance_names_the_missing_metric():
    with pytest.raises(ValueError, match="gender_accuracy = 0.5"):
        evaluate.check_acceptance({"mean_logit_diff_clean": 5.0, "mean_logit_diff_corrupted": -3.0,
                                   "gender_accuracy": 0.5})


def test_train_writes_a_loadable_checkpoint_atomically(tmp_path):
    out = tmp_path / "organism"
    out.mkdir()
    (out / "stale.txt").write_text("from an older run")
    metrics = train(out, steps=3, n_paragraphs=3000, progress=False, check=False)
    names = {p.name for p in out.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json",
            "README.md", "training.json"} <= names
    assert "stale.txt" not in names  # replaced as a whole, not written over
    assert [p.name for p in tmp_path.iterdir()] == ["organism"]  # no temporary left behind
    assert set(evaluate.ACCEPTANCE) <= set(metrics)
    assert "capcircuit organism train" in (out / "README.md").read_text()
