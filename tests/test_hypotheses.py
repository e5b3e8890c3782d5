"""The hypotheses experiment against independent naive computations on the bundled organism
(the capitalisation direction from the raw checkpoint, DLA by a hand loop over components,
attention by role from the raw pattern, position patching with TransformerLens's own sweep),
and its verdicts on models whose mechanism is known: two planted one-layer GPT-2s
(tests/planted.py) and the two bundled models, whose verdicts must follow the stated rules
from their own numbers (their weights change when they are retrained; nothing is assumed)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from conftest import TOL_REFERENCE as TOL
from conftest import drawn, load, subset, typed
from planted import planted_pairs, save_planted

from generator.experiments import get
from generator.experiments.hypotheses import copying, run
from generator.experiments.hypotheses.roles import batch_roles, position_roles, prompt_roles
from generator.experiments.params import Hypotheses
from generator.pipeline import build_batches
from generator.tasks import build, load_task

NO_HEADS = SimpleNamespace(top_positive=[], top_negative=[])


def run_all(model, attribution=NO_HEADS, patching=None, params=None):
    spec = get("hypotheses")
    batch = build(load_task("pronoun"), model)
    tasks = build_batches(model, "test", set(), set(spec.extra_tasks))  # as the pipeline builds them
    inputs = {"attribution": attribution, "tasks": tasks}
    if patching is not None:
        inputs["patching"] = patching
    return run(model, batch, params or Hypotheses(), inputs)


@pytest.fixture(scope="module")
def organism_result(organism):
    heads = SimpleNamespace(top_positive=[{"layer": 1, "head": 1}, {"layer": 2, "head": 2}], top_negative=[])
    return run_all(organism, attribution=heads)


@pytest.fixture(scope="module")
def one_layer():
    return load("organism-attn-only-1l")


@pytest.fixture(scope="module")
def one_layer_result(one_layer):
    return run_all(one_layer)


@pytest.fixture(scope="module", params=["general", "copying"])
def planted(request, tmp_path_factory):
    model = load(save_planted(tmp_path_factory.mktemp(f"planted-{request.param}"), request.param))
    return request.param, model, run_all(model)


# ---- roles ---------------------------------------------------------------------------------


def test_roles_of_the_notebook_prompts(organism, pronoun_batch):
    roles = batch_roles(organism, pronoun_batch)
    by_hand = ["BOS", "name", "verb", "modifiers", "modifiers", "modifiers", "noun", "period"]
    assert all(r == by_hand for r in roles) and position_roles(roles) == by_hand


def test_roles_follow_words_not_positions():
    pieces = ["<|endoftext|>", "my", " bro", "ther", " is", " a", " very", " good", " ath", "lete", "."]
    roles = prompt_roles(
        pieces, "my brother is a very good athlete.", "{name} is a very good athlete.", "my brother", True
    )
    assert roles == [
        "BOS",
        "name",
        "name",
        "name",
        "verb",
        "modifiers",
        "modifiers",
        "modifiers",
        "noun",
        "noun",
        "period",
    ]
    assert position_roles([["BOS", "name"], ["BOS", "verb"]]) == ["BOS", "mixed"]
    with pytest.raises(ValueError, match="do not spell"):
        prompt_roles(["<|endoftext|>", "John", "."], "Mary.", "{name}.", "Mary", True)


# ---- copying: the capitalisation direction ---------------------------------------------------


def test_word_pairs_match_the_tokenizers_encoding(organism, pronoun_batch):
    answers = set(pronoun_batch.answer_tokens.flatten().tolist())
    expected = {p for p in planted_pairs(organism.tokenizer) if p[0] not in answers}
    assert set(copying.word_pairs(organism, answers)) == expected and expected


def test_capital_direction_from_the_raw_checkpoint(organism, pronoun_batch):
    """Mean of lm_head[" Word"] − lm_head[" word"] times the final LayerNorm's weight (what
    fold_ln folds into W_U), centred over d_model as fold_ln centres it (the LayerNorm's output
    has no mean component to read); centring over the vocabulary leaves differences unchanged."""
    from safetensors.torch import load_file

    from generator.models import ORGANISM_DIR

    raw = load_file(ORGANISM_DIR / "model.safetensors")
    unembed = raw.get("lm_head.weight", raw["transformer.wte.weight"])
    pairs = copying.word_pairs(organism, set(pronoun_batch.answer_tokens.flatten().tolist()))
    cap, low = torch.tensor(pairs).T
    naive = raw["transformer.ln_f.weight"] * (unembed[cap] - unembed[low]).mean(0)
    naive -= naive.mean()
    assert torch.allclose(copying.capital_direction(organism, pairs), naive, atol=TOL)


@torch.no_grad()
def test_dla_onto_the_direction_matches_a_hand_loop(organism, few_prompts):
    pairs = copying.word_pairs(organism, set(few_prompts.answer_tokens.flatten().tolist()))
    d = copying.capital_direction(organism, pairs)
    result = copying.direction_analysis(organism, few_prompts, pairs, 0.8)
    _, cache = organism.run_with_cache(few_prompts.clean_tokens)
    cfg = organism.cfg
    parts = {}
    for layer in range(cfg.n_layers):
        for h in range(cfg.n_heads):
            parts[f"L{layer}H{h}"] = cache["z", layer][:, -1, h] @ organism.W_O[layer, h]
        parts[f"{layer}_mlp_out"] = cache["mlp_out", layer][:, -1]
    parts["embed"] = cache["hook_embed"][:, -1]
    parts["pos_embed"] = cache["hook_pos_embed"][:, -1]
    parts["bias"] = organism.b_O.sum(0).expand_as(parts["embed"])
    scale = cache["ln_final.hook_scale"][:, -1]
    naive = {k: (((v - v.mean(-1, keepdim=True)) / scale) @ d).mean() for k, v in parts.items()}
    got = dict(zip(result["components"], result["capital_dla"]))
    assert set(got) == set(naive)
    for k in naive:
        assert abs(got[k] - float(naive[k])) < TOL, k
    # the parts add up to the final residual stream's attribution
    final = cache["resid_post", cfg.n_layers - 1][:, -1]
    total = (((final - final.mean(-1, keepdim=True)) / scale) @ d).mean()
    assert abs(sum(got.values()) - float(total)) < TOL


# ---- attention by role ----------------------------------------------------------------------


@torch.no_grad()
def test_heads_by_role_match_the_raw_pattern(organism, pronoun_batch, organism_result):
    _, cache = organism.run_with_cache(pronoun_batch.clean_tokens)
    by_hand = {"BOS": [0], "name": [1], "verb": [2], "modifiers": [3, 4, 5], "noun": [6], "period": [7]}
    heads_dla = cache.stack_head_results(layer=-1, pos_slice=-1)
    heads_dla = cache.apply_ln_to_stack(heads_dla, layer=-1, pos_slice=-1)
    dirs = copying.answer_directions(organism, pronoun_batch.answer_tokens)
    for row in organism_result.metrics["attention"]["heads"]:
        pattern = cache["pattern", row["layer"]][:, row["head"], -1]
        for role, positions in by_hand.items():
            assert abs(row["attention"][role] - float(pattern[:, positions].sum(-1).mean())) < TOL
        naive = (heads_dla[row["layer"] * organism.cfg.n_heads + row["head"]] * dirs).sum(-1).mean()
        assert abs(row["dla"] - float(naive)) < TOL
        assert abs(sum(row["writes_pronoun"].values()) - row["dla"]) < TOL


def test_one_layer_mechanism_is_complete(one_layer_result):
    """A one-layer attention-only model's logit difference is its embeddings, heads, biases and
    unembedding bias; the heads' parts are every head's DLA, each split by role."""
    m = one_layer_result.metrics
    mech = m["attention"]["mechanism"]
    ld = m["copying"]["direction"]["logit_diff"]
    assert m["n_layers"] == 1 and m["attn_only"] and mech["mlps"] == 0
    assert abs(mech["embed"] + mech["heads"] + mech["bias"] + mech["unembed_bias"] - ld) < TOL
    rows = m["attention"]["heads"]
    assert len(rows) == 8 and abs(sum(r["dla"] for r in rows) - mech["heads"]) < TOL
    totals = m["attention"]["role_totals"]
    assert abs(sum(totals.values()) - mech["heads"]) < TOL
    for role in m["attention"]["roles"]:
        assert abs(totals[role] - sum(r["writes_pronoun"][role] for r in rows)) < TOL
    assert m["attention"]["roles"] == ["BOS", "name", "verb", "modifiers", "noun", "period"]


# ---- which positions matter -----------------------------------------------------------------


def test_positions_match_transformer_lens(organism, organism_result):
    from transformer_lens import patching as tl_patching

    from generator.metrics import mean_logit_diff_metric

    batch = subset(build(load_task("positions_name_gender"), organism), [0, 7, 30, 44])
    from generator.experiments.hypotheses import positions

    mine = positions.analyse(organism, batch, 0.1, 0.0)  # always localise: this compares the arithmetic
    _, cache = organism.run_with_cache(batch.clean_tokens)
    metric = mean_logit_diff_metric(batch.answer_tokens)
    tl = tl_patching.get_act_patch_resid_pre(organism, batch.corrupted_tokens, cache, metric)
    gap = mine["clean_logit_diff"] - mine["corrupted_logit_diff"]
    expected = (tl - mine["corrupted_logit_diff"]) / gap
    assert torch.allclose(torch.tensor(mine["recovered"]), expected.float(), atol=1e-3)
    # each head's output at the final position: TransformerLens's by-position sweep, read there
    heads = tl_patching.get_act_patch_attn_head_out_by_pos(organism, batch.corrupted_tokens, cache, metric)[:, -1]
    expected = (heads - mine["corrupted_logit_diff"]) / gap
    assert torch.allclose(torch.tensor(mine["final_head_out"]), expected.float(), atol=1e-3)
    top = expected.abs().flatten().argmax()
    assert (mine["top_head"]["layer"], mine["top_head"]["head"]) == divmod(int(top), organism.cfg.n_heads)
    assert mine["roles"][mine["changed"][0]] == "name"


def test_a_corruption_that_moves_nothing_is_not_localised(organism):
    from generator.experiments.hypotheses import positions

    batch = subset(build(load_task("positions_verb"), organism), [0, 1])
    out = positions.analyse(organism, batch, 0.1, min_gap=1e6)
    assert out["recovered"] is None and out["matters"] == []


# ---- verdicts -------------------------------------------------------------------------------


def sets(base, lower, none, capital):
    rows = [
        ("pronoun", base),
        ("copy_lowercase_names", lower),
        ("copy_no_capital", none),
        ("copy_capital_word", capital),
    ]
    return {"rows": [{"task": t, "logit_diff": v, "kept": v / base if base else None} for t, v in rows]}


SAME = {"profile_cosine": 0.95, "pair_cosines": {"median": 0.9}}
DIFFERENT = {"profile_cosine": 0.95, "pair_cosines": {"median": 0.5}}


@pytest.mark.parametrize(
    ("numbers", "direction", "kind"),
    [
        ((4.0, 3.0, 2.5, 4.0), SAME, "general_feature"),
        ((4.0, 3.0, 2.5, 4.0), DIFFERENT, "pronoun_specific"),
        ((4.0, 0.2, 2.5, 4.0), SAME, "copying"),  # one set without capitals is enough to fail
        ((4.0, 0.2, 0.1, 0.3), SAME, "needs_name"),
        ((-1.0, 3.0, 3.0, 3.0), SAME, "no_behaviour"),
        ((4.0, 2.0, 2.0, 1.0), SAME, "general_feature"),  # exactly `keeps` keeps
    ],
)
def test_copying_verdict_rules(numbers, direction, kind):
    assert copying.verdict(sets(*numbers), direction, keeps=0.5, same=0.8)["kind"] == kind


def test_planted_models_get_their_verdicts(planted):
    kind, _, result = planted
    m = result.metrics
    assert m["copying"]["verdict"]["kind"] == ("general_feature" if kind == "general" else "copying")
    mech, ld = m["attention"]["mechanism"], m["copying"]["direction"]["logit_diff"]
    if kind == "general":  # the "." embedding writes it all; the head nothing
        assert abs(mech["embed"] - ld) < 1e-3 and m["attention"]["heads_minor"]
    else:  # the head writes it all, from the capitalised name, and the name's position matters
        v = m["attention"]["verdict"]
        assert abs(mech["heads"] - ld) < 1e-3 and not m["attention"]["heads_minor"]
        assert (v["focus"], v["source"], v["focus_mostly"]) == ("name", "name", True)
        subject = next(p for p in m["positions"] if p["task"] == "positions_subject")
        assert [x["role"] for x in subject["matters"]] == ["name"]


@pytest.mark.parametrize("which", ["organism_result", "one_layer_result"])
def test_bundled_verdicts_follow_their_numbers(which, request):
    """Whatever the bundled models' weights, each verdict is the rule applied to its numbers."""
    m = typed("hypotheses", request.getfixturevalue(which))
    kept = {r.task: r.kept for r in m.copying.sets}
    without = min(kept["copy_lowercase_names"], kept["copy_no_capital"])
    d, t = m.copying.direction, m.thresholds
    same = d.profile_cosine >= t["same_components"] and d.pair_cosines.median >= t["same_components"]
    if m.copying.sets[0].logit_diff <= 0:
        expected = "no_behaviour"
    elif without >= t["keeps"]:
        expected = "general_feature" if same else "pronoun_specific"
    else:
        expected = "copying" if kept["copy_capital_word"] >= t["keeps"] else "needs_name"
    assert m.copying.verdict.kind == expected
    assert m.attention.heads_minor == (abs(m.attention.mechanism.heads) < t["minor"] * abs(d.logit_diff))


# ---- the page -------------------------------------------------------------------------------


def test_figures_and_page_word_the_verdicts(planted, one_layer_result, tmp_path):
    from conftest import write_config

    from generator.config import load_config
    from generator.render.jinja import environment, figure_function

    kind, _, result = planted
    figures = drawn("hypotheses", result)
    assert {"sets", "components", "head_attention", "head_writes", "head_per_unit"} <= set(figures)
    records = {
        name: {
            "hypotheses": {"metrics": typed("hypotheses", r), "provenance": {"model": name}, "experiment": "hypotheses"}
        }
        for name, r in (("planted", result), ("organism-attn-only-1l", one_layer_result))
    }
    config = load_config(write_config(tmp_path, models=list(records), device="cpu"))
    page = (
        environment(config)
        .get_template("hypotheses.md.j2")
        .render(results=records, models=list(records), figure=figure_function(), page="hypotheses.md", config=config)
    )
    planted_part = page.split("### planted")[1].split("###")[0]
    expected = "**Copying.**" if kind == "copying" else 'a general "capitalise next" feature'
    assert expected in planted_part
    assert page.count("**The whole mechanism.**") == 2  # both are one-layer and attention-only
    assert json.dumps(typed("hypotheses", result).model_dump()) and "nan" not in page.lower()
