"""Attention patterns against softmax(q·k) computed by hand from hooked queries and keys; the
heads shown follow the attribution and patching results they read; the circuitsvis props are
the ones circuitsvis itself builds."""

from __future__ import annotations

import json
import math
import re
from types import SimpleNamespace

import pytest
import torch
from conftest import TOL_REFERENCE as TOL
from conftest import drawn

from generator.experiments import attention, params
from generator.experiments.params import Attention
from generator.heads import Head, group_layers, layer_group


@pytest.fixture(scope="module")
def model(organism):
    return organism


@pytest.fixture(scope="module")
def batch(pronoun_batch):
    return pronoun_batch


def fake_inputs(model):
    """Attribution and patching results with more heads than top_k (this module is about the
    patterns and the grouping, not about which heads win)."""
    last = model.cfg.n_layers - 1
    positive = [{"layer": last, "head": 0}, {"layer": 0, "head": 1}, {"layer": 1, "head": 2}]
    negative = [{"layer": last, "head": 1}, {"layer": 0, "head": 0}]
    patching = [{"layer": last, "head": 1}, {"layer": 0, "head": 0}, {"layer": last - 1, "head": 2}]
    return {
        "attribution": SimpleNamespace(top_positive=positive, top_negative=negative),
        "patching": SimpleNamespace(top_heads=patching),
    }


@pytest.fixture(scope="module")
def result(model, batch):
    return attention.run(model, batch, Attention(top_k=2), fake_inputs(model))


@pytest.fixture(scope="module")
def figures(result):
    return drawn("attention", result)


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


def test_patterns_match_softmax_of_queries_and_keys(model, batch, result, figures):
    example = [p.text for p in batch.spec.prompts].index(batch.spec.example)
    for name in ("positive", "negative"):
        g = group(result, name)
        for i, head in enumerate(g["heads"]):
            reference = naive_pattern(model, batch.clean_tokens, head["layer"], head["head"])
            assert torch.allclose(torch.as_tensor(g["final_mean"][i]), reference[:, -1].mean(0), atol=TOL)
            assert torch.allclose(torch.as_tensor(g["final_example"][i]), reference[example, -1], atol=TOL)
            views = figures[f"{name}_mean"]["props"]["attention"][i]
            assert torch.allclose(torch.as_tensor(views), reference.mean(0), atol=1e-3)  # stored to 4 digits
            focus = g["focus"][i]
            assert focus["position"] == int(reference[:, -1].mean(0).argmax())


def test_groups_follow_attribution_patching_and_top_k(model, result, figures):
    inputs = fake_inputs(model)
    assert group(result, "positive")["heads"] == inputs["attribution"].top_positive[:2]  # 3 given, 2 kept
    assert group(result, "negative")["heads"] == inputs["attribution"].top_negative[:2]
    n_layers = model.cfg.n_layers
    for g in ("early", "middle", "late"):
        expected = [h for h in inputs["patching"].top_heads if layer_group(h["layer"], n_layers) == g]
        assert group(result, f"patching_{g}")["heads"] == expected
        assert (f"patching_{g}_mean" in figures) == bool(expected)
    assert [g["group"] for g in result.metrics["groups"]][:2] == ["positive", "negative"]


def test_notebook_layer_groups():
    """The notebook's split of GPT-2 small: early L0–L6, middle L7–L8, late L9–L11."""
    assert group_layers(12) == {"early": list(range(7)), "middle": [7, 8], "late": [9, 10, 11]}
    assert group_layers(4) == {"early": [0, 1], "middle": [2], "late": [3]}
    assert group_layers(1) == {"early": [0], "middle": [], "late": []}


def test_circuitsvis_builds_the_same_props(batch, result, figures):
    """Calling circuitsvis's attention_heads with the stored props gives back exactly those
    props (its rendered HTML embeds them), so the site draws what circuitsvis would."""
    from circuitsvis.attention import attention_heads

    for name in ("positive_example", "negative_mean"):
        spec = figures[name]
        assert spec["kind"] == "circuitsvis" and spec["function"] == "AttentionHeads"
        props = spec["props"]
        html = attention_heads(
            attention=props["attention"],
            tokens=props["tokens"],
            attention_head_names=props["attentionHeadNames"],
            mask_upper_tri=props["maskUpperTri"],
        ).cdn_src
        built = json.loads(re.search(r"AttentionHeads,\s*(\{.*\})\s*\)", html, re.S).group(1))
        assert built == props
        assert len(props["tokens"]) == batch.clean_tokens.shape[1]
        assert props["attentionHeadNames"] == [Head.of(h).name for h in group(result, name.split("_")[0])["heads"]]
    final = figures["positive_mean_final"]["figure"]
    assert final["data"][0]["x"] == batch.position_roles  # averaged: labelled by what each position holds
    assert figures["positive_example_final"]["figure"]["data"][0]["x"] == batch.position_labels
    assert figures["positive_mean"]["props"]["tokens"] == batch.position_roles
    for g in result.metrics["groups"]:
        for f in g.get("focus") or []:
            assert f["mostly"] == (f["weight"] > params.Attention().mostly)
    assert torch.allclose(
        torch.tensor(final["data"][0]["z"]), torch.tensor(group(result, "positive")["final_mean"]), atol=1e-4
    )  # the figure stores 4 digits
