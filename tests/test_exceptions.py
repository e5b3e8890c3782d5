"""The exceptions task (prompts of different lengths, answer pairs per prompt) and experiment,
against each prompt run on its own. Always on a GPT-2-tokenizer model: the answer pairs
("Com"/"com", "Py"/"py", ...) are single tokens there."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import pytest
import torch

from generator import ReportError
from generator.experiments import exceptions
from generator.experiments.params import Exceptions
from generator.tasks import Prompt, build, load_task
from tests.test_attribution import naive

TOL = 1e-4


@pytest.fixture(scope="module")
def model(site_model, tiny_gpt2_dir, request):
    if site_model == str(tiny_gpt2_dir):
        return request.getfixturevalue("site_model_loaded")
    from generator.models import load_model, resolve

    return load_model(resolve(str(tiny_gpt2_dir)), device="cpu")


@pytest.fixture(scope="module")
def batch(model):
    return build(load_task("exceptions"), model)


@pytest.fixture(scope="module")
def result(model, batch):
    return exceptions.run(model, batch, Exceptions(), {})


def test_task_has_families_with_expectations_and_a_control():
    spec = load_task("exceptions")
    assert not spec.same_length
    assert {"sentence_end", "email", "domain", "file_extension", "method_call", "abbreviation",
            "postscript", "title"} <= set(spec.groups)
    assert spec.info["control"] == "sentence_end"
    assert {f["expected"] for f in spec.info["families"].values()} == {"capital", "lowercase"}
    assert all(p.text.endswith(".") and p.group in spec.groups for p in spec.prompts)


def test_pronoun_task_digest_is_unchanged_by_the_second_format():
    spec = load_task("pronoun")
    assert spec.same_length and not spec.info
    old = hashlib.sha256(json.dumps([p.__dict__ for p in spec.prompts], sort_keys=True).encode()).hexdigest()[:16]
    assert spec.digest() == old  # baseline results stay fresh


def test_build_keeps_each_prompt_its_own_length(batch):
    lengths = {t.shape[1] for t in batch.clean_tokens}
    assert len(lengths) > 1 and all(t.shape[0] == 1 for t in batch.clean_tokens)
    first = batch.spec.prompts[0]
    assert batch.answer_tokens.shape == (len(batch.spec.prompts), 2)
    email = [p.text for p in batch.spec.prompts].index("Send it to john@gmail.")
    assert batch.answer_tokens[email].tolist() == [5377, 785]  # "Com", "com" in GPT-2's vocabulary
    assert first.group == "sentence_end"
    assert batch.position_labels[-1].startswith(".")


def test_multi_token_answer_fails_naming_the_prompt(model):
    spec = load_task("exceptions")
    odd = Prompt("Open the file notes.", "Open the file notes.", ("Txt", "txt"), 0, "notes", "file_extension")
    with pytest.raises(ReportError, match=r"family file_extension, prompt 'Open the file notes\.'.*'Txt'"):
        build(replace(spec, prompts=spec.prompts + (odd,)), model)


def gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-ins for bytes (its bytes_to_unicode), inverted."""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, codes)}


@torch.no_grad()
def test_every_prompt_matches_the_hugging_face_model_run_alone(tiny_gpt2_dir, batch, result):
    """The raw Hugging Face checkpoint, no TransformerLens: weight processing shifts every logit
    of a position by the same constant, which neither a logit difference nor softmax sees."""
    from transformers import GPT2LMHeadModel, GPT2TokenizerFast

    hf = GPT2LMHeadModel.from_pretrained(str(tiny_gpt2_dir)).eval()
    tokenizer, to_byte = GPT2TokenizerFast.from_pretrained(str(tiny_gpt2_dir)), gpt2_byte_decoder()
    words = [bytes(to_byte[ch] for ch in w).decode("utf-8", errors="replace")
             for w in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))]
    capital = torch.tensor([w.lstrip()[:1].isupper() for w in words])
    for row, p in zip(result.metrics["per_prompt"], batch.spec.prompts):
        ids = [tokenizer.bos_token_id] + tokenizer(p.text, add_special_tokens=False).input_ids
        assert row["n_tokens"] == len(ids)
        logits = hf(torch.tensor([ids])).logits[0, -1]
        c, w = (tokenizer.convert_tokens_to_ids(a.replace(" ", "\u0120")) for a in p.answers)
        assert row["prompt"] == p.text and row["family"] == p.group
        assert abs(row["logit_diff"] - float(logits[c] - logits[w])) < TOL
        assert abs(row["p_capital"] - float(logits.softmax(-1)[: len(capital)][capital].sum())) < TOL


def test_family_means_and_control(batch, result):
    m = result.metrics
    rows = m["per_prompt"]
    control = [r["logit_diff"] for r in rows if r["family"] == "sentence_end"]
    assert abs(m["control_mean"] - sum(control) / len(control)) < TOL
    for f in m["families"]:
        mine = [r["logit_diff"] for r in rows if r["family"] == f["family"]]
        assert f["n"] == len(mine)
        assert abs(f["mean_logit_diff"] - sum(mine) / len(mine)) < TOL
        assert abs(f["vs_control"] - (f["mean_logit_diff"] - m["control_mean"])) < TOL
        right = [(d > 0) == (f["expected"] == "capital") for d in mine]
        assert abs(f["agrees"] - sum(right) / len(right)) < TOL


def test_logit_lens_matches_the_reference(model, batch, result):
    lens = result.metrics["lens"]
    for family in ("sentence_end", "email"):  # two families: the reference runs prompt by prompt
        idx = [i for i, p in enumerate(batch.spec.prompts) if p.group == family]
        per_prompt = [naive(model, batch.clean_tokens[i], batch.answer_tokens[i:i + 1])["lens"][:, 0] for i in idx]
        expected = torch.stack(per_prompt).mean(0)
        assert torch.allclose(torch.as_tensor(lens["families"][family]), expected, atol=TOL), family
    assert lens["labels"][-1] == "final"
