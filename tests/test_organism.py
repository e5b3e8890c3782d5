"""The committed organism meets its acceptance numbers, measured through the project's own
pipeline, and the baseline experiment agrees with a naive hook-free computation."""

from __future__ import annotations

import pytest
import torch

from generator.experiments.baseline import run as run_baseline
from generator.experiments.params import Baseline
from generator.models import ORGANISM_DIR


@pytest.fixture(scope="module")
def baseline(organism, pronoun_batch):
    return run_baseline(organism, pronoun_batch, Baseline(), {}).metrics


def test_checkpoint_is_small_and_documented():
    size = sum(f.stat().st_size for f in ORGANISM_DIR.iterdir() if f.is_file())
    assert size <= 8 * 2**20, f"organism is {size / 2**20:.1f} MiB"
    assert (ORGANISM_DIR / "README.md").exists()
    assert (ORGANISM_DIR / "model.safetensors").exists()


def test_seed_prompts_are_8_tokens_with_bos(pronoun_batch):
    assert tuple(pronoun_batch.clean_tokens.shape) == (100, 8)


def test_acceptance_numbers(baseline):
    assert baseline["mean_logit_diff"] >= 3.0
    assert baseline["mean_logit_diff_corrupted"] <= -1.0
    assert baseline["gender_accuracy"] >= 0.95


def test_baseline_equals_naive_hook_free_computation(baseline, pronoun_batch):
    """Plain Hugging Face forward, no TransformerLens, no weight processing: the logit
    difference is invariant to the centring that compatibility mode applies."""
    from transformers import AutoModelForCausalLM

    hf = AutoModelForCausalLM.from_pretrained(ORGANISM_DIR, attn_implementation="eager").eval()
    answers = pronoun_batch.answer_tokens
    with torch.no_grad():
        for tokens, key in ((pronoun_batch.clean_tokens, "mean_logit_diff"),
                            (pronoun_batch.corrupted_tokens, "mean_logit_diff_corrupted")):
            logits = hf(tokens).logits
            rows = torch.arange(len(tokens))
            naive = logits[rows, -1, answers[:, 0]] - logits[rows, -1, answers[:, 1]]
            assert naive.mean().item() == pytest.approx(baseline[key], abs=1e-4)
    per_prompt = torch.tensor([r["clean"] for r in baseline["per_prompt"]])
    assert (per_prompt > 0).float().mean().item() == pytest.approx(baseline["frac_capital_preferred"])
