"""Attribution against a hand-written reference: hooks, W_O, W_U and a LayerNorm scale computed
by hand, with no ActivationCache helper involved."""

from __future__ import annotations

import pytest
import torch
from conftest import TOL_REFERENCE as TOL
from conftest import drawn

from generator.experiments import attribution
from generator.experiments.params import Attribution
from generator.heads import Head


@pytest.fixture(scope="module")
def model(organism):
    return organism


@pytest.fixture(scope="module")
def batch(pronoun_batch):
    return pronoun_batch


@pytest.fixture(scope="module")
def result(model, batch):
    return attribution.run(model, batch, Attribution(top_k=3), {})


@torch.no_grad()
def naive(model, tokens, answers) -> dict:
    """Per-prompt attributions from raw hook values; the final LayerNorm scale by hand."""
    n_layers = model.cfg.n_layers
    seen = {}

    def keep(name):  # by the name asked for: hook.name may be the alias's target
        def hook(value, hook):
            seen[name] = value[:, -1].clone()  # the final position only

        return hook

    names = ["hook_embed", "hook_pos_embed"] + [
        f"blocks.{l}.{n}"
        for l in range(n_layers)
        for n in ("attn.hook_z", "hook_attn_out", "hook_mlp_out", "hook_resid_pre", "hook_resid_mid")
    ]
    names.append(f"blocks.{n_layers - 1}.hook_resid_post")
    logits = model.run_with_hooks(tokens, fwd_hooks=[(n, keep(n)) for n in names])[:, -1]
    final = seen[f"blocks.{n_layers - 1}.hook_resid_post"]
    centred = final - final.mean(-1, keepdim=True)
    scale = (centred.pow(2).mean(-1) + model.cfg.eps).sqrt()  # [batch]
    direction = model.W_U[:, answers[:, 0]].T - model.W_U[:, answers[:, 1]].T  # [batch, d_model]

    def dla(piece):  # [batch, d_model] -> [batch]
        piece = piece - piece.mean(-1, keepdim=True)
        return (piece / scale[:, None] * direction).sum(-1)

    heads = torch.stack(
        [
            torch.stack(
                [
                    dla(seen[f"blocks.{l}.attn.hook_z"][:, h] @ model.blocks[l].attn.W_O[h])
                    for h in range(model.cfg.n_heads)
                ]
            )
            for l in range(n_layers)
        ]
    )
    lens = []
    for l in range(n_layers):
        lens += [dla(seen[f"blocks.{l}.hook_resid_pre"]), dla(seen[f"blocks.{l}.hook_resid_mid"])]
    components = [dla(seen["hook_embed"]), dla(seen["hook_pos_embed"])]
    for l in range(n_layers):
        components += [dla(seen[f"blocks.{l}.hook_attn_out"]), dla(seen[f"blocks.{l}.hook_mlp_out"])]
    b_U = model.b_U
    return {
        "logit_diff": logits.gather(1, answers)[:, 0] - logits.gather(1, answers)[:, 1],
        "bias_diff": b_U[answers[:, 0]] - b_U[answers[:, 1]],
        "total": dla(final),
        "heads": heads,  # [layer, head, batch]
        "attn_bias": torch.stack([dla(model.blocks[l].attn.b_O.expand_as(final)) for l in range(n_layers)]),
        "lens": torch.stack(lens + [dla(final)]),
        "components": torch.stack(components),
        "mlps": torch.stack([dla(seen[f"blocks.{l}.hook_mlp_out"]) for l in range(n_layers)]),
        "embeds": dla(seen["hook_embed"]) + dla(seen["hook_pos_embed"]),
    }


@pytest.fixture(scope="module")
def reference(model, batch):
    return naive(model, batch.clean_tokens, batch.answer_tokens)


def close(stored, expected):
    assert torch.allclose(torch.as_tensor(stored, dtype=torch.float32), expected.float(), atol=TOL, rtol=0), (
        stored,
        expected,
    )


def test_total_is_the_logit_difference_without_the_unembedding_bias(result, reference):
    m = result.metrics
    close(m["total"], reference["total"].mean())
    close(m["mean_logit_diff"], reference["logit_diff"].mean())
    close(m["unembed_bias"], reference["bias_diff"].mean())
    close(reference["total"] + reference["bias_diff"], reference["logit_diff"])


def test_heads_and_other_components_sum_to_the_total(result, reference):
    r = reference
    summed = r["heads"].sum((0, 1)) + r["attn_bias"].sum(0) + r["mlps"].sum(0) + r["embeds"]
    close(summed, r["total"])  # the reference decomposition is complete ...
    m = result.metrics
    assert m["decomposition_error"] < TOL and m["head_error"] < TOL  # ... and so is the experiment's
    close(m["heads_total"] + m["not_heads"], r["total"].mean())
    close(sum(m["components"]["values"]), r["total"].mean())


def test_every_number_matches_the_reference(result, reference):
    m = result.metrics
    close(m["heads"]["values"], reference["heads"].mean(-1))
    close(m["attn_bias"], reference["attn_bias"].mean(-1))
    close(m["components"]["values"], reference["components"].mean(-1))
    close(m["lens"]["clean"], reference["lens"].mean(-1))


def test_corrupted_lens_matches_the_reference(model, batch, result):
    corrupted = naive(model, batch.corrupted_tokens, batch.answer_tokens)
    close(result.metrics["lens"]["corrupted"], corrupted["lens"].mean(-1))


def test_labels_come_from_layers_and_heads(model, result):
    m = result.metrics
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    assert m["heads"]["layers"] == [f"L{l}" for l in range(n_layers)]
    assert m["heads"]["heads"] == [f"H{h}" for h in range(n_heads)]
    assert m["lens"]["labels"][:2] == ["L0 pre", "L0 mid"] and m["lens"]["labels"][-1] == "final"
    assert m["components"]["labels"][:4] == ["embed", "pos_embed", "L0 attn", "L0 MLP"]


def test_top_heads_are_the_largest_of_each_sign(result, reference):
    mean = reference["heads"].mean(-1)
    n_heads = mean.shape[1]
    order = mean.flatten().argsort(descending=True).tolist()
    head = lambda i: Head(*divmod(i, n_heads))  # noqa: E731
    positive = [head(i) for i in order if mean.flatten()[i] > 0][:3]
    negative = [head(i) for i in reversed(order) if mean.flatten()[i] < 0][:3]
    assert [Head.of(h) for h in result.metrics["top_positive"]] == positive
    assert [Head.of(h) for h in result.metrics["top_negative"]] == negative


def test_breakdowns_match_the_reference(batch, result, reference):
    prompts = batch.spec.prompts
    table = result.metrics["breakdowns"]
    for kind, key in (
        ("gender", lambda p: p.group),
        ("name", lambda p: p.name),
        ("template", lambda p: f"template {p.template + 1}"),
    ):
        for row in table[kind]["rows"]:
            idx = torch.tensor([i for i, p in enumerate(prompts) if key(p) == row["group"]])
            assert row["n"] == len(idx)
            close(row["logit_diff"], reference["logit_diff"][idx].mean())
            for head, value in zip(table[kind]["heads"], row["heads"]):
                close(value, reference["heads"][head["layer"], head["head"], idx].mean())
    assert {r["group"] for r in table["gender"]["rows"]} == {"male", "female"}
    assert len(table["template"]["rows"]) == 5 and len(table["name"]["rows"]) == 20


def test_figures_draw_the_stored_metrics(result):
    """Each figure plots exactly the numbers stored beside it, with labelled axes."""
    m, figures = result.metrics, drawn("attribution", result)
    assert {"logit_lens", "components", "heads", "breakdown_template", "breakdown_name", "breakdown_gender"} <= set(
        figures
    )
    for spec in figures.values():
        layout = spec["figure"]["layout"]
        assert layout["xaxis"]["title"]["text"] and layout["yaxis"]["title"]["text"]
    lens = {t["name"]: t for t in figures["logit_lens"]["figure"]["data"]}
    assert lens["clean: “.”"]["y"] == m["lens"]["clean"] and lens["corrupted: “;”"]["y"] == m["lens"]["corrupted"]
    assert lens["clean: “.”"]["x"] == m["lens"]["labels"]
    bars = figures["components"]["figure"]["data"][0]
    assert bars["y"] == m["components"]["values"] and bars["x"] == m["components"]["labels"]
    heads = figures["heads"]["figure"]["data"][0]
    assert heads["z"] == m["heads"]["values"] and heads["x"] == m["heads"]["heads"]
    for kind in ("template", "name", "gender"):
        table = m["breakdowns"][kind]
        z = figures[f"breakdown_{kind}"]["figure"]["data"][0]["z"]
        assert z == [[row["logit_diff"]] + row["heads"] for row in table["rows"]]
