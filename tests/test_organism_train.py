"""The organisms' tokenizer, acceptance and training entry point, and that retraining reproduces
the committed run (the trained numbers are checked in test_organism.py, the corpus in
test_organism_corpus.py). The training tests read the real corpus, which `make test` fetches."""

from __future__ import annotations

import hashlib
import json

import pytest

import generator.organism.train
from generator import ReportError
from generator.models import BUNDLED
from generator.organism import evaluate
from generator.organism.train import (
    MODELS,
    PREFIX_STEPS,
    add_whole_words,
    check_tokenizer,
    hparams,
    params_digest,
    prompt_words,
    retrain_prefix,
    train,
    train_tokenizer,
)
from generator.tasks import load_task


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


SMALL = ["John went home. He is here; he is.", "Mary, Sean and the cook are friends."] * 50


def test_tokenizer_check_fails_loudly_when_a_prompt_splits():
    tok = train_tokenizer(SMALL, max_vocab=300)
    with pytest.raises(AssertionError, match="tokenizes to"):
        check_tokenizer(tok)


def test_whole_word_tokens_change_segmentation_only():
    tok = train_tokenizer(SMALL, max_vocab=300)
    words = prompt_words()
    assert {" He", " she", "Victoria", " Victoria", " athlete", "Joe"} <= set(words)
    before = {w: tok.encode(w).tokens for w in words}
    tok2, added = add_whole_words(tok, words)
    assert added == [w for w in words if len(before[w]) > 1] and added  # only the split ones
    check_tokenizer(tok2)  # every notebook prompt is now 7 tokens + BOS
    for w in words:
        (token,) = tok2.encode(w).tokens
        assert token == "".join(before[w])  # the same bytes, one token
    text = "Victoria Joe, an athlete; Seance.\nJohnson's sherry"
    assert tok2.decode(tok2.encode(text).ids) == text  # lossless, words that merely contain them too
    assert add_whole_words(tok2, words)[1] == []  # nothing left to add


def test_params_digest_sees_one_ulp():
    import torch

    net = torch.nn.Linear(3, 2)
    before = params_digest(net)
    assert params_digest(net) == before
    with torch.no_grad():
        net.weight[1, 2] = torch.nextafter(net.weight[1, 2], torch.tensor(9.0))
    assert params_digest(net) != before


def metrics(clean=3.0, corrupted=-1.0, n_tokens=8, mlp=0.0) -> dict:
    return {
        "pronoun": {"n_tokens": n_tokens, "mean_logit_diff": clean, "mean_logit_diff_corrupted": corrupted},
        "max_abs_mlp_out": mlp,
    }


def verdict(model: str, **values) -> dict:
    return {r["metric"]: r["ok"] for r in evaluate.acceptance(metrics(**values), model)}


def test_acceptance_is_the_pronoun_task_at_its_bounds():
    """The issue's bounds, exactly: mean logit diff >= 2 after "." and <= 0 after ";". Each is
    met at the bound and missed just beyond it, so a swapped operand or a moved bound fails."""
    assert evaluate.ACCEPTANCE["organism"] == {
        "n_tokens": ("==", 8),
        "mean_logit_diff": (">=", 2.0),
        "mean_logit_diff_corrupted": ("<=", 0.0),
    }
    eps = 1e-9
    assert verdict("organism", clean=2.0)["mean_logit_diff"]
    assert verdict("organism", clean=2.0 + eps)["mean_logit_diff"]
    assert not verdict("organism", clean=2.0 - eps)["mean_logit_diff"]
    assert verdict("organism", corrupted=0.0)["mean_logit_diff_corrupted"]
    assert verdict("organism", corrupted=-eps)["mean_logit_diff_corrupted"]
    assert not verdict("organism", corrupted=eps)["mean_logit_diff_corrupted"]
    assert not verdict("organism", n_tokens=9)["n_tokens"] and verdict("organism")["n_tokens"]
    # nothing about behaviour gates the one-layer model: only what it is
    assert evaluate.ACCEPTANCE["organism-attn-only-1l"] == {"n_tokens": ("==", 8), "max_abs_mlp_out": ("==", 0.0)}
    assert all(verdict("organism-attn-only-1l", clean=-5.0, corrupted=5.0).values())
    assert not verdict("organism-attn-only-1l", mlp=1e-30)["max_abs_mlp_out"]


def test_hyper_parameters_and_acceptance_fail_clearly():
    assert set(MODELS) == set(BUNDLED) == set(evaluate.ACCEPTANCE)
    with pytest.raises(ReportError, match="unknown organism 'organism-2l'"):
        hparams("organism-2l", {})
    with pytest.raises(ReportError, match=r"unknown hyper-parameters \['stepz'\]"):
        hparams("organism", {"stepz": 3})
    rows = evaluate.acceptance(metrics(clean=1.5), "organism")
    with pytest.raises(ReportError, match=r"mean_logit_diff = 1.5 \(needs >= 2.0\)"):
        evaluate.check_acceptance(rows, "organism")
    evaluate.check_acceptance(evaluate.acceptance(metrics(), "organism"), "organism")  # passes quietly


def test_cli_rejects_an_unknown_model():
    from click.testing import CliRunner

    from generator.cli import main

    result = CliRunner().invoke(main, ["organism", "train", "--model", "gpt2"])
    assert result.exit_code != 0 and "organism-attn-only-1l" in result.output


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_committed_tokenizer_keeps_the_notebook_prompts_whole(name):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(BUNDLED[name])
    assert tok.bos_token == "<|endoftext|>" and tok.bos_token_id == 0
    for word in prompt_words():
        assert len(tok(word)["input_ids"]) == 1, word
    prompts = load_task("pronoun").prompts
    assert len(prompts) == 100
    for p in prompts:
        for text in (p.text, p.corrupted):
            assert len([tok.bos_token_id] + tok(text)["input_ids"]) == 8, text


@pytest.mark.parametrize("name", sorted(MODELS))
def test_retraining_reproduces_the_committed_run(name, monkeypatch, prepare_once):
    """The corpus, the tokenizer and the first PREFIX_STEPS steps of the committed training,
    redone from nothing, give the recorded bytes; the record's weights digest is the committed
    file's. (The whole run: `capcircuit organism train --verify`.) The corpus and tokenizer are
    built once per test run for both organisms (conftest.prepare_once)."""
    monkeypatch.setattr(generator.organism.train, "prepare", prepare_once)
    folder = BUNDLED[name]
    record = json.loads((folder / "training.json").read_text())
    for f in ("model.safetensors", "tokenizer.json"):
        assert record["sha256"][f] == sha256(folder / f), f
    again = retrain_prefix(name, seed=record["seed"])
    assert again["corpus_sha256"] == record["corpus"]["corpus_sha256"]
    assert again["n_tokens"] == record["corpus"]["n_tokens"]
    committed = json.loads((folder / "tokenizer.json").read_text())["model"]
    assert again["tokenizer"]["model"]["vocab"] == committed["vocab"]
    assert again["tokenizer"]["model"]["merges"] == committed["merges"]
    key = f"params_after_{PREFIX_STEPS}_steps"
    assert again[f"params_sha256_after_{PREFIX_STEPS}_steps"] == record["sha256"][key]


@pytest.mark.parametrize("name", sorted(MODELS))
def test_train_writes_a_loadable_checkpoint_atomically(tmp_path, name, monkeypatch, prepare_once):
    from safetensors.torch import load_file

    monkeypatch.setattr(generator.organism.train, "prepare", prepare_once)
    out = tmp_path / name
    out.mkdir()
    (out / "stale.txt").write_text("from an older run")
    record = train(out, model=name, steps=3, progress=False, check=False)
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
    assert {r["metric"] for r in record["acceptance"]} == set(evaluate.ACCEPTANCE[name])
    assert record["metrics"]["pronoun"]["n_tokens"] == 8
    assert record["sha256"]["model.safetensors"] == sha256(out / "model.safetensors")
    card = (out / "README.md").read_text()
    assert f"capcircuit organism train --model {name}" in card and record["summary"] in card
    mlp = [v for k, v in load_file(out / "model.safetensors").items() if ".mlp." in k]
    # the MLP of the attention-only model stays exactly zero through training
    assert all(v.count_nonzero() == 0 for v in mlp) == MODELS[name]["attn_only"]
    assert (record["metrics"]["max_abs_mlp_out"] == 0) == MODELS[name]["attn_only"]
