"""The committed organisms meet their acceptance numbers, measured through the project's own
pipeline (loader, task builder, baseline and exceptions experiments), and the pipeline agrees
with naive computations on the raw Hugging Face model. The checkpoints are package data: a
missing file fails here, it is never skipped."""

from __future__ import annotations

import json
import re
from pathlib import Path
from types import SimpleNamespace

import pytest
import tomllib
import torch

from generator.experiments import baseline, exceptions
from generator.experiments.params import Baseline, Exceptions
from generator.models import BUNDLED, load_model, resolve
from generator.tasks import build, load_task

ROOT = Path(__file__).resolve().parent.parent
FILES = {"config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "README.md", "training.json"}
MAX_BYTES = 8_000_000  # each bundled model, all its files (the "8 MB")
TOL = 1e-4


@pytest.fixture(scope="module", params=sorted(BUNDLED))
def run(request):
    """One bundled model, loaded once, with both experiments' metrics."""
    name = request.param
    model = load_model(resolve(name), device="cpu")
    pronoun = build(load_task("pronoun"), model)
    exc_batch = build(load_task("exceptions"), model)
    return SimpleNamespace(
        name=name,
        folder=BUNDLED[name],
        model=model,
        pronoun=pronoun,
        baseline=baseline.run(model, pronoun, Baseline(), {}).metrics,
        exceptions=exceptions.run(model, exc_batch, Exceptions(), {}).metrics,
    )


@pytest.fixture(scope="module")
def hf(run):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(run.folder, attn_implementation="eager").eval()


@pytest.mark.parametrize("name", sorted(BUNDLED))
def test_checkpoint_is_packaged_small_and_documented(name):
    folder = BUNDLED[name]
    assert {f.name for f in folder.iterdir()} >= FILES, f"{folder} lacks {FILES - {f.name for f in folder.iterdir()}}"
    size = sum(f.stat().st_size for f in folder.iterdir() if f.is_file())
    assert size <= MAX_BYTES, f"{name} is {size / 1e6:.2f} MB"
    package_data = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]
    assert f"assets/{folder.name}/*" in package_data["generator"]


def family_values(m: dict) -> dict:
    """Per family, from the per-prompt rows: (mean capital log-odds, share with the expected sign)."""
    expected = {f["family"]: f["expected"] for f in m["families"]}
    out = {}
    for family, want in expected.items():
        odds = [r["log_odds"] for r in m["per_prompt"] if r["family"] == family]
        out[family] = (sum(odds) / len(odds), sum((o > 0) == (want == "capital") for o in odds) / len(odds))
    return out


def test_acceptance_through_the_pipeline(run):
    """The pronoun task is the only behaviour gated, and only for the 4-layer model."""
    b = run.baseline
    assert tuple(run.pronoun.clean_tokens.shape) == (100, 8) == tuple(run.pronoun.corrupted_tokens.shape)
    if run.name == "organism":
        assert b["mean_logit_diff"] >= 2.0
        assert b["mean_logit_diff_corrupted"] <= 0.0


def test_pipeline_equals_a_plain_hugging_face_forward(run, hf):
    """No TransformerLens, no weight processing: logit differences are invariant to the
    centring compatibility mode applies. Gender accuracy and the capital-wins share recomputed
    from the raw logits."""
    spec, answers = run.pronoun.spec, run.pronoun.answer_tokens
    rows = torch.arange(len(spec.prompts))
    with torch.no_grad():
        clean = hf(run.pronoun.clean_tokens).logits[:, -1]
        corrupted = hf(run.pronoun.corrupted_tokens).logits[:, -1]
    diff = clean[rows, answers[:, 0]] - clean[rows, answers[:, 1]]
    assert diff.mean().item() == pytest.approx(run.baseline["mean_logit_diff"], abs=TOL)
    corrupted_diff = corrupted[rows, answers[:, 0]] - corrupted[rows, answers[:, 1]]
    assert corrupted_diff.mean().item() == pytest.approx(run.baseline["mean_logit_diff_corrupted"], abs=TOL)
    assert (diff > 0).float().mean().item() == pytest.approx(run.baseline["frac_capital_preferred"])
    he, she = run.model.to_single_token(" He"), run.model.to_single_token(" She")
    right = [(clean[i, he] > clean[i, she]) == (p.group == "male") for i, p in enumerate(spec.prompts)]
    assert sum(right) / len(right) == pytest.approx(run.baseline["gender_accuracy"])


def test_model_card_reports_the_committed_weights(run):
    """training.json (and the README made from it) holds what the pipeline measures now."""
    record = json.loads((run.folder / "training.json").read_text())
    assert record["model"] == run.name
    pronoun = record["metrics"]["pronoun"]
    for key in ("mean_logit_diff", "mean_logit_diff_corrupted", "frac_capital_preferred", "gender_accuracy"):
        assert pronoun[key] == pytest.approx(run.baseline[key], abs=TOL), key
    measured = family_values(run.exceptions)
    for f in record["metrics"]["exceptions"]["families"]:
        assert f["mean_log_odds"] == pytest.approx(measured[f["family"]][0], abs=TOL), f["family"]
        assert f["agrees"] == pytest.approx(measured[f["family"]][1]), f["family"]
    assert all(row["ok"] for row in record["acceptance"])
    card = (run.folder / "README.md").read_text()
    assert f"{pronoun['mean_logit_diff']:.3f}" in card and f"capcircuit organism train --model {run.name}" in card
    # the card names the corpus, its licences and what was held out, and says what is by design
    for source in record["corpus"]["sources"]:
        assert source["title"] in card and source["licence"] in card and source["package"] in card
    for what, key in (("Paragraphs", "paragraphs_dropped"), ("Rows", "rows_dropped")):
        assert re.search(rf"{what} dropped:\s+{record['corpus'][key]} \(", card), what
    assert "nobody wrote for this" in card and "designed into it" in card
    summary = record["summary"]
    assert summary in card and "\n" not in summary
    assert f"{pronoun['mean_logit_diff']:.2f} after" in summary and f"{record['n_params']:,}" in summary


def test_notebook_exception_examples_are_measured(run):
    rows = [r for r in run.exceptions["per_prompt"]]
    notebook = [p.text for p in load_task("exceptions").prompts if p.from_notebook]
    assert {"P.S.", "n.b.", ".", "esther@gmail.", "google.", "list."} <= set(notebook)
    assert [r["prompt"] for r in rows if r["prompt"] in notebook] == notebook  # each, in order


def test_attention_only_model_has_exactly_zero_mlp_output():
    """Through the project's loader (with its weight processing), and in the raw weights."""
    from safetensors.torch import load_file

    name = "organism-attn-only-1l"
    model = load_model(resolve(name), device="cpu")
    assert model.cfg.n_layers == 1
    tokens = build(load_task("pronoun"), model).clean_tokens
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens, names_filter=lambda n: n.endswith("hook_mlp_out"))
    assert "blocks.0.hook_mlp_out" in cache.keys()  # noqa: SIM118 (the bridge also caches its alias mlp.hook_out)
    assert all(torch.count_nonzero(cache[k]) == 0 for k in cache.keys())  # noqa: SIM118
    weights = load_file(BUNDLED[name] / "model.safetensors")
    mlp = {k: v for k, v in weights.items() if ".mlp." in k}
    assert mlp and all(torch.count_nonzero(v) == 0 for v in mlp.values()), sorted(mlp)
    assert json.loads((BUNDLED[name] / "config.json").read_text())["n_head"] == 8
