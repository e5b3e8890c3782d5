"""Circuit discovery and verification (generator/engine/graph.py, experiments/circuit.py) against
TransformerLens's `attribution_patch` and `faithfulness`, hand-written hook loops, the engine's
exact patching, and what must hold exactly: the whole graph is the clean run, the empty circuit
the corrupted run, integrated gradients add up, and on a linear model EAP-IG is exact."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import PROMPTS, TOL, TOL_REFERENCE, drawn, gpt2_tokenizer, load, subset, worker
from transformer_lens.tools.analysis import EdgeAttributionConfig, attribution_patch, faithfulness

from generator.engine import PatchingEngine
from generator.engine.graph import CircuitRunner
from generator.experiments import circuit, params
from generator.metrics import logit_diff
from generator.tasks import build, load_task


def early_corruption(batch):
    """Corrupted prompts that also differ at position 1 (another prompt's name), so runs start
    at position 1 instead of after the shared prefix."""
    corrupted = batch.corrupted_tokens.clone()
    corrupted[:, 1] = batch.clean_tokens.roll(1, dims=0)[:, 1]
    return dataclasses.replace(batch, corrupted_tokens=corrupted)


@pytest.fixture(scope="module")
def tiny(tiny_gpt2):
    return tiny_gpt2, early_corruption(subset(build(load_task("pronoun"), tiny_gpt2)))


def case(request, which):
    """(model, batch): the organism on a few of the notebook's prompts, or the tiny model with
    an early corruption."""
    if which == "organism":
        return request.getfixturevalue("organism"), request.getfixturevalue("few_prompts")
    return request.getfixturevalue("tiny")


def runner_for(model, batch, **kwargs):
    return CircuitRunner(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens, **kwargs)


def model_metric(model, tokens, answers):
    with torch.no_grad():
        return logit_diff(model(tokens), answers)


@pytest.mark.parametrize("which", ["organism", "tiny, early corruption", "tiny, no shared prefix"])
def test_whole_graph_is_the_clean_run_and_empty_circuit_the_corrupted_one(which, request):
    model, batch = case(request, "organism" if which == "organism" else "tiny")
    runner = runner_for(model, batch, share_prefix=which != "tiny, no shared prefix")
    assert runner.start == {"organism": 7, "tiny, early corruption": 1, "tiny, no shared prefix": 0}[which]
    clean = model_metric(model, batch.clean_tokens, batch.answer_tokens)
    corrupted = model_metric(model, batch.corrupted_tokens, batch.answer_tokens)
    torch.testing.assert_close(runner.clean_metric, clean, atol=TOL, rtol=0)
    torch.testing.assert_close(runner.corrupted_metric, corrupted, atol=TOL, rtol=0)
    everything = runner.graph.upstream()
    torch.testing.assert_close(runner.evaluate(everything), clean, atol=TOL, rtol=0)
    torch.testing.assert_close(runner.evaluate(torch.zeros_like(everything)), corrupted, atol=TOL, rtol=0)
    # patching every edge clean into the corrupted run is the clean run too
    torch.testing.assert_close(
        runner.patch_edges(everything[..., None].expand(*everything.shape, runner.n_pos)), clean, atol=TOL, rtol=0
    )


def test_graph_has_mibs_edge_count_for_gpt2_small():
    from generator.engine.graph import EdgeGraph

    assert int(EdgeGraph(12, 12).upstream().sum()) == 32491  # MIB's GPT-2 small graph


def transformer_lens_edge_scores(model, batch, swap: bool) -> dict:
    """TransformerLens's `attribution_patch` edge scores averaged over the prompts: (clean −
    corrupted activation) · gradient at the corrupted run; with `swap` the two runs trade
    places, so the gradient is the clean run's and the product has the opposite sign."""
    totals: dict = {}
    for i in range(len(batch.clean_tokens)):
        metric = lambda logits, i=i: logit_diff(logits, batch.answer_tokens[i : i + 1])[0]  # noqa: E731
        runs = (batch.clean_tokens[i : i + 1], batch.corrupted_tokens[i : i + 1])
        with torch.enable_grad():
            result = attribution_patch(
                model, *(runs[::-1] if swap else runs), metric, EdgeAttributionConfig(granularity="edge")
            )
        for edge, score in result.edge_scores.items():
            totals[edge] = totals.get(edge, 0.0) + score / len(batch.clean_tokens)
    return totals


@pytest.mark.parametrize("which", ["organism", "tiny"])
@pytest.mark.parametrize("at", ["corrupted", "clean"])
def test_gradient_scores_equal_transformer_lens_attribution_patch(which, at, request):
    """Position-aware scores with the gradient at the corrupted run (attribution patching) =
    TransformerLens's edge scores; at the clean run (MIB's EAP) = minus TransformerLens's with
    clean and corrupted swapped."""
    model, batch = case(request, which)
    runner = runner_for(model, batch)
    ours = runner.scores(1, at)
    totals = transformer_lens_edge_scores(model, batch, swap=at == "clean")
    sign = -1.0 if at == "clean" else 1.0
    assert len(totals) == int(runner.graph.upstream().sum()) * runner.n_pos
    for (writer, reader), expected in totals.items():
        (w, p), (r, _) = runner.graph.from_transformer_lens(writer), runner.graph.from_transformer_lens(reader)
        got = float(ours[w, r, p])
        assert abs(got - sign * expected) < TOL_REFERENCE, (writer, reader, got, sign * expected)


def test_mibs_eap_by_hand_on_the_edges_into_the_logits(tiny):
    """MIB's EAP (eap/attribute.py get_scores_eap) by hand on the tiny model: each writer's
    clean − corrupted output (from the caches) dotted with the gradient of the mean logit
    difference at the clean run's final residual stream, summed over positions; and it is not
    attribution patching's number (the gradient at the corrupted run differs)."""
    model, batch = tiny
    runner = runner_for(model, batch)
    n_layers = model.cfg.n_layers
    captured = {}

    def keep(act, hook):
        act.retain_grad()
        captured["resid"] = act
        return act

    with torch.enable_grad():
        logits = model.run_with_hooks(batch.clean_tokens, fwd_hooks=[(f"blocks.{n_layers - 1}.hook_resid_post", keep)])
        logit_diff(logits, batch.answer_tokens).mean().backward()
    grad = captured["resid"].grad.detach()  # [B, P, D]
    with torch.no_grad():
        _, clean = model.run_with_cache(batch.clean_tokens)
        _, corrupted = model.run_with_cache(batch.corrupted_tokens)

    def output(cache, writer):
        kind, *where = writer
        if kind == "embed":
            return cache["hook_embed"]
        if kind == "mlp":
            return cache[f"blocks.{where[0]}.hook_mlp_out"]
        layer, head = where
        return cache[f"blocks.{layer}.attn.hook_z"][:, :, head] @ model.blocks[layer].attn.W_O[head]

    mib, patching = runner.scores(1, "clean").sum(-1), runner.scores(1, "corrupted").sum(-1)
    differ = 0
    for w, writer in enumerate(runner.graph.writers):
        with torch.no_grad():
            delta = output(clean, writer) - output(corrupted, writer)
        expected = float((delta * grad).sum())  # the gradient of the mean holds the 1/B already
        assert abs(float(mib[w, -1]) - expected) < TOL_REFERENCE, (writer, float(mib[w, -1]), expected)
        differ += abs(float(patching[w, -1]) - expected) > 10 * TOL_REFERENCE
    assert differ > 0  # the two gradients are two numbers on this model


@pytest.mark.parametrize("which", ["organism", "tiny"])
def test_circuit_runs_equal_transformer_lens_faithfulness(which, request):
    """Three circuits (top 5, 30 and 200 edges by |EAP|): our batched exact run of each equals
    TransformerLens's `faithfulness`, prompt by prompt."""
    model, batch = case(request, which)
    runner = runner_for(model, batch)
    scores = runner.scores(1)
    flat = scores.flatten().abs().argsort(descending=True)
    writers, readers, n_pos = scores.shape
    for n in (5, 30, 200):
        keep = torch.zeros(scores.numel(), dtype=torch.bool)
        keep[flat[:n]] = True
        keep = keep.reshape(scores.shape) & runner.graph.upstream()[..., None]
        ours = runner.evaluate(keep)
        circuit_edges = [runner.graph.to_transformer_lens(w, r, p) for w, r, p in keep.nonzero().tolist()]
        for i in range(len(batch.clean_tokens)):
            metric = lambda logits, i=i: logit_diff(logits, batch.answer_tokens[i : i + 1])[0]  # noqa: E731
            tl = faithfulness(
                model, batch.clean_tokens[i : i + 1], batch.corrupted_tokens[i : i + 1], metric, circuit_edges
            )
            recovered = (ours[i] - runner.corrupted_metric[i]) / (runner.clean_metric[i] - runner.corrupted_metric[i])
            assert abs(float(recovered) - tl.recovered) < TOL_REFERENCE, (n, i, float(recovered), tl.recovered)


def test_integrated_gradients_add_up(organism, few_prompts):
    """Completeness: summed over every edge out of the token embedding, EAP-IG scores integrate
    the metric's gradient along the interpolation, so with many steps they add up to the clean −
    corrupted mean logit difference (a Riemann sum: error O(1/steps))."""
    runner = runner_for(organism, few_prompts)
    gap = float((runner.clean_metric - runner.corrupted_metric).mean())
    errors = {steps: abs(float(runner.scores(steps)[0].sum()) - gap) for steps in (1, 10, 100)}
    assert errors[100] < 0.01 * abs(gap), errors
    assert errors[100] < errors[10] < errors[1] or errors[1] < 0.01 * abs(gap), errors


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    """A GPT-2 whose metric is linear in every activation: no MLP (held at zero), no queries
    (uniform causal attention), and a LayerNorm epsilon so large that normalising is a fixed
    scaling (to ~1e-6); float64. On it EAP-IG's first-order scores are exact."""
    from transformers import GPT2Config, GPT2LMHeadModel

    tokenizer = gpt2_tokenizer()
    torch.manual_seed(0)
    hf = GPT2LMHeadModel(
        GPT2Config(vocab_size=len(tokenizer), n_layer=2, n_embd=32, n_head=2, n_positions=32, layer_norm_epsilon=1e8)
    )
    with torch.no_grad():
        for block in hf.transformer.h:
            block.attn.c_attn.weight[:, :32] = 0  # queries: zero, so every score is zero
            block.attn.c_attn.bias[:32] = 0
            for p in (*block.mlp.c_fc.parameters(), *block.mlp.c_proj.parameters()):
                p.zero_()
        hf.transformer.wte.weight.mul_(1000)  # activations well above LayerNorm's eps ... but not near it
        hf.transformer.wpe.weight.mul_(1000)
    path = tmp_path_factory.mktemp("linear-gpt2")
    hf.save_pretrained(path)
    tokenizer.save_pretrained(path)
    model = load(path, dtype="float64")
    return model, subset(build(load_task("pronoun"), model), [0, 50])


def test_eap_ig_is_exact_on_a_linear_model(linear):
    """Every edge's EAP-IG score equals its exact effect: the corrupted run with that edge alone
    carrying the clean writer output."""
    model, batch = linear
    runner = runner_for(model, batch)
    scores = runner.scores(ig_steps=20)
    base = runner.corrupted_metric.mean()
    scale = float((runner.clean_metric - runner.corrupted_metric).abs().mean())
    assert scale > 0
    for w, r in runner.graph.upstream().nonzero().tolist():
        patched = torch.zeros(*runner.graph.upstream().shape, runner.n_pos, dtype=torch.bool)
        patched[w, r] = True
        exact = float(runner.patch_edges(patched).mean() - base)
        assert abs(float(scores[w, r].sum()) - exact) < 1e-4 * scale, (w, r)


def test_edge_patch_equals_a_hook_on_the_readers_input(organism, few_prompts):
    """patch_edges for one edge into the logits: the corrupted run with the final residual shifted
    by that writer's clean − corrupted output, by a hook."""
    runner = runner_for(organism, few_prompts)
    g, n_layers = runner.graph, organism.cfg.n_layers
    w = g.writers.index(("head", n_layers - 1, 0))
    patched = torch.zeros(*g.upstream().shape, runner.n_pos, dtype=torch.bool)
    patched[w, -1] = True
    ours = runner.patch_edges(patched)
    with torch.no_grad():
        _, clean_cache = organism.run_with_cache(few_prompts.clean_tokens)
        _, corrupted_cache = organism.run_with_cache(few_prompts.corrupted_tokens)
    z = f"blocks.{n_layers - 1}.attn.hook_z"
    w_o = organism.blocks[n_layers - 1].attn.W_O[0]
    delta = (clean_cache[z][:, :, 0] - corrupted_cache[z][:, :, 0]) @ w_o

    def shift(act, hook):
        return act + delta

    with torch.no_grad():
        logits = organism.run_with_hooks(
            few_prompts.corrupted_tokens, fwd_hooks=[(f"blocks.{n_layers - 1}.hook_resid_post", shift)]
        )
    torch.testing.assert_close(ours, logit_diff(logits, few_prompts.answer_tokens), atol=TOL, rtol=0)


def test_node_effects_equal_the_engines_head_output_patching(organism, few_prompts):
    """The exact node ranking's head effects are activation patching of each head's output."""
    runner = runner_for(organism, few_prompts)
    effects = circuit.node_effects(runner, position_aware=False)
    engine = PatchingEngine(organism, few_prompts.clean_tokens, few_prompts.corrupted_tokens, few_prompts.answer_tokens)
    head_out = engine.sweep("head_out") - engine.corrupted_logit_diff.mean()
    for (kind, *where), value in zip(runner.graph.writers, effects):
        if kind == "head":
            assert abs(float(value) - float(head_out[tuple(where)])) < TOL, where


def test_node_effects_take_the_heads_from_the_engine(organism, few_prompts, monkeypatch):
    """With the engine's head sweep kept, the node effects are the runner's own to TOL, and the
    runner patches only the nodes that are not heads (the embedding, the MLPs)."""
    alone = circuit.node_effects(runner_for(organism, few_prompts), position_aware=False)
    runner = runner_for(organism, few_prompts)
    circuit.engine_head_effects(organism, few_prompts, runner)
    patched = []
    patch_edges = runner.patch_edges
    monkeypatch.setattr(runner, "patch_edges", lambda edges: patched.append(edges) or patch_edges(edges))
    effects = circuit.node_effects(runner, position_aware=False)
    torch.testing.assert_close(effects, alone, atol=TOL, rtol=0)
    assert len(patched) == sum(kind != "head" for kind, *_ in runner.graph.writers)
    assert len(runner.memo["head_effects"]) == organism.cfg.n_layers * organism.cfg.n_heads


def test_runs_side_by_side_give_one_threads_numbers(organism, few_prompts, monkeypatch):
    """On two threads the curves' circuits, the random orders, the nodes and the drawn edges run
    side by side (generator.engine.threads), each on one intra-op thread: every number is the
    one a single thread computes, in the same place."""
    from generator.engine import threads

    workers = set()
    inner = threads.side_by_side

    def spy(fn, items, device="cpu"):
        return inner(lambda x: workers.add(worker()) or fn(x), items, device)

    monkeypatch.setattr(circuit, "side_by_side", spy)
    p = params.Circuit(sizes=[0.02, 0.1, 0.5, 1.0], random_seeds=2, node_ranking=True, bootstrap=100)
    before, out = torch.get_num_threads(), []
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            workers.clear()
            runner = runner_for(organism, few_prompts)
            table, state, _ = circuit.run_graph(runner, p, False, few_prompts.spec.prompts)
            order = state["orders"][("eap_ig", "cmd")]
            edges = circuit.edge_effects(runner, state["evaluator"], order, 12)
            out.append((table, edges, set(workers)))
    finally:
        torch.set_num_threads(before)
    (alone, alone_edges, one), (together, together_edges, two) = out
    assert one == {"MainThread"} and two == {"0", "1"}
    assert same(together, alone)
    assert torch.equal(together_edges, alone_edges)


def same(a, b) -> bool:
    """Equal, tensors included (every element, exactly)."""
    if isinstance(a, torch.Tensor):
        return isinstance(b, torch.Tensor) and torch.equal(a, b)
    if isinstance(a, dict):
        return isinstance(b, dict) and a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
    if isinstance(a, (list, tuple)):
        return type(a) is type(b) and len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
    return a == b


@pytest.fixture(scope="module")
def result(circuit_result):
    return circuit_result


def test_curves_areas_and_smallest_circuit(organism, few_prompts, result):
    m = result.metrics
    runner = runner_for(organism, few_prompts)
    fractions = m["fractions"]
    x = torch.tensor(fractions, dtype=torch.float64)
    for name, row in m["methods"].items():
        for kind in ("cpr", "cmd"):
            c = row[kind]
            f = torch.tensor(c["faithfulness"], dtype=torch.float64)
            assert abs(f[-1] - 1) < 1e-4, (name, kind)  # 100 % of the edges: the model itself
            y = (1 - f).abs() if kind == "cmd" else f
            trapezoid = float(((x[1:] - x[:-1]) * (y[1:] + y[:-1]) / 2).sum())
            assert abs(c["area"] - trapezoid) < 1e-4, (name, kind)
            assert c["area_ci"][0] <= c["area"] + 1e-4 and c["area"] - 1e-4 <= c["area_ci"][1], (name, kind)
            # MIB's sizes, by hand: int(fraction × edges), so the smallest circuits are empty
            assert c["sizes"] == [int(f * m["n_edges"]) for f in fractions], (name, kind)
            for n, value in zip(c["sizes"], c["faithfulness"]):
                if n == 0:  # the empty circuit is the corrupted run: f = 0 exactly
                    assert abs(value) < 1e-6, (name, kind, value)
    smallest = m["circuit"]["smallest_faithful"]
    if smallest:  # re-run that circuit: the top edges by |EAP-IG|, exactly
        evaluator = circuit.Evaluator(runner, False)
        scores = evaluator.edge_scores(runner.scores(m["ig_steps"]))
        order = circuit.ranking(scores, absolute=True)
        f = circuit.faithfulness(
            runner.evaluate(evaluator.keep(order, smallest["edges"]))[None],
            runner.clean_metric,
            runner.corrupted_metric,
        )
        assert abs(float(f[0]) - smallest["faithfulness"]) < 1e-4 and float(f[0]) >= m["faithful"]
    assert m["held_out"]["n_scoring"] + m["held_out"]["n_testing"] == len(PROMPTS)
    assert set(result.timings) >= {"eap", "attribution_patching", "eap_ig", "exact_node", "random"}


def test_sizes_are_mibs_int_of_fraction_times_edges():
    """MIB's evaluate_area_under_curve keeps int(pct * n) edges: on the organism's 479 edges
    [0, 0, 2, 4, 9, 23, 47, 95, 239, 479] (the issue's numbers), never rounded up to one."""
    fractions = list(params.Circuit().sizes)
    assert fractions == [0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0]
    assert circuit.sizes_for(fractions, 479) == [0, 0, 2, 4, 9, 23, 47, 95, 239, 479]
    # a float product truncated, as Python computes it in MIB: 0.29 × 100 = 28.999… -> 28
    assert circuit.sizes_for([0.29, 1.0], 100) == [28, 100]


def test_drawn_edges_carry_their_exact_effects(organism, few_prompts, result):
    """Each drawn edge's exact effect is the corrupted run with that edge alone patched clean."""
    runner = runner_for(organism, few_prompts)
    g = runner.graph
    base = runner.corrupted_metric.mean()
    for e in result.metrics["drawn"]["edges"][:5]:
        w = g.writers.index(tuple(e["writer"].values()))
        r = g.readers.index(tuple(e["reader"].values()))
        patched = torch.zeros(*g.upstream().shape, runner.n_pos, dtype=torch.bool)
        patched[w, r] = True
        assert abs(float(runner.patch_edges(patched).mean() - base) - e["exact_effect"]) < TOL_REFERENCE


def test_figures_draw_the_stored_numbers(result):
    m, figures = result.metrics, drawn("circuit", result)
    curves = figures["faithfulness"]["figure"]["data"]
    eap_ig = next(t for t in curves if t.get("name") == "EAP-IG" and t["xaxis"] == "x")
    assert eap_ig["y"] == m["methods"]["eap_ig"]["cpr"]["faithfulness"] and eap_ig["x"] == m["fractions"]
    graph = figures["graph"]["figure"]
    edges = [t for t in graph["data"] if t["mode"] == "lines+markers"]
    assert len(edges) == len(m["drawn"]["edges"])
    steps = graph["layout"]["sliders"][0]["steps"]
    assert all(sum(s["args"][0]["visible"][:-1]) == int(s["label"].split()[0]) for s in steps)


# ---- the cluster bootstrap and the paired held-out comparison ---------------------------------


def pronoun_prompts():
    from generator.tasks import load_task

    return load_task("pronoun").prompts  # 20 names x 5 templates


def test_cluster_resamples_contain_whole_names_and_templates():
    prompts = pronoun_prompts()
    weights = circuit.resamples(prompts, params.Circuit(bootstrap=200), seed=0)
    assert set(weights) == {"name", "template"}
    for kind, n_clusters in (("name", 20), ("template", 5)):
        w = weights[kind]
        assert w.shape == (200, len(prompts))
        labels = [getattr(p, kind) for p in prompts]
        for label in set(labels):
            members = [i for i, x in enumerate(labels) if x == label]
            # a cluster is drawn whole: every prompt of it counts the same in each resample
            assert (w[:, members] == w[:, members[:1]]).all(), (kind, label)
        per_cluster = len(prompts) // n_clusters
        assert (w.sum(1) == len(prompts)).all()  # n_clusters draws of per_cluster prompts each
        assert (w % 1 == 0).all() and w.max() > 1 and (w == 0).any()  # with replacement
        assert per_cluster * n_clusters == len(prompts)


def test_boot_faithfulness_with_unit_weights_is_faithfulness():
    g = torch.Generator().manual_seed(1)
    curve, m_n, m_0 = torch.randn(3, 8, generator=g), torch.randn(8, generator=g) + 5, torch.randn(8, generator=g)
    ones = torch.ones(1, 8, dtype=torch.double)
    torch.testing.assert_close(
        circuit.boot_faithfulness(curve, m_n, m_0, ones)[0], circuit.faithfulness(curve, m_n, m_0).double()
    )
    # a weight of 2 is the prompt counted twice
    twice = torch.ones(1, 8, dtype=torch.double)
    twice[0, 3] = 2
    idx = torch.tensor([0, 1, 2, 3, 3, 4, 5, 6, 7])
    torch.testing.assert_close(
        circuit.boot_faithfulness(curve, m_n, m_0, twice)[0],
        circuit.faithfulness(curve[:, idx], m_n[idx], m_0[idx]).double(),
    )


def fake_runner(n, seed=2):
    from types import SimpleNamespace

    g = torch.Generator().manual_seed(seed)
    return SimpleNamespace(clean_metric=torch.rand(n, generator=g) + 4, corrupted_metric=torch.rand(n, generator=g) - 4)


def test_held_out_difference_is_paired():
    """Both arms are resampled with the same weights: the difference of two identical curves has
    an interval of exactly 0, and the interval equals a recomputation with one set of resamples
    (arms resampled independently give another interval, and a width for identical arms)."""
    prompts = pronoun_prompts()
    p = params.Circuit(bootstrap=300)
    runner = fake_runner(len(prompts))
    fractions = p.sizes
    g = torch.Generator().manual_seed(3)
    base = runner.corrupted_metric + (runner.clean_metric - runner.corrupted_metric) * torch.rand(
        len(fractions), len(prompts), generator=g
    )
    other = base + 0.3 * torch.randn(base.shape, generator=g)
    weights = circuit.resamples(prompts, p, seed=0)

    same = circuit.paired_difference(base, base, runner, fractions, p, weights)
    assert same["estimate"] == 0
    for kind in ("by_name", "by_template"):
        assert same[kind]["low"] == 0 and same[kind]["high"] == 0 and not same[kind]["excludes_zero"]

    diff = circuit.paired_difference(other, base, runner, fractions, p, weights)
    m_n, m_0 = runner.clean_metric, runner.corrupted_metric

    def areas(curve, w):
        return circuit.area(fractions, circuit.boot_faithfulness(curve, m_n, m_0, w), False)

    for kind, w in weights.items():
        paired = circuit.quantiles(areas(other, w) - areas(base, w), p)
        assert abs(diff[f"by_{kind}"]["low"] - float(paired[0])) < 1e-5
        assert abs(diff[f"by_{kind}"]["high"] - float(paired[1])) < 1e-5
        assert diff[f"by_{kind}"]["low"] < diff[f"by_{kind}"]["high"]  # intervals have width
        # the mutant: each arm on its own resamples
        fresh = circuit.resamples(prompts, p, seed=99)[kind]
        unpaired = circuit.quantiles(areas(other, w) - areas(base, fresh), p)
        assert abs(float(unpaired[0]) - diff[f"by_{kind}"]["low"]) > 1e-4
        assert diff[f"by_{kind}"]["excludes_zero"] == (paired[0] > 0 or paired[1] < 0)


def test_held_out_splits_by_name():
    prompts = pronoun_prompts()
    scoring, testing = circuit.name_split(prompts, seed=0)
    assert sorted(scoring + testing) == list(range(len(prompts)))
    names = {i: prompts[i].name for i in range(len(prompts))}
    assert not {names[i] for i in scoring} & {names[i] for i in testing}
    for group in ("male", "female"):  # half of each group's names score
        assert len({names[i] for i in scoring if prompts[i].group == group}) == 5


def test_intervals_have_width_and_both_cluster_kinds(result):
    m = result.metrics
    for name in ("eap", "eap_ig"):
        c = m["methods"][name]["cpr"]
        assert c["by_template"] is not None and len(c["by_template"]["low"]) == len(c["sizes"])
        assert any(lo < hi for lo, hi in zip(c["low"], c["high"]))
    assert m["random_seeds"] == params.Circuit().random_seeds >= 10
    assert len(m["methods"]["random"]["seeds"]) == m["random_seeds"]
    d = m["held_out"]["difference"]
    assert set(d) == {"estimate", "by_name", "by_template"}
