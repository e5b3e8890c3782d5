"""The exceptions task (prompts of different lengths, answer pairs per prompt) and experiment,
against the raw Hugging Face model run on each prompt alone. Two models: a tiny random GPT-2
with GPT-2's tokenizer (every answer pair is single-token there: "Com", "Py", ...), and one with
a small byte-level BPE trained here, which splits "Com" like the organism's tokenizer does."""

from __future__ import annotations

import json
import math
from dataclasses import replace

import pytest
import torch
from conftest import load
from markupsafe import Markup

from generator.experiments import exceptions
from generator.experiments.params import Exceptions
from generator.tasks import Prompt, build, load_task

TOL = 1e-4
BPE_CORPUS = [
    "Send the letter to John. He read it. She said it was nice.",
    "Write to mary@yahoo.com and john@gmail.com today; the team will reply.",
    "Search it on www.google.com or read it on wikipedia.org.",
    "Run main.py, then open notes.txt and report.doc.",
    "I met Mr. Brown. The doctor is Dr. Green, e.g. a friend.",
]
# The notebook's proper-noun prompts keep its answer " Paris"; GPT-2 splits " paris".
GPT2_SPLIT = [
    "The capital of Canada is Ottawa while the capital of France is",
    "The white house is in Washington, while the Louvre is in",
]


@pytest.fixture(scope="module")
def model(tiny_gpt2):
    return tiny_gpt2


@pytest.fixture(scope="module")
def batch(model):
    return build(load_task("exceptions"), model)


@pytest.fixture(scope="module")
def result(model, batch):
    return exceptions.run(model, batch, Exceptions(), {})


@pytest.fixture(scope="module")
def bpe_dir(tmp_path_factory):
    """A tiny random GPT-2 whose tokenizer is a byte-level BPE trained on a few sentences: it
    has "com" but not "Com" (split into pieces), as a small organism-like vocabulary."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import GPT2Config, GPT2LMHeadModel, GPT2TokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        BPE_CORPUS * 20,
        trainers.BpeTrainer(
            vocab_size=400,
            special_tokens=["<|endoftext|>"],
            show_progress=False,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        ),
    )
    end = "<|endoftext|>"
    tokenizer = GPT2TokenizerFast(tokenizer_object=bpe, bos_token=end, eos_token=end, unk_token=end)
    path = tmp_path_factory.mktemp("tiny-bpe")
    torch.manual_seed(0)
    GPT2LMHeadModel(
        GPT2Config(
            vocab_size=len(tokenizer),
            n_layer=2,
            n_embd=32,
            n_head=2,
            n_positions=64,
            bos_token_id=tokenizer.bos_token_id,
            eos_token_id=tokenizer.eos_token_id,
        )
    ).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def bpe_run(bpe_dir):
    bpe_model = load(bpe_dir)
    bpe_batch = build(load_task("exceptions"), bpe_model)
    return bpe_batch, exceptions.run(bpe_model, bpe_batch, Exceptions(), {})


def test_task_has_families_with_expectations_and_a_control():
    spec = load_task("exceptions")
    assert not spec.same_length
    assert {
        "sentence_end",
        "email",
        "domain",
        "file_extension",
        "method_call",
        "abbreviation",
        "postscript",
        "title",
        "proper_noun",
    } <= set(spec.groups)
    assert spec.info["control"] == "sentence_end"
    assert {f["expected"] for f in spec.info["families"].values()} == {"capital", "lowercase"}
    assert all(p.group in spec.groups for p in spec.prompts)
    # every prompt stops after a period, except proper nouns: they stop before the name
    assert all(p.text.endswith(".") != (p.group == "proper_noun") for p in spec.prompts)


def test_task_digests_are_the_ones_the_committed_results_carry():
    """The digests are pinned: a change to a task file or to how tasks hash shows up here (and
    would make every committed result stale)."""
    from conftest import ROOT

    pronoun, families = load_task("pronoun"), load_task("exceptions")
    assert pronoun.same_length and not pronoun.info
    assert pronoun.digest() == "ee08d2a25d5c12cb" and families.digest() == "83093397905fb321"
    for model in ("organism", "organism-attn-only-1l"):
        stored = json.loads((ROOT / "results" / model / "baseline.json").read_text())
        assert stored["key_parts"]["task"] == pronoun.digest()


def test_build_keeps_each_prompt_its_own_length(batch):
    lengths = {t.shape[1] for t in batch.clean_tokens}
    assert len(lengths) > 1 and all(t.shape[0] == 1 for t in batch.clean_tokens)
    first = batch.spec.prompts[0]
    assert batch.answer_tokens.shape == (len(batch.spec.prompts), 2)
    email = [p.text for p in batch.spec.prompts].index("Send it to john@gmail.")
    assert batch.answer_tokens[email].tolist() == [5377, 785]  # "Com", "com" in GPT-2's vocabulary
    split = torch.tensor([p.text in GPT2_SPLIT for p in batch.spec.prompts])
    assert (batch.answer_tokens[~split] >= 0).all()  # GPT-2's tokenizer has every other pair
    assert (batch.answer_tokens[split] == -1).all() and split.sum() == len(GPT2_SPLIT)
    assert first.group == "sentence_end"
    assert batch.position_labels[-1].startswith(".")


def test_multi_token_answer_is_marked_unusable_not_fatal(model):
    spec = load_task("exceptions")
    odd = Prompt("Open the file notes.", "Open the file notes.", ("Txt", "txt"), 0, "notes", "file_extension")
    odd_batch = build(replace(spec, prompts=spec.prompts + (odd,)), model)
    assert odd_batch.answer_tokens[-1].tolist() == [-1, -1]
    assert odd_batch.answer_tokens[:-1].tolist() == build(spec, model).answer_tokens.tolist()
    m = exceptions.run(model, odd_batch, Exceptions(), {}).metrics
    row = m["per_prompt"][-1]
    assert row["logit_diff"] is None and not row["single_token_pair"] and math.isfinite(row["log_odds"])
    assert m["n_pairs"] == len(spec.prompts) - len(GPT2_SPLIT)
    assert [u["prompt"] for u in m["unusable_pairs"]] == GPT2_SPLIT + ["Open the file notes."]
    assert len(m["unusable_pairs"][-1]["split"][0]) > 1  # "Txt" in pieces
    files = next(f for f in m["families"] if f["family"] == "file_extension")
    assert files["n"] == files["n_pairs"] + 1


def gpt2_byte_decoder() -> dict[str, int]:
    """GPT-2's printable stand-ins for bytes (its bytes_to_unicode), inverted; the byte-level BPE
    of the `tokenizers` library uses the same table."""
    printable = list(range(33, 127)) + list(range(161, 173)) + list(range(174, 256))
    codes, extra = printable[:], 0
    for b in range(256):
        if b not in printable:
            printable.append(b)
            codes.append(256 + extra)
            extra += 1
    return {chr(c): b for b, c in zip(printable, codes)}


def hf_reference(path):
    """The raw Hugging Face model and tokenizer, and the case masks from its vocabulary decoded
    byte by byte (not through the tokenizer's decode, which the experiment uses)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    hf = AutoModelForCausalLM.from_pretrained(str(path), attn_implementation="eager").eval()
    tokenizer, to_byte = AutoTokenizer.from_pretrained(str(path)), gpt2_byte_decoder()
    words = [
        bytes(to_byte[ch] for ch in w).decode("utf-8", errors="replace").lstrip()[:1]
        for w in tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    ]
    vocab = hf.config.vocab_size
    upper, lower = torch.zeros(vocab, dtype=torch.bool), torch.zeros(vocab, dtype=torch.bool)
    upper[: len(words)] = torch.tensor([w.isupper() for w in words])[:vocab]
    lower[: len(words)] = torch.tensor([w.islower() for w in words])[:vocab]
    return hf, tokenizer, upper, lower


def naive_log_odds(logits: torch.Tensor, upper: torch.Tensor, lower: torch.Tensor) -> torch.Tensor:
    probs = logits.double().softmax(-1)
    return probs[..., upper].sum(-1).log() - probs[..., lower].sum(-1).log()


@torch.no_grad()
def naive_run(hf, ids: list[int], upper, lower) -> tuple[torch.Tensor, float, list[float]]:
    """One prompt alone: the final logits, its capital log-odds, and the logit lens by hand:
    each residual stream at the last position (before each block, after each block's attention,
    before the final LayerNorm) through ln_f and lm_head."""
    blocks, seen = hf.transformer.h, []
    hooks = []
    for block in blocks:
        hooks.append(block.register_forward_pre_hook(lambda mod, args: seen.append(args[0][0, -1])))
        hooks.append(
            block.attn.register_forward_hook(lambda mod, args, out: seen.append(seen[-1] + out[0][0, -1]))
        )  # resid_mid = pre + attn
    hooks.append(hf.transformer.ln_f.register_forward_pre_hook(lambda mod, args: seen.append(args[0][0, -1])))
    try:
        logits = hf(torch.tensor([ids])).logits[0, -1]
    finally:
        for h in hooks:
            h.remove()
    lens = [float(naive_log_odds(hf.lm_head(hf.transformer.ln_f(x)), upper, lower)) for x in seen]
    return logits, float(naive_log_odds(logits, upper, lower)), lens


def check_against_hugging_face(path, batch, result):
    hf, tokenizer, upper, lower = hf_reference(path)
    m, lenses = result.metrics, {}
    for row, p, pair in zip(m["per_prompt"], batch.spec.prompts, batch.answer_tokens.tolist()):
        ids = [tokenizer.bos_token_id] + tokenizer(p.text, add_special_tokens=False).input_ids
        assert row["prompt"] == p.text and row["family"] == p.group and row["n_tokens"] == len(ids)
        logits, log_odds, lens = naive_run(hf, ids, upper, lower)
        lenses.setdefault(p.group, []).append(lens)
        assert abs(row["log_odds"] - log_odds) < TOL, p.text
        assert abs(lens[-1] - log_odds) < TOL  # the reference lens ends at the model's output
        assert abs(row["p_capital"] - float(logits.softmax(-1)[upper].sum())) < TOL
        answers = [tokenizer(a, add_special_tokens=False).input_ids for a in p.answers]
        if all(len(a) == 1 for a in answers):
            assert pair == [answers[0][0], answers[1][0]] and row["single_token_pair"]
            assert abs(row["logit_diff"] - float(logits[answers[0][0]] - logits[answers[1][0]])) < TOL
        else:
            assert pair == [-1, -1] and row["logit_diff"] is None and not row["single_token_pair"]
    assert m["lens"]["labels"][-1] == "final" and len(m["lens"]["labels"]) == 2 * hf.config.n_layer + 1
    for family, per_prompt in lenses.items():
        expected = torch.tensor(per_prompt, dtype=torch.float64).mean(0)
        got = torch.tensor(m["lens"]["families"][family], dtype=torch.float64)
        assert torch.allclose(got, expected, atol=TOL), family


def test_every_prompt_and_the_lens_match_the_hugging_face_model_run_alone(tiny_gpt2_dir, batch, result):
    """No TransformerLens in the reference: weight processing shifts every logit of a position
    by the same constant and folds LayerNorm weights into the unembedding, which neither the
    softmax nor a logit difference sees."""
    check_against_hugging_face(tiny_gpt2_dir, batch, result)


def test_a_tokenizer_that_splits_com_still_runs_and_matches(bpe_dir, bpe_run):
    from transformers import AutoTokenizer

    batch, result = bpe_run
    tokenizer = AutoTokenizer.from_pretrained(str(bpe_dir))
    assert len(tokenizer("Com", add_special_tokens=False).input_ids) > 1  # the point of this model
    m = result.metrics
    email = [p.text for p in batch.spec.prompts].index("Send it to john@gmail.")
    assert batch.answer_tokens[email].tolist() == [-1, -1] and m["per_prompt"][email]["logit_diff"] is None
    unusable = {u["prompt"]: u for u in m["unusable_pairs"]}
    assert "".join(unusable["Send it to john@gmail."]["split"][0]) == "Com"
    assert m["n_pairs"] == len(m["per_prompt"]) - len(m["unusable_pairs"]) < len(m["per_prompt"])  # "." twice
    check_against_hugging_face(bpe_dir, batch, result)


def check_family_means(m):
    rows = m["per_prompt"]
    control = [r["log_odds"] for r in rows if r["family"] == m["control"]]
    assert abs(m["control_mean"] - sum(control) / len(control)) < TOL
    for f in m["families"]:
        mine = [r for r in rows if r["family"] == f["family"]]
        odds = [r["log_odds"] for r in mine]
        pairs = [r["logit_diff"] for r in mine if r["logit_diff"] is not None]
        assert f["n"] == len(mine) and f["n_pairs"] == len(pairs)
        assert abs(f["mean_log_odds"] - sum(odds) / len(odds)) < TOL
        assert abs(f["vs_control"] - (f["mean_log_odds"] - m["control_mean"])) < TOL
        right = [(o > 0) == (f["expected"] == "capital") for o in odds]
        assert abs(f["agrees"] - sum(right) / len(right)) < TOL
        assert f["sentence_end_like"] == (f["mean_log_odds"] > 0)
        assert f["as_english"] == (f["sentence_end_like"] == (f["expected"] == "capital"))
        if pairs:
            assert abs(f["mean_logit_diff"] - sum(pairs) / len(pairs)) < TOL
        else:
            assert f["mean_logit_diff"] is None
        # the lens ends at the model's own output
        assert abs(m["lens"]["families"][f["family"]][-1] - f["mean_log_odds"]) < TOL


def test_family_means_and_control(result, bpe_run):
    check_family_means(result.metrics)
    check_family_means(bpe_run[1].metrics)


def test_page_renders_with_unusable_pairs(tmp_path, bpe_dir, bpe_run):
    """The template on a result with missing pair differences: a dash, the count, the split."""
    from conftest import write_config

    from generator.config import load_config
    from generator.render import environment

    m = json.loads(json.dumps(bpe_run[1].metrics))  # as the store returns it
    config = load_config(
        write_config(tmp_path, models=[str(bpe_dir)], device="cpu", experiments={"baseline": {}, "exceptions": {}})
    )
    record = {"metrics": m, "figures": {}, "provenance": {"model": "bpe"}}
    page = (
        environment(config)
        .get_template("exceptions.md.j2")
        .render(
            r={"exceptions": record},
            primary="bpe",
            page="exceptions.md",
            figure=lambda record, name, caption: Markup(f"[figure {name}: {caption}]"),
        )
    )
    assert f"{m['n_pairs']} of the {m['n_prompts']} answer pairs are two single tokens" in page
    assert "| — |" in page and "<code>Send it to john@gmail.</code>" in page
    shown = {f["family"]: f["family"].replace("_", "\\_") for f in m["families"]}  # markdown-escaped text
    for f in m["families"]:
        assert f"| {shown[f['family']]} | {f['expected']} |" in page and f"{f['mean_log_odds']:.2f}" in page
    like_end = [shown[f["family"]] for f in m["families"] if f["family"] != m["control"] and f["sentence_end_like"]]
    control = next(f for f in m["families"] if f["family"] == m["control"])
    assert ("Even after an ordinary sentence end" in page) == (control["mean_log_odds"] <= 0)
    if like_end:
        assert ", ".join(like_end) in page
    assert "[figure families:" in page and "[figure logit_lens:" in page
    (tmp_path / "page.md").write_text(page)


def test_runs_on_the_organism(organism):  # package data: missing files fail, never skip
    m = exceptions.run(organism, build(load_task("exceptions"), organism), Exceptions(), {}).metrics
    assert all(math.isfinite(r["log_odds"]) for r in m["per_prompt"])
    check_family_means(m)
