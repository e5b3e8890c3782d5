"""The experiments on the models the report compares: the attention-only organism (no MLP
contribution anywhere) and the organism in float64 (the same numbers as in float32)."""

from __future__ import annotations

import pytest
import torch
from conftest import load, subset

from generator.engine.graph import CircuitRunner
from generator.experiments import attribution, baseline, circuit, params, patching
from generator.tasks import build, load_task


@pytest.fixture(scope="module")
def attention_only():
    model = load("organism-attn-only-1l")
    return model, subset(build(load_task("pronoun"), model))


def test_attention_only_model_has_no_mlp_contribution(attention_only):
    """Its MLP writes exactly zero: zero attribution, zero patching effect, zero node effect."""
    model, batch = attention_only
    assert model.cfg.n_layers == 1
    assert baseline.run(model, batch, params.Baseline(), {}).metrics["model_shape"]["attn_only"]
    a = attribution.run(model, batch, params.Attribution(), {}).metrics
    mlp = [v for label, v in zip(a["components"]["labels"], a["components"]["values"]) if "MLP" in label]
    assert mlp == [0.0]
    sweeps = patching.run(model, batch, params.Patching(), {}).metrics["sweeps"]
    # patching a zero MLP changes nothing; what is left is float32 rounding of two logit
    # differences near 4 (1.2e-7 for the English-trained model), divided by their spread
    assert all(abs(v) < 1e-6 for row in sweeps["mlp_out"] for v in row)
    runner = CircuitRunner(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens)
    effects = circuit.node_effects(runner, position_aware=False)
    assert abs(float(effects[runner.graph.writers.index(("mlp", 0))])) < 1e-5  # float32 rounding near 10
    assert float(runner.scores(1)[runner.graph.writers.index(("mlp", 0))].abs().max()) == 0.0


@pytest.mark.parametrize("experiment", ["baseline", "patching"])
def test_float64_gives_the_float32_numbers(organism, few_prompts, experiment):
    """The config allows other dtypes; float64 on the organism gives the same numbers to 1e-5."""
    model64 = load("organism", dtype="float64")
    batch64 = subset(build(load_task("pronoun"), model64))
    if experiment == "baseline":
        run = lambda model, batch: baseline.run(model, batch, params.Baseline(), {}).metrics  # noqa: E731
        keys = ("mean_logit_diff", "mean_logit_diff_corrupted")
    else:
        targets = ["resid_pre", "attn_out", "mlp_out", "head_out", "head_v", "head_pattern"]
        run = lambda model, batch: patching.run(model, batch, params.Patching(targets=targets), {}).metrics  # noqa: E731
        keys = ("clean_logit_diff", "corrupted_logit_diff")
    m32, m64 = run(organism, few_prompts), run(model64, batch64)
    assert next(model64.parameters()).dtype == torch.float64
    for key in keys:  # both stored to 6 significant digits: one unit of the last may differ
        assert abs(m32[key] - m64[key]) < 2e-5, key
    if experiment == "patching":
        for t in targets:
            got, want = torch.tensor(m64["sweeps"][t]), torch.tensor(m32["sweeps"][t])
            assert torch.allclose(got, want, atol=1e-5, rtol=0), t
    else:
        # per-prompt values are stored to 6 significant digits: near 4 that is a step of 1e-5,
        # so float32 and float64 may differ by one step when they straddle a rounding boundary
        step = 1e-5 + 1e-9
        for a, b in zip(m32["per_prompt"], m64["per_prompt"]):
            assert abs(a["clean"] - b["clean"]) <= step and abs(a["corrupted"] - b["corrupted"]) <= step


def test_final_logits_only_computes_the_last_positions_logits_alone(organism, few_prompts):
    """transformers' logits_to_keep=1 where the model's forward takes it: the final position's
    logits only, the same numbers; {} for a forward without it."""
    from types import SimpleNamespace

    from generator.models import final_logits_only

    assert final_logits_only(organism) == {"logits_to_keep": 1}
    tokens = few_prompts.clean_tokens
    with torch.no_grad():
        whole, last = organism(tokens), organism(tokens, **final_logits_only(organism))
    assert whole.shape[1] == tokens.shape[1] and last.shape[1] == 1
    torch.testing.assert_close(last[:, -1], whole[:, -1], atol=1e-5, rtol=0)
    bare = SimpleNamespace(original_model=SimpleNamespace(forward=lambda input_ids, attention_mask=None: None))
    assert final_logits_only(bare) == {}
    assert final_logits_only(SimpleNamespace()) == {}
