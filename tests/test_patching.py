"""Activation patching, attribution patching and path patching, each checked against a naive
implementation written here with plain run_with_hooks loops or autograd, on the organism and a
few of the notebook's prompts; and the TransformerLens fallback, run for real on a model the
engine refuses."""

from __future__ import annotations

import pandas as pd
import pytest
import torch
from conftest import TOL_REFERENCE as TOL
from conftest import load, subset, typed

from generator.experiments import params, patching, path_patching
from generator.heads import Head, layer_group
from generator.metrics import check_finite, logit_diff
from generator.patch_targets import TARGETS
from generator.tasks import build, load_task


@pytest.fixture(scope="module")
def model(organism):
    return organism


@pytest.fixture(scope="module")
def batch(few_prompts):
    return few_prompts


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
    assert flow["changed_is_final"] and flow["moves_at_layer"] is None and flow["unchanged_is_noise"]
    assert flow["dominant_by_layer"] == [final] * model.cfg.n_layers
    assert result.metrics["backend"] == "engine"


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


def test_attribution_agreement_is_recomputed_from_the_stored_sweeps(model, batch, result):
    """Pearson and Spearman over the cells whose clean and corrupted activations differ,
    recomputed here with pandas from the stored exact sweeps and estimates."""
    import einops

    m = result.metrics
    assert set(m["agreement"]) == set(m["targets"])
    with torch.no_grad():
        _, clean = model.run_with_cache(batch.clean_tokens)
        _, corrupted = model.run_with_cache(batch.corrupted_tokens)
    for t in m["targets"]:
        exact, estimate = torch.tensor(m["sweeps"][t]).flatten(), torch.tensor(m["attribution"][t]).flatten()
        a = m["agreement"][t]
        assert a["n_total"] == exact.numel()
        assert a["max_abs_error"] == pytest.approx(float((exact - estimate).abs().max()), abs=1e-5)
        differs = torch.stack(
            [
                einops.reduce((clean[name] - corrupted[name]).abs(), TARGETS[t].reduce, "sum") > 0
                for name in (f"blocks.{layer}.{TARGETS[t].hook}" for layer in range(model.cfg.n_layers))
            ]
        ).flatten()
        assert int(differs.sum()) == a["n_cells"], t
        if a["n_cells"] < m["attribution_fit"]["min_points"]:  # never a correlation on < 10 points
            assert a["pearson"] is None and a["spearman"] is None and t in m["attribution_fit"]["undefined"], t
            continue
        if a["pearson"] is None:
            continue
        x, y = pd.Series(exact[differs].double().numpy()), pd.Series(estimate[differs].double().numpy())
        assert a["pearson"] == pytest.approx(x.corr(y), abs=1e-4), t
        assert a["spearman"] == pytest.approx(x.rank().corr(y.rank()), abs=1e-4), t  # Spearman: Pearson of ranks
    assert patching.ranks(torch.tensor([3.0, 1.0, 1.0, 2.0])).tolist() == [3.0, 0.5, 0.5, 2.0]
    assert m["attribution_fit"]["min_points"] == 10
    assert any(a["n_cells"] < 10 for a in m["agreement"].values())  # the case is exercised here


def test_no_correlation_on_fewer_than_min_points():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(12, generator=g)
    y = x + 0.1 * torch.randn(12, generator=g)
    for n, reported in ((3, False), (9, False), (10, True), (12, True)):
        mask = torch.arange(12) < n
        a = patching.correlations(x, y, mask, 10)
        assert (a["pearson"] is not None) == reported and (a["spearman"] is not None) == reported, n
        assert a["n_cells"] == n
    assert patching.correlations(x, y, torch.arange(12) < 4, 3)["pearson"] is not None


def test_top_heads_and_groups(model, result):
    m = result.metrics
    effects = [abs(h["effect"]) for h in m["top_heads"]]
    assert effects == sorted(effects, reverse=True) and len(effects) == 4
    flat = [abs(v) for row in m["sweeps"]["head_out"] for v in row]
    assert abs(effects[0] - max(flat)) < TOL
    for h in m["top_heads"]:
        assert abs(m["sweeps"]["head_out"][h["layer"]][h["head"]] - h["effect"]) < TOL
        assert h["group"] == layer_group(h["layer"], model.cfg.n_layers)
    # the notebook's split of GPT-2 small: first_mid_layer = 7, first_late_layer = 9
    assert [layer_group(layer, 12) for layer in (0, 6, 7, 8, 9, 11)] == ["early"] * 2 + ["middle"] * 2 + ["late"] * 2


@pytest.fixture(scope="module")
def paths(model, batch, result):
    out = path_patching.run(model, batch, params.PathPatching(sources=2), {"patching": typed("patching", result)})
    check_finite("path_patching", out.metrics)
    return out


def test_path_patching_equals_transformer_lens(model, batch, paths):
    """Every cell equals TransformerLens's get_act_patch_direct_path (1e-4, the promise)."""
    from transformer_lens.tools.analysis import get_act_patch_direct_path

    from generator.metrics import mean_logit_diff_metric

    m = paths.metrics
    assert m["backend"] == "engine" and m["senders"]
    with torch.no_grad():
        _, clean_cache = model.run_with_cache(batch.clean_tokens)
        _, corrupted_cache = model.run_with_cache(batch.corrupted_tokens)
    scale = m["clean_logit_diff"] - m["corrupted_logit_diff"]
    for s in m["senders"]:
        sender = Head.of(s["sender"])
        for c in ("q", "k", "v"):
            expected = get_act_patch_direct_path(
                model,
                batch.corrupted_tokens,
                clean_cache,
                corrupted_cache,
                mean_logit_diff_metric(batch.answer_tokens),
                sender.layer,
                sender.head,
                component=c,
                verbose=False,
            )
            expected = (expected - m["corrupted_logit_diff"]) / scale
            for layer in range(model.cfg.n_layers):
                for h in range(model.cfg.n_heads):
                    got = s["grids"][c][layer][h]
                    if layer <= sender.layer:
                        assert got is None  # no path leads there
                    else:
                        assert abs(got - float(expected[layer, h])) < 1e-4, (sender, c, layer, h)


def test_path_patching_matches_naive_recompute(model, batch, reference, paths):
    """The path sender -> receiver.c: recompute the receiver head's q / k / v by hand from the
    corrupted residual plus the sender's clean-minus-corrupted write (z @ W_O), through the
    (folded) LayerNorm recomputed on that sum, and patch it in."""
    cache, clean, corrupted = reference
    with torch.no_grad():
        _, corrupted_cache = model.run_with_cache(batch.corrupted_tokens)
    s = paths.metrics["senders"][0]
    sl, sh = Head.of(s["sender"])
    z = f"blocks.{sl}.attn.hook_z"
    delta = (cache[z][:, :, sh] - corrupted_cache[z][:, :, sh]) @ model.blocks[sl].attn.W_O[sh]
    for c in ("q", "k", "v"):
        for layer in range(sl + 1, model.cfg.n_layers):
            attn = model.blocks[layer].attn
            x = corrupted_cache[f"blocks.{layer}.hook_resid_pre"] + delta
            centred = x - x.mean(-1, keepdim=True)
            normed = centred / (centred.pow(2).mean(-1, keepdim=True) + model.cfg.eps).sqrt()  # folded LayerNorm
            w, b = getattr(attn, f"W_{c.upper()}"), getattr(attn, f"b_{c.upper()}")
            for h in range(model.cfg.n_heads):
                new = normed @ w[h] + b[h]

                def hook(act, hook, h=h, new=new):
                    act = act.clone()
                    act[:, :, h] = new
                    return act

                expected = normalised(model, batch, reference, [(f"blocks.{layer}.attn.hook_{c}", hook)])
                got = s["grids"][c][layer][h]
                assert abs(got - expected) < TOL, (c, layer, h, got, expected)


def sender_write(model, cache, corrupted_cache, sender):
    """The sender head's clean − corrupted write into the residual stream, [batch, pos, d_model]."""
    z = f"blocks.{sender.layer}.attn.hook_z"
    return (cache[z][:, :, sender.head] - corrupted_cache[z][:, :, sender.head]) @ model.blocks[sender.layer].attn.W_O[
        sender.head
    ]


def add_at_norm_input(norm, delta, final_only=False):
    """A hook that adds `delta` to one LayerNorm's input only (the residual stream itself is
    untouched; the norm recomputes on the sum)."""

    def add(x, hook):
        x = x.clone()
        if final_only:
            x[:, -1] = x[:, -1] + delta[:, -1]
        else:
            x = x + delta
        return x

    return [(f"{norm}.hook_in", add)]


def test_path_patching_into_mlps_and_logits_matches_hooks(model, batch, reference, paths):
    """The paths sender -> MLP input and sender -> logits: the sender's clean − corrupted write
    added at ln2's (or ln_final's) input hook on the corrupted run, every other component
    corrupted. The MLP of the sender's own layer
    reads it too (it reads the residual after attention); earlier MLPs are no path (null)."""
    cache, clean, corrupted = reference
    with torch.no_grad():
        _, corrupted_cache = model.run_with_cache(batch.corrupted_tokens)
    m = paths.metrics
    assert {"mlp", "logits"} <= set(m["components"])
    checked = 0
    for s in m["senders"]:
        sender = Head.of(s["sender"])
        delta = sender_write(model, cache, corrupted_cache, sender)
        for layer in range(model.cfg.n_layers):
            got = s["mlps"][layer]
            if layer < sender.layer:
                assert got is None
                continue
            hooks = add_at_norm_input(f"blocks.{layer}.ln2", delta)
            expected = normalised(model, batch, reference, hooks)
            assert abs(got - expected) < TOL, ("mlp", sender, layer, got, expected)
            checked += 1
        expected = normalised(model, batch, reference, add_at_norm_input("ln_final", delta, True))
        assert abs(s["logits"] - expected) < TOL, ("logits", sender, s["logits"], expected)
    assert checked >= model.cfg.n_layers


def test_path_patching_equals_the_circuit_edges(model, batch, paths):
    """Every path is the circuit graph's edge sender -> receiver patched alone: the circuit
    runner (generator.engine.graph, another implementation) gives the same effect."""
    from generator.engine.graph import CircuitRunner

    m = paths.metrics
    runner = CircuitRunner(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens)
    g = runner.graph
    gap = m["clean_logit_diff"] - m["corrupted_logit_diff"]
    base = runner.corrupted_metric.mean()

    def edge(writer, reader):
        patched = torch.zeros(*g.upstream().shape, runner.n_pos, dtype=torch.bool)
        patched[g.writers.index(writer), g.readers.index(reader)] = True
        return float(runner.patch_edges(patched).mean() - base) / gap

    for s in m["senders"]:
        sender = ("head", s["sender"]["layer"], s["sender"]["head"])
        for layer, got in enumerate(s["mlps"]):
            if got is not None:
                assert abs(got - edge(sender, ("mlp", layer))) < TOL, (sender, layer)
        assert abs(s["logits"] - edge(sender, ("logits",))) < TOL, sender
        for c, grid in s["grids"].items():
            for layer in range(sender[1] + 1, m["n_layers"]):
                for h in range(m["n_heads"]):
                    assert abs(grid[layer][h] - edge(sender, (c, layer, h))) < TOL, (sender, c, layer, h)


def test_path_patching_hook_fallback_equals_the_engine(model, batch, paths):
    """The TransformerLens fallback (hooks) gives the engine's numbers for MLPs and the logits."""
    with torch.no_grad():
        hooks = path_patching.HookSweeps(model, batch)
    m = paths.metrics
    scale = m["clean_logit_diff"] - m["corrupted_logit_diff"]
    for s in m["senders"]:
        sender = Head.of(s["sender"])
        with torch.no_grad():
            values, reached = hooks.mlps(sender)
            direct = float(hooks.logits(sender))
        assert list(reached) == [i for i, v in enumerate(s["mlps"]) if v is not None]
        for layer in reached:
            assert abs((float(values[layer]) - m["corrupted_logit_diff"]) / scale - s["mlps"][layer]) < TOL
        assert abs((direct - m["corrupted_logit_diff"]) / scale - s["logits"]) < TOL


def test_path_patching_picks_only_senders_above_negligible(model, batch, result):
    """No sender fills the quota with a negligible effect: heads below the threshold are listed
    as passed over, and the route keeps only paths that reach it, with their share of the sender."""
    typed_result = typed("patching", result)
    effects = sorted(abs(h.effect) for h in typed_result.top_heads)
    threshold = (effects[-1] + effects[-2]) / 2  # between the strongest head and the next
    out = path_patching.run(
        model, batch, params.PathPatching(sources=3, negligible=threshold), {"patching": typed_result}
    ).metrics
    assert len(out["senders"]) == 1 and abs(out["senders"][0]["sender_effect"]) >= threshold
    assert len(out["passed_over"]) == len(effects) - 1 and not out["beyond_quota"]
    assert all(abs(p["effect"]) < threshold for p in out["passed_over"])
    quota = path_patching.run(
        model, batch, params.PathPatching(sources=1, negligible=1e-9), {"patching": typed_result}
    ).metrics
    assert len(quota["senders"]) == 1 and len(quota["beyond_quota"]) == len(effects) - 1
    s = out["senders"][0]
    every = [p for p in out["top_paths"]]
    for step in s["route"]:
        assert abs(step["effect"]) >= threshold
        assert abs(step["share"] - step["effect"] / s["sender_effect"]) < 1e-5
    assert [abs(x["effect"]) for x in s["route"]] == sorted((abs(x["effect"]) for x in s["route"]), reverse=True)
    assert every


@pytest.fixture(scope="module")
def refused(tmp_path_factory):
    """A model the engine refuses (GPT-NeoX: rotary positions, parallel attention and MLP) that
    TransformerLens patches: a random tiny one with GPT-2's tokenizer."""
    from conftest import save_random_neox

    path = save_random_neox(tmp_path_factory.mktemp("tiny-neox"))
    model = load(path)
    from conftest import subset

    return model, subset(build(load_task("pronoun"), model), [0, 50])


def test_fallback_runs_transformer_lens_for_a_model_the_engine_refuses(refused):
    """Not `engine=None` by hand: the engine really refuses this architecture, the experiments
    record the fallback, and their numbers equal a plain run_with_hooks loop."""
    model, batch = refused
    assert patching.make_engine(model, batch) is None
    targets = ["resid_pre", "attn_out", "mlp_out", "head_out", "head_v", "head_pattern"]
    result = patching.run(model, batch, params.Patching(targets=targets, top_heads=3), {})
    assert result.metrics["backend"] == "transformer_lens"
    with torch.no_grad():
        clean_logits, cache = model.run_with_cache(batch.clean_tokens)
        corrupted = logit_diff(model(batch.corrupted_tokens), batch.answer_tokens).mean().item()
    reference = (cache, logit_diff(clean_logits, batch.answer_tokens).mean().item(), corrupted)
    for target in ("resid_pre", "head_out"):
        hook, axes, index = NAIVE[target]
        for layer, p, h in cells(model, batch, axes):
            name = f"blocks.{layer}.{hook}"
            expected = normalised(model, batch, reference, [(name, copy_from_clean(cache[name], index(p, h)))])
            cell = result.metrics["sweeps"][target][layer]
            cell = cell[p] if p is not None else cell[h]
            assert abs(cell - expected) < TOL, (target, layer, p, h)
    paths = path_patching.run(
        model, batch, params.PathPatching(sources=1, negligible=1e-9), {"patching": typed("patching", result)}
    )
    assert paths.metrics["backend"] == "transformer_lens" and paths.metrics["senders"]
    check_finite("path_patching", paths.metrics)


def test_positions_heads_fall_back_to_transformer_lens(refused):
    """The hypotheses' final-position head sweep on a model the engine refuses: TransformerLens's
    by-position sweep at the last position, equal to a plain run_with_hooks loop."""
    from generator.experiments.hypotheses import positions

    model, _ = refused
    batch = subset(build(load_task("positions_verb"), model), [0, 50])
    last = batch.clean_tokens.shape[1] - 1
    with torch.no_grad():
        _, cache = model.run_with_cache(batch.clean_tokens)
        got = positions.final_heads(None, model, batch, cache)
        for layer, _, h in cells(model, batch, ("layer", "head")):
            name = f"blocks.{layer}.attn.hook_z"
            logits = model.run_with_hooks(
                batch.corrupted_tokens, fwd_hooks=[(name, copy_from_clean(cache[name], (slice(None), last, h)))]
            )
            assert abs(float(got[layer, h]) - logit_diff(logits, batch.answer_tokens).mean().item()) < TOL


def test_path_patching_figures_draw_the_stored_numbers(paths):
    from conftest import drawn

    m, figures = paths.metrics, drawn("path_patching", paths)
    for s in m["senders"]:
        bars = figures[f"{s['figure']}_direct"]["figure"]["data"][0]
        assert list(bars["y"]) == s["mlps"] + [s["logits"]]
        assert list(bars["x"]) == [f"MLP{layer}" for layer in range(m["n_layers"])] + ["logits"]
        assert (s["figure"] in figures) == bool(s["grids"])
