"""Attention patterns against softmax(q·k) computed by hand from hooked queries and keys."""

from __future__ import annotations

import inspect
import math

import pytest
import torch

from generator.experiments import attention
from generator.experiments.params import Attention
from generator.tasks import build, load_task

TOL = 1e-4


@pytest.fixture(scope="module")
def model(site_model_loaded):
    return site_model_loaded


@pytest.fixture(scope="module")
def batch(model):
    return build(load_task("pronoun"), model)


def heads_of(model):
    """A fake attribution result (this test is about patterns, not about which heads win)."""
    last = model.cfg.n_layers - 1
    return {"top_positive": [{"head": f"L{last}H0"}, {"head": "L0H1"}], "top_negative": [{"head": f"L{last}H1"}]}


@pytest.fixture(scope="module")
def result(model, batch):
    return attention.run(model, batch, Attention(top_k=2), {"attribution": heads_of(model)})


@torch.no_grad()
def naive_pattern(model, tokens, layer: int, head: int) -> torch.Tensor:
    """[batch, dest, src]: causal softmax of q·k / sqrt(d_head) from the hooked q and k."""
    seen = {}

    def keep(name):
        def hook(value, hook):
            seen[name] = value[:, :, head].clone()

        return hook

    names = [f"blocks.{layer}.attn.hook_q", f"blocks.{layer}.attn.hook_k"]
    model.run_with_hooks(tokens, fwd_hooks=[(n, keep(n)) for n in names])
    q, k = seen[names[0]], seen[names[1]]
    scores = torch.einsum("bqd,bkd->bqk", q, k) / math.sqrt(model.cfg.d_head)
    n = tokens.shape[1]
    scores = scores.masked_fill(torch.ones(n, n, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1)


def group(result, name):
    return next(g for g in result.metrics["groups"] if g["group"] == name)


def test_patterns_match_softmax_of_queries_and_keys(model, batch, result):
    example = [p.text for p in batch.spec.prompts].index(batch.spec.example)
    for name in ("positive", "negative"):
        g = group(result, name)
        for i, head in enumerate(g["heads"]):
            layer, h = attention.parse_head(head)
            reference = naive_pattern(model, batch.clean_tokens, layer, h)
            assert torch.allclose(torch.as_tensor(g["final_mean"][i]), reference[:, -1].mean(0), atol=TOL)
            assert torch.allclose(torch.as_tensor(g["final_example"][i]), reference[example, -1], atol=TOL)
            views = result.figures[f"{name}_mean"]["props"]["attention"][i]
            assert torch.allclose(torch.as_tensor(views), reference.mean(0), atol=1e-3)  # stored to 4 digits
            focus = g["focus"][i]
            assert focus["position"] == batch.position_labels[int(reference[:, -1].mean(0).argmax())]


def test_groups_follow_attribution_and_top_k(model, result):
    last = model.cfg.n_layers - 1
    assert group(result, "positive")["heads"] == [f"L{last}H0", "L0H1"]
    assert group(result, "negative")["heads"] == [f"L{last}H1"]
    assert [g["group"] for g in result.metrics["groups"]] == ["positive", "negative"]


def test_circuitsvis_props_are_those_of_attention_heads(batch, result):
    from circuitsvis.attention import attention_heads

    source = inspect.getsource(attention_heads)
    spec = result.figures["positive_example"]
    assert spec["kind"] == "circuitsvis" and spec["function"] == "AttentionHeads"
    for prop in spec["props"]:
        assert f'"{prop}"' in source, prop
    assert len(spec["props"]["tokens"]) == batch.clean_tokens.shape[1]
    final = result.figures["positive_mean_final"]["figure"]
    assert final["data"][0]["x"] == batch.position_labels
    assert final["layout"]["xaxis"]["title"]["text"] and final["layout"]["yaxis"]["title"]["text"]


def test_layer_bands_split_layers_in_thirds():
    assert [attention.layer_band(l, 12) for l in range(12)] == ["early"] * 4 + ["middle"] * 4 + ["late"] * 4
    assert [attention.layer_band(l, 4) for l in range(4)] == ["early", "early", "middle", "late"]


def test_patching_heads_are_grouped_by_band_when_given(model, batch):
    last = model.cfg.n_layers - 1
    inputs = {"attribution": heads_of(model), "patching": {"top_heads": [{"head": f"L{last}H1"}, {"head": "L0H0"}]}}
    result = attention.run(model, batch, Attention(top_k=1), inputs)
    groups = {g["group"]: g["heads"] for g in result.metrics["groups"]}
    assert groups["patching_early"] == ["L0H0"]
    band = attention.layer_band(last, model.cfg.n_layers)  # "middle" for 2 layers, "late" for 3+
    assert groups[f"patching_{band}"] == [f"L{last}H1"]
    assert f"patching_{band}_mean" in result.figures
