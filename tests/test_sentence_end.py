"""The sentence_end experiment against independent naive computations on the bundled organism:
the endings' logit differences and capital log-odds by plain forwards and a hand-made case mask,
the mean ablation through another hook point, the stored circuit's faithfulness (the circuit
experiment's own number for "."; 1 with every edge, 0 with none), neuron patching through the
MLP output (linear in the neurons) and through TransformerLens's hook_post, attribution by a
central finite difference, the probe's features from a plain cache, its fit by the loss's
gradient at the solution, its accuracy by a loop, and steering by adding the vector at another
hook point or by a hand-written final LayerNorm and unembedding."""

from __future__ import annotations

import pytest
import torch
from conftest import drawn, load, typed

from generator.experiments import get, sentence_end
from generator.experiments.params import SentenceEnd
from generator.experiments.sentence_end import endings, neurons, probe
from generator.pipeline import build_batches

TOL = 1e-4  # stored numbers have 6 significant digits; two float32 routes through the model
PARAMS = SentenceEnd(bootstrap=100, top_neurons=3, top_k=[1, 3], context_neurons=2, coefficients=[-2.0, 0.0, 2.0])


def close(a, b, tol=TOL):
    a, b = (float(x.detach()) if isinstance(x, torch.Tensor) else float(x) for x in (a, b))  # hooked runs keep grads
    return abs(a - b) <= tol * max(1.0, abs(b))


def few_per_family(batch, n: int = 4):
    """A task of prompts tokenised one by one (a list of [1, P]) cut to its first n prompts per
    family: the same analyses on fewer forwards."""
    import dataclasses

    keep, seen = [], {}
    for i, p in enumerate(batch.spec.prompts):
        seen[p.group] = seen.get(p.group, 0) + 1
        if seen[p.group] <= n:
            keep.append(i)
    spec = dataclasses.replace(batch.spec, prompts=tuple(batch.spec.prompts[i] for i in keep))
    return dataclasses.replace(
        batch,
        spec=spec,
        clean_tokens=[batch.clean_tokens[i] for i in keep],
        corrupted_tokens=[batch.corrupted_tokens[i] for i in keep],
        answer_tokens=batch.answer_tokens[torch.tensor(keep)],
        differing=[batch.differing[i] for i in keep] if batch.differing else batch.differing,
    )


@pytest.fixture(scope="module")
def tasks(organism):
    built = build_batches(organism, "test", set(), set(get("sentence_end").extra_tasks))
    return {name: few_per_family(batch) for name, batch in built.items()}


@pytest.fixture(scope="module")
def circuit(circuit_result):
    return typed("circuit", circuit_result)


@pytest.fixture(scope="module")
def result(organism, few_prompts, circuit, tasks):
    return sentence_end.run(organism, few_prompts, PARAMS, {"circuit": circuit, "tasks": tasks})


@pytest.fixture(scope="module")
def m(result):
    return typed("sentence_end", result)


def naive_masks(model):
    """Which tokens start (after leading spaces) with an upper / lower case letter, one by one."""
    upper, lower = torch.zeros(model.cfg.d_vocab, dtype=torch.bool), torch.zeros(model.cfg.d_vocab, dtype=torch.bool)
    for i in range(model.cfg.d_vocab):
        text = model.tokenizer.decode([i]).lstrip()
        upper[i], lower[i] = text[:1].isupper(), text[:1].islower()
    return upper, lower


def naive_log_odds(logits, upper, lower):
    p = logits.detach().double().softmax(-1)  # the model's parameters may ask for gradients
    return float(p[upper].sum().log() - p[lower].sum().log())


def texts(batch, ending):
    return [p.text[:-1] + ending for p in batch.spec.prompts]


# ---- endings ----------------------------------------------------------------------------------


def test_endings_by_plain_forwards(organism, few_prompts, m):
    upper, lower = naive_masks(organism)
    answers = few_prompts.answer_tokens
    for row in m.endings.rows:
        lds, odds = [], []
        for text, (a, b) in zip(texts(few_prompts, row.ending), answers.tolist()):
            logits = organism(organism.to_tokens(text))[0, -1]
            lds.append(float((logits[a] - logits[b]).detach()))
            odds.append(naive_log_odds(logits, upper, lower))
        assert close(row.logit_diff, sum(lds) / len(lds)), row.ending
        assert close(row.log_odds, sum(odds) / len(odds)), row.ending
        assert row.logit_diff_ci[0] <= row.logit_diff <= row.logit_diff_ci[1]
        assert row.sentence_end == (row.ending in PARAMS.sentence_ends)
    assert [r.ending for r in m.endings.rows] == [".", "!", "?", ";", ",", ""]


def test_halves_add_up_and_neutral_by_another_hook(organism, few_prompts, m):
    rows = {r.ending: r for r in m.endings.rows}
    for key in ("mean_ablation", "resample"):
        h = m.endings.halves[key] if isinstance(m.endings.halves, dict) else getattr(m.endings.halves, key)
        assert close(h.up + h.down, rows["."].logit_diff - rows[";"].logit_diff, 1e-3)
        assert close(h.up, rows["."].logit_diff - h.neutral, 1e-3)
    resample = m.endings.halves.resample
    others = m.endings.halves.resample_endings
    assert others == ["!", "?", ",", ""]
    assert close(resample.neutral, sum(rows[e].logit_diff for e in others) / len(others), 1e-3)
    # mean ablation, naively: the final position's block-0 input set to mean embedding + its position embedding
    ids = [int(organism.to_tokens(t)[0, -1]) for t in (".", "!", "?", ";", ",")]
    mean = organism.W_E[torch.tensor(ids)].mean(0)
    values = []
    for text, (a, b) in zip(texts(few_prompts, "."), few_prompts.answer_tokens.tolist()):
        tokens = organism.to_tokens(text)
        pos = organism.W_pos[tokens.shape[1] - 1]

        def hook(x, hook, pos=pos):
            x = x.clone()
            x[:, -1] = mean + pos
            return x

        logits = organism.run_with_hooks(tokens, fwd_hooks=[("blocks.0.hook_resid_pre", hook)])[0, -1]
        values.append(float((logits[a] - logits[b]).detach()))
    assert close(m.endings.halves.mean_ablation.neutral, sum(values) / len(values))


def test_circuit_on_the_period_is_the_circuit_experiments(m, circuit):
    row = next(c for c in m.endings.circuit if c.ending == ".")
    assert m.endings.circuit_edges == len(circuit.circuit.edges)
    if circuit.circuit.smallest_faithful is not None:  # the stored circuit is that circuit
        assert close(row.faithfulness, circuit.circuit.smallest_faithful.faithfulness)
    assert [c.ending for c in m.endings.circuit] == PARAMS.sentence_ends


def test_carries_is_one_with_every_edge_and_zero_with_none(organism, few_prompts):
    from generator.engine.graph import EdgeGraph
    from generator.experiments.circuit import cluster_weights

    graph = EdgeGraph(organism.cfg.n_layers, organism.cfg.n_heads)
    weights = cluster_weights([p.name for p in few_prompts.spec.prompts], 100, torch.Generator().manual_seed(0))
    bang = endings.ending_tokens(organism, few_prompts.spec.prompts, "!")
    semi = endings.ending_tokens(organism, few_prompts.spec.prompts, ";")
    answers = few_prompts.answer_tokens
    full = endings.carries(organism, bang, semi, answers, graph.upstream(), weights, "!", PARAMS)
    empty = endings.carries(organism, bang, semi, answers, torch.zeros_like(graph.upstream()), weights, "!", PARAMS)
    assert close(full["faithfulness"], 1.0, 1e-3) and abs(empty["faithfulness"]) < 1e-3
    with torch.no_grad():
        last = [organism(organism.to_tokens(t))[0, -1] for t in texts(few_prompts, "!")]
    naive = [float(logits[a] - logits[b]) for logits, (a, b) in zip(last, answers.tolist())]
    assert close(full["clean"], sum(naive) / len(naive))


def test_an_ending_of_another_length_is_refused(organism, few_prompts):
    from generator import ReportError

    prompts = few_prompts.spec.prompts
    with pytest.raises(ReportError, match="ending"):
        endings.ending_tokens(
            organism, [prompts[0], prompts[0].__class__(**{**prompts[0].__dict__, "text": "Hi."})], "!!!?"
        )


# ---- neurons ----------------------------------------------------------------------------------


def period_contrast(organism, few_prompts):
    dot = endings.ending_tokens(organism, few_prompts.spec.prompts, ".")
    semi = endings.ending_tokens(organism, few_prompts.spec.prompts, ";")
    return neurons.Contrast("period", dot, semi, "logit_diff", True, few_prompts.answer_tokens), dot, semi


def test_neuron_patching_through_the_mlp_output(organism, few_prompts, m):
    """One neuron patched = the corrupted run with its MLP output moved by (clean − corrupted
    activation) × its output weights: the MLP is linear in its neurons."""
    c = next(c for c in m.neurons.contrasts if c.name == "period")
    top = c.neurons[0]
    _, dot, semi = period_contrast(organism, few_prompts)
    name = f"blocks.{top.layer}.mlp.hook_post"
    _, clean_cache = organism.run_with_cache(dot, names_filter=[name])
    base_logits, corr_cache = organism.run_with_cache(semi, names_filter=[name])
    delta = clean_cache[name][:, -1, top.neuron] - corr_cache[name][:, -1, top.neuron]

    def hook(x, hook):
        x = x.clone()
        x[:, -1] += delta[:, None] * organism.W_out[top.layer, top.neuron]
        return x

    logits = organism.run_with_hooks(semi, fwd_hooks=[(f"blocks.{top.layer}.hook_mlp_out", hook)])
    a, b = few_prompts.answer_tokens.T
    ld = lambda lg: (lg[:, -1].gather(-1, a[:, None]) - lg[:, -1].gather(-1, b[:, None])).mean()  # noqa: E731
    assert close(top.exact_effect, ld(logits) - ld(base_logits))
    assert close(top.clean_activation, clean_cache[name][:, -1, top.neuron].mean())


def test_top_k_patching_by_transformer_lens_hooks(organism, few_prompts, m):
    """The top 3 neurons set to their clean values with TransformerLens's hook_post, written
    here: the same effect as the experiment's top-3 row."""
    c = next(c for c in m.neurons.contrasts if c.name == "period")
    chosen = [(n.layer, n.neuron) for n in c.neurons[:3]]
    _, dot, semi = period_contrast(organism, few_prompts)
    names = sorted({f"blocks.{layer}.mlp.hook_post" for layer, _ in chosen})
    _, clean_cache = organism.run_with_cache(dot, names_filter=names)
    hooks = []
    for layer, neuron in chosen:

        def hook(x, hook, layer=layer, neuron=neuron):
            x = x.clone()
            x[:, -1, neuron] = clean_cache[f"blocks.{layer}.mlp.hook_post"][:, -1, neuron]
            return x

        hooks.append((f"blocks.{layer}.mlp.hook_post", hook))
    a, b = few_prompts.answer_tokens.T
    ld = lambda lg: float((lg[:, -1].gather(-1, a[:, None]) - lg[:, -1].gather(-1, b[:, None])).mean().detach())  # noqa: E731
    effect = ld(organism.run_with_hooks(semi, fwd_hooks=hooks)) - ld(organism(semi))
    row = next(t for t in c.top_k if t.k == 3)
    assert close(row.effect, effect)
    assert row.share == pytest.approx(row.effect / c.all_effect, rel=1e-3)


def test_final_position_patching_is_whole_forwards_with_hooks(organism, few_prompts, tasks):
    """The fast patched runs (from the first named layer, the final position alone, cached keys
    and values) give the numbers of whole forwards with hooks on mlp.hook_post, on both kinds
    of contrast: paired prompts of one length with a logit difference, and the exception
    contrast's pairs of several lengths with the capital log-odds over the whole vocabulary."""
    from generator.experiments.exceptions import case_masks

    period, _, _ = period_contrast(organism, few_prompts)
    exception = sentence_end.exception_contrast(tasks["contrast"], tasks["exceptions"], case_masks(organism))
    assert len({t.shape[-1] for t in exception.corrupted}) > 1  # several token lengths
    d, layers = organism.cfg.d_mlp, [1, organism.cfg.n_layers - 1]
    g = torch.Generator().manual_seed(0)
    sets = [tuple(range(2 * d)), (3,), (d + 7,)] + [
        tuple(torch.randperm(2 * d, generator=g)[:k].tolist()) for k in (5, 50)
    ]
    for c in (period, exception):
        _, clean, _ = neurons.run_final(organism, c, c.clean, layers)
        n = len(c.corrupted) if isinstance(c.corrupted, list) else c.corrupted.shape[0]
        target = {l: clean[l] if c.paired else clean[l].mean(0).expand(n, -1) for l in layers}
        fast = neurons.patched_runs(organism, c, layers, target, sets, budget=7)  # several chunks
        slow = neurons.patched_runs_by_hooks(organism, c, layers, target, sets)
        assert torch.allclose(fast, slow, atol=1e-5, rtol=1e-5), (c.name, (fast - slow).abs().max())


def test_final_position_gradients_are_whole_forward_gradients(organism, few_prompts, tasks):
    """run_final's activations and gradients (the final position recomputed alone from the
    first named layer) against autograd through whole forwards with hooks on mlp.hook_post, one
    prompt at a time, on both contrasts, with two named layers (a path through the later MLP)."""
    from functools import partial

    from generator.experiments.exceptions import case_masks

    period, _, _ = period_contrast(organism, few_prompts)
    exception = sentence_end.exception_contrast(tasks["contrast"], tasks["exceptions"], case_masks(organism))
    layers = [1, organism.cfg.n_layers - 1]

    def leaf(x, hook, layer, leaves):
        x = x.clone()
        if not x.requires_grad:
            x = x.detach().requires_grad_(True)
        x.retain_grad()
        leaves[layer] = x
        return x

    for c in (period, exception):
        metric, acts, grads = neurons.run_final(organism, c, c.corrupted, layers, grad=True)
        rows = list(c.corrupted) if isinstance(c.corrupted, list) else list(c.corrupted[:, None])
        for i, row in enumerate(rows):
            leaves: dict = {}
            hooks = [(f"blocks.{l}.mlp.hook_post", partial(leaf, layer=l, leaves=leaves)) for l in layers]
            with torch.enable_grad():
                m = c.measure(organism, organism.run_with_hooks(row, fwd_hooks=hooks)[:, -1], [i])
                m.sum().backward()
            assert float(m.detach()) == pytest.approx(float(metric[i]), abs=1e-5)
            for l in layers:
                assert torch.allclose(leaves[l][0, -1].detach(), acts[l][i], atol=1e-5)
                assert torch.allclose(leaves[l].grad[0, -1], grads[l][i], atol=1e-6, rtol=1e-4), (c.name, i, l)


def test_attribution_by_finite_difference(organism, few_prompts, m):
    """Σ_prompts (clean − corrupted activation) × ∂metric/∂activation / n, naively: the mean
    metric's central difference when every prompt's activation moves by ε × its own difference."""
    c = next(c for c in m.neurons.contrasts if c.name == "period")
    top = c.neurons[0]
    _, dot, semi = period_contrast(organism, few_prompts)
    name = f"blocks.{top.layer}.mlp.hook_post"
    _, clean_cache = organism.run_with_cache(dot, names_filter=[name])
    _, corr_cache = organism.run_with_cache(semi, names_filter=[name])
    delta = (clean_cache[name][:, -1, top.neuron] - corr_cache[name][:, -1, top.neuron]).double()
    a, b = few_prompts.answer_tokens.T

    def metric(eps):
        def hook(x, hook):
            x = x.clone()
            x[:, -1, top.neuron] += (eps * delta).to(x.dtype)
            return x

        lg = organism.run_with_hooks(semi, fwd_hooks=[(name, hook)])[:, -1].double()
        return float((lg.gather(-1, a[:, None]) - lg.gather(-1, b[:, None])).mean().detach())

    eps = 1e-2
    assert top.attribution == pytest.approx((metric(eps) - metric(-eps)) / (2 * eps), rel=2e-2, abs=1e-3)


def test_neuron_writes_and_contexts(organism, few_prompts, m, tasks):
    from generator.experiments.hypotheses import copying

    pairs = copying.word_pairs(organism, set(few_prompts.answer_tokens[:, 0].tolist()))
    cap = copying.capital_direction(organism, pairs)
    assert m.neurons.layers == [x.layer for x in typed_circuit_mlps(m)]
    for c in m.neurons.contrasts:
        for n in c.neurons:
            assert close(n.capital_per_unit, organism.W_out[n.layer, n.neuron] @ cap)
            assert close(
                n.capital_of_difference, n.capital_per_unit * (n.clean_activation - n.corrupted_activation), 1e-3
            )
        # the top context's activation is the neuron's largest over the corpus (BOS left out)
        ctx = c.contexts[0]
        corpus = [endings.ending_tokens(organism, few_prompts.spec.prompts, e) for e in [".", "!", "?", ";", ",", ""]]
        corpus += list(tasks["exceptions"].clean_tokens) + list(tasks["contrast"].clean_tokens)
        corpus += list(tasks["contrast"].corrupted_tokens)
        name = f"blocks.{ctx.layer}.mlp.hook_post"
        best = max(
            float(organism.run_with_cache(t, names_filter=[name])[1][name][:, 1:, ctx.neuron].max()) for t in corpus
        )
        assert close(ctx.top[0].activation, best)
        assert len({t.context for t in ctx.top}) == len(ctx.top)
    assert {c.name for c in m.neurons.contrasts} == {"period", "exception"}
    assert next(c for c in m.neurons.contrasts if c.name == "exception").source == "contrast"


def typed_circuit_mlps(m):
    return [type("L", (), {"layer": layer}) for layer in m.neurons.layers]


def test_no_mlp_no_neurons():
    one = load("organism-attn-only-1l")
    from generator.experiments import circuit as circuit_experiment
    from generator.tasks import build, load_task

    batch = build(load_task("pronoun"), one)
    idx = torch.tensor([0, 99])
    import dataclasses

    spec = dataclasses.replace(batch.spec, prompts=tuple(batch.spec.prompts[i] for i in idx.tolist()))
    small = dataclasses.replace(
        batch,
        spec=spec,
        clean_tokens=batch.clean_tokens[idx],
        corrupted_tokens=batch.corrupted_tokens[idx],
        answer_tokens=batch.answer_tokens[idx],
    )
    from generator.experiments.params import Circuit

    out = circuit_experiment.run(
        one, small, Circuit(bootstrap=100, graph_edges=10, export_edges=10, random_seeds=1), {}
    )
    circ = typed("circuit", out)
    assert not circ.circuit.mlps
    res = sentence_end.run(one, small, PARAMS, {"circuit": circ, "tasks": {}})
    mm = typed("sentence_end", res)
    assert mm.neurons.layers == [] and mm.neurons.contrasts == []
    assert [s.stream for s in mm.probe.streams] == ["0_pre", "final_post"]


# ---- probe and steering -----------------------------------------------------------------------


def test_features_are_the_residual_stream(organism):
    tokens = [organism.to_tokens("Send it to john@gmail."), organism.to_tokens("John is a really great friend.")]
    for other in (0, 5):  # the sentence's other endings: their runs share all but the last token
        tokens.append(tokens[1].clone())
        tokens[-1][0, -1] = other
    x, labels = probe.features(organism, tokens)
    assert (x[:, 2] != x[:, 3]).any()  # the repeats computed, not copied
    assert labels == ["0_pre", "1_pre", "2_pre", "3_pre", "final_post"]
    for i, t in enumerate(tokens):
        _, cache = organism.run_with_cache(t)
        stack = cache.accumulated_resid(layer=None, incl_mid=False, pos_slice=-1)[:, 0]
        assert torch.allclose(x[:, i].float(), stack, atol=1e-5)


def test_features_from_the_contexts_corpus_run_are_the_features(organism, monkeypatch):
    """The neurons' corpus run (top_contexts with `streams`) keeps each prompt's final-position
    streams; the probe's features read them from there and run only the prompts it lacks, with
    the numbers of its own run."""
    from generator.experiments.sentence_end import final

    batch = organism.to_tokens(["John is a really great friend.", "Mary is such a good cook."])
    ending = batch.clone()
    ending[:, -1] = 0  # the same sentences with another last token: repeats in the corpus run
    corpus = [batch, ending]
    streams: dict = {}
    neurons.top_contexts(organism, corpus, [(1, 3)], 2, streams)
    assert len(streams) == 4
    extra = organism.to_tokens("Send it to john@gmail.")
    tokens = [batch[:1], ending[1:], extra, batch[1:]]
    alone, _ = probe.features(organism, tokens)
    ran = []
    inner = final.whole_and_repeats
    counted = lambda m, prompts, *a: ran.append(len(prompts)) or inner(m, prompts, *a)  # noqa: E731
    monkeypatch.setattr(final, "whole_and_repeats", counted)
    known, _ = probe.features(organism, tokens, streams)
    assert ran == [1]  # only the prompt the corpus lacks
    assert torch.allclose(known, alone, atol=1e-5)


def test_fit_is_the_regularised_optimum():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(200, 6, generator=g, dtype=torch.double) * torch.tensor([1.0, 5, 0.1, 2, 1, 3], dtype=torch.double)
    y = ((x[:, 0] + 0.3 * x[:, 1] + 0.5 * torch.randn(200, generator=g, dtype=torch.double)) > 0).double()
    w, b = probe.fit(x, y, 0.1)
    mean, std = x.mean(0), x.std(0)
    ws = (w * std).clone().requires_grad_(True)  # the standardised weights
    bs = (b + mean @ w).clone().requires_grad_(True)
    loss = probe.loss_of((x - mean) / std, y, ws, bs, 0.1)
    loss.backward()
    assert ws.grad.abs().max() < 1e-5 and bs.grad.abs() < 1e-5  # zero at the optimum
    naive = sum(((x[i] @ w + b > 0) == (y[i] > 0.5)) for i in range(len(y))) / len(y)
    assert float(probe.accuracy(x, y, w, b).mean()) == pytest.approx(float(naive))


def test_split_holds_out_whole_clusters():
    sources = ["a"] * 6 + ["b"] * 4 + ["c"]
    clusters = ["a1", "a1", "a2", "a3", "a4", "a4", "b1", "b2", "b3", "b4", "c1"]
    test = probe.split(sources, clusters, 0.5, 0)
    for c in set(clusters):
        assert len({bool(t) for t, cc in zip(test, clusters) if cc == c}) == 1  # a cluster on one side
    for s in ("a", "b"):
        sides = {bool(t) for t, ss in zip(test, sources) if ss == s}
        assert sides == {True, False}
    assert not test[-1]  # a source with one cluster trains only


def test_probe_accuracy_by_a_loop(organism, few_prompts, tasks, m):
    tokens = {e: endings.ending_tokens(organism, few_prompts.spec.prompts, e) for e in [".", "!", "?", ";", ",", ""]}
    data = probe.examples(organism, tokens, few_prompts, tasks["exceptions"], tasks["contrast"], PARAMS)
    test = probe.split(data["source"], data["cluster"], PARAMS.test_share, PARAMS.seed)
    assert not set(c for c, t in zip(data["cluster"], test) if t) & set(
        c for c, t in zip(data["cluster"], test) if not t
    )
    x, _ = probe.features(organism, data["tokens"])
    y = torch.tensor(data["label"], dtype=torch.double)
    s = len(m.probe.streams) - 1
    w, b = probe.fit(x[s][~test], y[~test], PARAMS.l2)
    hits = pair_hits = pairs = 0
    for i in range(len(y)):
        if test[i]:
            right = (float(x[s][i] @ w + b) > 0) == bool(data["label"][i])
            hits += right
            if data["pair"][i]:
                pairs += 1
                pair_hits += right
    assert close(m.probe.streams[s].test, hits / int(test.sum()))
    assert close(m.probe.streams[s].pairs_test, pair_hits / pairs)
    assert m.probe.n_test == int(test.sum()) and m.probe.n_pairs_test == pairs
    # at the embeddings a pair's two members are the same vector: exactly one of each is right
    assert m.probe.streams[0].pairs_test == 0.5


def test_steering_by_another_hook_and_by_hand(organism):
    from generator.experiments.exceptions import case_masks

    masks = case_masks(organism)
    upper, lower = naive_masks(organism)
    tokens = [organism.to_tokens("Send it to john@gmail."), organism.to_tokens("I wrote it to john at noon.")]
    v = torch.randn(organism.cfg.d_model, generator=torch.Generator().manual_seed(3), dtype=torch.double)
    n = organism.cfg.n_layers
    # a middle stream: the same vector added to the previous block's output
    got = probe.log_odds(organism, tokens, probe.stream_hook(n, 2), v, masks)
    for i, t in enumerate(tokens):

        def hook(x, hook):
            x = x.clone()
            x[:, -1] += v.float()
            return x

        logits = organism.run_with_hooks(t, fwd_hooks=[("blocks.1.hook_resid_post", hook)])[0, -1]
        assert close(got[i], naive_log_odds(logits, upper, lower))
    # the final stream: the final LayerNorm (folded: centre, scale) and the unembedding by hand
    got = probe.log_odds(organism, tokens, probe.stream_hook(n, n), v, masks)
    for i, t in enumerate(tokens):
        _, cache = organism.run_with_cache(t)
        resid = cache[f"blocks.{n - 1}.hook_resid_post"][0, -1].double() + v
        centred = resid - resid.mean()
        normed = centred / (centred.pow(2).mean() + organism.cfg.eps).sqrt()
        logits = normed @ organism.W_U.double() + organism.b_U.double()
        assert close(got[i], naive_log_odds(logits, upper, lower))


def test_steering_curve_and_verdict(organism, m):
    st = m.probe.steering
    zero = st.coefficients.index(0.0)
    assert st.exceptions_probe.mean[zero] == st.exceptions_random.mean[zero]  # unsteered: the same runs
    assert st.shift_up_probe == pytest.approx(st.exceptions_probe.mean[-1] - st.exceptions_probe.mean[zero], abs=1e-5)
    assert st.shift_down_probe == pytest.approx(
        st.sentence_ends_probe.mean[0] - st.sentence_ends_probe.mean[zero], abs=1e-5
    )
    assert st.works == (st.beats_random and st.stops_probe and (st.capitalises_probe or st.already_capital))
    assert st.stream != "0_pre"  # steered past the embeddings
    assert st.n_exceptions == st.n_sentence_ends  # the held-out pairs' two members


def test_verdict_on_made_up_curves():
    base = {"coefficients": [-1.0, 0.0, 1.0], "n_exceptions": 2, "n_sentence_ends": 2}

    def curve(values):
        return {"mean": values, "low": values, "high": values}

    works = probe.verdict(
        {
            **base,
            "exceptions_probe": curve([-3.0, -1.0, 2.0]),
            "exceptions_random": curve([-1.1, -1.0, -0.9]),
            "sentence_ends_probe": curve([-2.0, 1.0, 3.0]),
            "sentence_ends_random": curve([0.9, 1.0, 1.1]),
        }
    )
    assert works["works"] and works["capitalises_probe"] and works["stops_probe"] and not works["already_capital"]
    fails = probe.verdict(
        {
            **base,
            "exceptions_probe": curve([-3.0, -1.0, 2.0]),
            "exceptions_random": curve([-1.1, -1.0, 3.0]),  # the random direction moves them further
            "sentence_ends_probe": curve([-2.0, 1.0, 3.0]),
            "sentence_ends_random": curve([0.9, 1.0, 1.1]),
        }
    )
    assert not fails["works"] and not fails["beats_random"] and fails["capitalises_random"]


# ---- schema, figures, params --------------------------------------------------------------------


def test_schema_and_figures(result, m):
    figs = drawn("sentence_end", result)
    assert {"endings", "probe", "steering", "neurons_period", "neurons_exception"} <= set(figs)
    bars = figs["endings"]["figure"]["data"][0]
    assert bars["y"] == [r.logit_diff for r in m.endings.rows]


def test_params_refuse_bad_coefficients():
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="include 0"):
        SentenceEnd(coefficients=[1.0, 2.0, 3.0])
    with pytest.raises(ValidationError, match="increasing"):
        SentenceEnd(top_k=[3, 1])
