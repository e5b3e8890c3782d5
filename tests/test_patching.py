"""Activation patching, attribution patching, path patching and circuit discovery, each checked
against a naive implementation written here with plain run_with_hooks loops (float32, 1e-4).

Runs on `site_model_loaded` (the organism once it is trained, else a tiny random GPT-2) and a
few prompts spread over the task, so each test takes seconds."""

from __future__ import annotations

import copy
import dataclasses

import jinja2
import pytest
import torch

from generator.experiments import check_finite, circuit, params, patching, path_patching
from generator.experiments.common import logit_diff
from generator.render import environment, figure_html
from generator.tasks import build, load_task

TOL = 1e-4
PROMPTS = [0, 15, 33, 99]  # both groups, several templates


@pytest.fixture(scope="module")
def model(site_model_loaded):
    return site_model_loaded


@pytest.fixture(scope="module")
def batch(model):
    full = build(load_task("pronoun"), model)
    idx = torch.tensor(PROMPTS)
    spec = dataclasses.replace(full.spec, prompts=tuple(full.spec.prompts[i] for i in PROMPTS))
    return dataclasses.replace(
        full,
        spec=spec,
        clean_tokens=full.clean_tokens[idx],
        corrupted_tokens=full.corrupted_tokens[idx],
        answer_tokens=full.answer_tokens[idx],
    )


@pytest.fixture(scope="module")
def result(model, batch):
    out = patching.run(model, batch, params.Patching(top_heads=4), {})
    check_finite("patching", out.metrics)
    return out


@pytest.fixture(scope="module")
def reference(model, batch):
    """The clean cache and the clean / corrupted mean logit differences."""
    with torch.no_grad():
        clean_logits, cache = model.run_with_cache(batch.clean_tokens)
        corrupted_logits = model(batch.corrupted_tokens)
    clean = logit_diff(clean_logits, batch.answer_tokens).mean().item()
    corrupted = logit_diff(corrupted_logits, batch.answer_tokens).mean().item()
    return cache, clean, corrupted


def normalised(model, batch, reference, hooks) -> float:
    _, clean, corrupted = reference
    with torch.no_grad():
        logits = model.run_with_hooks(batch.corrupted_tokens, fwd_hooks=hooks)
    return (logit_diff(logits, batch.answer_tokens).mean().item() - corrupted) / (clean - corrupted)


def copy_from_clean(clean_act, index):
    def hook(act, hook):
        act = act.clone()
        act[index] = clean_act[index]
        return act

    return hook


# hook in each block, and the index a cell (position p, head h) patches
NAIVE = {
    "resid_pre": ("hook_resid_pre", ("layer", "pos"), lambda p, h: (slice(None), p)),
    "attn_out": ("hook_attn_out", ("layer", "pos"), lambda p, h: (slice(None), p)),
    "mlp_out": ("hook_mlp_out", ("layer", "pos"), lambda p, h: (slice(None), p)),
    "head_out": ("attn.hook_z", ("layer", "head"), lambda p, h: (slice(None), slice(None), h)),
    "head_out_by_pos": ("attn.hook_z", ("layer", "pos", "head"), lambda p, h: (slice(None), p, h)),
    "head_v": ("attn.hook_v", ("layer", "head"), lambda p, h: (slice(None), slice(None), h)),
    "head_pattern": ("attn.hook_pattern", ("layer", "head"), lambda p, h: (slice(None), h)),
}


def cells(model, batch, axes):
    n_pos = batch.clean_tokens.shape[1]
    for layer in range(model.cfg.n_layers):
        for p in range(n_pos) if "pos" in axes else [None]:
            for h in range(model.cfg.n_heads) if "head" in axes else [None]:
                yield layer, p, h


@pytest.mark.parametrize("target", list(NAIVE))
def test_sweep_matches_naive_loop(model, batch, result, reference, target):
    hook, axes, index = NAIVE[target]
    got = result.metrics["sweeps"][target]
    for layer, p, h in cells(model, batch, axes):
        name = f"blocks.{layer}.{hook}"
        expected = normalised(model, batch, reference, [(name, copy_from_clean(reference[0][name], index(p, h)))])
        cell = got[layer]
        for i in (p, h):
            if i is not None:
                cell = cell[i]
        assert abs(cell - expected) < TOL, (target, layer, p, h, cell, expected)


def test_residual_stream_checks(model, batch, result):
    resid = result.metrics["sweeps"]["resid_pre"]
    final = batch.clean_tokens.shape[1] - 1
    changed = (batch.clean_tokens != batch.corrupted_tokens).nonzero()[:, 1].unique().tolist()
    assert changed == [final]  # the pronoun task corrupts only the final "."
    assert batch.position_labels[final].startswith(".")
    assert abs(resid[-1][final] - 1.0) < TOL  # last layer, final position: the whole clean run
    assert abs(resid[0][changed[0]] - 1.0) < TOL  # layer 0 at the "." position: the whole input
    assert all(abs(v) < TOL for row in resid for v in row[:final])  # identical tokens: no effect
    flow = result.metrics["resid_flow"]
    assert flow["changed_is_final"] and flow["moves_at_layer"] is None
    assert flow["dominant_by_layer"] == [batch.position_labels[final]] * model.cfg.n_layers


def test_attribution_matches_naive_gradient(model, batch, result, reference):
    """The estimate is d/dε metric(corrupted + ε·(clean − corrupted)) at ε = 0 over each cell:
    computed here with one ε per cell and plain autograd, not TransformerLens's hooks."""
    cache, clean, corrupted = reference
    n_pos, n_layers, n_heads = batch.clean_tokens.shape[1], model.cfg.n_layers, model.cfg.n_heads
    shapes = {
        "resid_pre": (n_pos, 1),
        "attn_out": (n_pos, 1),
        "mlp_out": (n_pos, 1),
        "head_out_by_pos": (n_pos, n_heads, 1),
        "head_v": (1, n_heads, 1),
        "head_pattern": (n_heads, 1, 1),
    }
    eps = {
        (t, layer): torch.zeros(shape, requires_grad=True) for t, shape in shapes.items() for layer in range(n_layers)
    }

    def nudge(t, layer, name):
        def hook(act, hook):
            return act + eps[(t, layer)] * (cache[name] - act.detach())

        return hook

    hooks = [
        (f"blocks.{layer}.{NAIVE[t][0]}", nudge(t, layer, f"blocks.{layer}.{NAIVE[t][0]}"))
        for t in shapes
        for layer in range(n_layers)
    ]
    with torch.enable_grad():
        logits = model.run_with_hooks(batch.corrupted_tokens, fwd_hooks=hooks)
        metric = (logit_diff(logits, batch.answer_tokens).mean() - corrupted) / (clean - corrupted)
        metric.backward()
    got = result.metrics["attribution"]
    for t in shapes:
        expected = torch.stack([eps[(t, layer)].grad.flatten() for layer in range(n_layers)])
        if t == "head_out_by_pos":
            expected = expected.reshape(n_layers, n_pos, n_heads)
            assert torch.allclose(torch.tensor(got["head_out"]), expected.sum(1), atol=TOL), "head_out"
        assert torch.allclose(torch.tensor(got[t]), expected, atol=TOL), t


def test_attribution_agreement_is_reported(result):
    agreement = result.metrics["agreement"]
    assert set(agreement) == set(patching.SWEEPS)
    for a in agreement.values():
        assert 0 <= a["n_cells"] <= a["n_total"]
        for key in ("pearson", "spearman"):
            assert a[key] is None or -1 - 1e-6 <= a[key] <= 1 + 1e-6
    assert patching.ranks(torch.tensor([3.0, 1.0, 1.0, 2.0])).tolist() == [3.0, 0.5, 0.5, 2.0]


def test_top_heads_and_groups(model, result):
    m = result.metrics
    effects = [abs(h["effect"]) for h in m["top_heads"]]
    assert effects == sorted(effects, reverse=True) and len(effects) == 4
    flat = [abs(v) for row in m["sweeps"]["head_out"] for v in row]
    assert abs(effects[0] - max(flat)) < TOL
    for h in m["top_heads"]:
        assert h["head"] == f"L{h['layer']}H{h['head_index']}"
        assert h["head"] in m["head_groups"][h["group"]]
    n = model.cfg.n_layers
    assert patching.layer_group(0, n) == "early" and (n == 1 or patching.layer_group(n - 1, n) != "early")
    assert [patching.layer_group(layer, 12) for layer in (0, 3, 4, 7, 8, 11)] == ["early"] * 2 + ["middle"] * 2 + [
        "late"
    ] * 2


@pytest.fixture(scope="module")
def paths(model, batch, result):
    out = path_patching.run(model, batch, params.PathPatching(sources=1), {"patching": result.metrics})
    check_finite("path_patching", out.metrics)
    return out


def test_path_patching_matches_naive_recompute(model, batch, reference, paths):
    """The path source -> receiver.c: recompute the receiver head's q / k / v from the corrupted
    residual plus the source's clean-minus-corrupted write (z @ W_O), by hand, and patch it in."""
    cache, clean, corrupted = reference
    with torch.no_grad():
        _, corrupted_cache = model.run_with_cache(batch.corrupted_tokens)
    source = paths.metrics["sources"]
    if not source:
        pytest.skip("no source head outside the last layer")
    source = source[0]
    sl, sh = (int(x) for x in source["source"][1:].split("H"))
    w_o = model.blocks[sl].attn.W_O[sh]
    z = f"blocks.{sl}.attn.hook_z"
    delta = (cache[z][:, :, sh] - corrupted_cache[z][:, :, sh]) @ w_o
    for c in ("q", "k", "v"):
        for layer in range(sl + 1, model.cfg.n_layers):
            attn = model.blocks[layer].attn
            x = corrupted_cache[f"blocks.{layer}.hook_resid_pre"] + delta
            x = x - x.mean(-1, keepdim=True)
            x = x / (x.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt()  # folded LayerNorm
            w, b = getattr(attn, f"W_{c.upper()}"), getattr(attn, f"b_{c.upper()}")
            for h in range(model.cfg.n_heads):
                new = x @ w[h] + b[h]

                def hook(act, hook, h=h, new=new):
                    act = act.clone()
                    act[:, :, h] = new
                    return act

                expected = normalised(model, batch, reference, [(f"blocks.{layer}.attn.hook_{c}", hook)])
                got = source["grids"][c][layer][h]
                assert abs(got - expected) < TOL, (c, layer, h, got, expected)
        assert all(v is None for row in source["grids"][c][: sl + 1] for v in row)


@pytest.fixture(scope="module")
def discovered(model, batch):
    out = circuit.run(model, batch, params.Circuit(n_prompts=len(PROMPTS), top_edges=6, circuit_sizes=[5, 10**6]), {})
    check_finite("circuit", out.metrics)
    return out


def test_circuit_edges_match_naive_gradient(model, batch, reference, discovered):
    """Edges into the logits: (clean − corrupted write) · d(logit diff)/d(final residual), with
    the writer's write read from the caches and the gradient from one ε on the final residual."""
    cache, _, _ = reference
    with torch.no_grad():
        _, corrupted_cache = model.run_with_cache(batch.corrupted_tokens)
    n_layers = model.cfg.n_layers
    final = f"blocks.{n_layers - 1}.hook_resid_post"
    eps = torch.zeros(*batch.clean_tokens.shape, model.cfg.d_model, requires_grad=True)  # one per prompt
    with torch.enable_grad():
        logits = model.run_with_hooks(batch.corrupted_tokens, fwd_hooks=[(final, lambda act, hook: act + eps)])
        logit_diff(logits, batch.answer_tokens).mean().backward()
    labels = batch.position_labels

    def write(label, c):
        name, pos = label.split("@")
        p = labels.index(pos)
        if name == "embed":
            return c["hook_embed"][:, p]
        if name.startswith("MLP"):
            return c[f"blocks.{name[3:]}.hook_mlp_out"][:, p]
        layer, head = (int(x) for x in name[1:].split("H"))
        return c[f"blocks.{layer}.attn.hook_z"][:, p, head] @ model.blocks[layer].attn.W_O[head]

    checked = 0
    for e in discovered.metrics["top_edges"]:
        if not e["reader"].startswith("logits"):
            continue
        p = labels.index(e["reader"].split("@")[1])
        delta = write(e["writer"], cache) - write(e["writer"], corrupted_cache)
        expected = (delta * eps.grad[:, p]).sum().item()  # the mean's 1/n is already in the gradient
        assert abs(e["score"] - expected) < TOL, (e, expected)
        checked += 1
    assert checked > 0


def test_circuit_faithfulness_bounds(discovered):
    m = discovered.metrics
    whole = m["faithfulness"][-1]
    assert whole["size"] == m["total_edges"]
    assert abs(whole["recovered"] - 1.0) < 1e-3  # keeping every edge is the clean run
    scores = [abs(e["score"]) for e in m["top_edges"]]
    assert scores == sorted(scores, reverse=True)


def test_pages_render(model, result, paths, discovered, tmp_path):
    """Both pages render from these results under StrictUndefined, every figure captioned."""
    from conftest import ROOT

    from generator.config import Config

    config = Config(paths={"templates": str(ROOT / "templates")})
    env = environment(config)

    def figure(record, name, caption):
        assert caption.strip()
        return figure_html(record["figures"][name], name, caption)

    records = {
        name: {"metrics": r.metrics, "figures": r.figures, "provenance": {"model": "m"}}
        for name, r in (("patching", result), ("path_patching", paths), ("circuit", discovered))
    }

    def render(records):
        pages = {}
        for template in ("patching.md.j2", "path-patching.md.j2"):
            try:
                pages[template] = env.get_template(template).render(r=records, primary="m", figure=figure, page="x.md")
            except jinja2.UndefinedError as e:  # pragma: no cover - the failure message
                pytest.fail(f"{template}: {e}")
            assert "None" not in pages[template] and "NaN" not in pages[template]
        return pages

    pages = render(records)
    assert "Nothing has to move between positions" in pages["patching.md.j2"]
    # the branches this model does not reach, on edited copies of its results
    other = copy.deepcopy(records)
    flow = other["patching"]["metrics"]["resid_flow"]
    flow.update(changed_is_final=False, changed_positions=["John_1"], moves_at_layer="L1")
    other["patching"]["metrics"]["attribution_fit"]["poor"] = ["MLP output"]
    other["path_patching"]["metrics"]["sources"] = []
    other["circuit"]["metrics"]["smallest_faithful"] = None
    pages = render(other)
    assert "at\n**L1**" in pages["patching.md.j2"] and "It fails" in pages["patching.md.j2"]
    assert "No source heads" in pages["path-patching.md.j2"] and "No circuit tried" in pages["path-patching.md.j2"]
    flow["moves_at_layer"] = None
    assert "never\ntakes over" in render(other)["patching.md.j2"]
    del other["circuit"]
    assert "Automatic circuit discovery" not in render(other)["path-patching.md.j2"]


@pytest.mark.parametrize("target", ["resid_pre", "head_out", "head_pattern"])
def test_engine_and_transformer_lens_fallback_agree(model, batch, reference, target):
    """Models the engine does not implement (e.g. attention-only) fall back to TL's sweeps:
    both paths of `patching.sweep` give the same numbers."""
    cache = reference[0]
    engine = patching.make_engine(model, batch)
    assert engine is not None  # the organism is GPT-2-style: the engine runs it
    fast = patching.sweep(engine, model, batch, cache, target)
    slow = patching.sweep(None, model, batch, cache, target)
    assert torch.allclose(fast, slow, atol=TOL), (fast - slow).abs().max()
