"""The contrast experiment against naive computations on the organism: the capital log-odds
readout against exceptions.capital_log_odds on the model's own logits (with case masks built
here), a circuit's exact verification against a forward patched by hand with TransformerLens
hooks, pairs of several lengths pooled, the stored measures and attention shares against plain
forwards; and on a planted model with a context route, the contrast circuit must find the head
that moves "@" to the final "." and the page must name it."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from conftest import TOL_REFERENCE, build_report, load, typed, write_config
from planted import CONTEXT_HEAD, save_planted

from generator import tasks
from generator.engine import pooled
from generator.engine.graph import CircuitRunner
from generator.engine.pooled import PooledRunner
from generator.experiments import contrast, exceptions, params
from generator.heads import head_name

FAMILIES = ("email", "file_extension")


def naive_masks(model):
    """Which tokens start with a capital / a lowercase letter, decoded one by one here."""
    words = [model.tokenizer.decode([i]).lstrip()[:1] for i in range(model.cfg.d_vocab)]
    return torch.tensor([w.isupper() for w in words]), torch.tensor([w.islower() for w in words])


def naive_log_odds(logits, upper, lower):
    probs = logits.double().softmax(-1)
    return probs[..., upper].sum(-1).log() - probs[..., lower].sum(-1).log()


@pytest.fixture(scope="module")
def contrast_batch(organism):
    spec = tasks.load_task("contrast")
    keep = [p for p in spec.prompts if p.group in FAMILIES]
    spec = dataclasses.replace(spec, prompts=tuple(keep), groups=FAMILIES)
    return tasks.build(spec, organism)


@pytest.fixture(scope="module")
def result(organism, pronoun_batch, contrast_batch):
    p = params.Contrast(bootstrap=100, random_seeds=1, sizes=[0.01, 0.1, 0.5, 1.0], graph_edges=20)
    return contrast.run(organism, pronoun_batch, p, {"tasks": {"contrast": contrast_batch}})


def members(batch, rows):
    return [batch.clean_tokens[i] for i in rows], [batch.corrupted_tokens[i] for i in rows]


def test_capital_readout_is_the_exceptions_measure(organism, contrast_batch):
    upper, lower = naive_masks(organism)
    assert torch.equal(upper, exceptions.case_masks(organism)[0]) and torch.equal(
        lower, exceptions.case_masks(organism)[1]
    )
    rows = [
        i for i, t in enumerate(contrast_batch.clean_tokens) if t.shape[-1] == contrast_batch.clean_tokens[0].shape[-1]
    ]
    clean, corrupted = (torch.cat(x) for x in members(contrast_batch, rows))
    runner = CircuitRunner(organism, clean, corrupted, None, case_masks=(upper, lower))
    with torch.no_grad():
        want_clean = naive_log_odds(organism(clean)[:, -1], upper, lower)
        want_corrupted = naive_log_odds(organism(corrupted)[:, -1], upper, lower)
    torch.testing.assert_close(runner.clean_metric.double(), want_clean, atol=TOL_REFERENCE, rtol=0)
    torch.testing.assert_close(runner.corrupted_metric.double(), want_corrupted, atol=TOL_REFERENCE, rtol=0)
    # the exceptions experiment's function on the same logits agrees too
    torch.testing.assert_close(
        exceptions.capital_log_odds(organism(clean)[:, -1], upper, lower).double(), want_clean, atol=1e-4, rtol=0
    )


def hand_patched(model, clean, corrupted, layer, head, upper, lower):
    """The clean run with one head's output (z, every position) replaced by the corrupted
    run's, through TransformerLens hooks: what ablating all of that head's edges means."""
    name = f"blocks.{layer}.attn.hook_z"
    _, cache = model.run_with_cache(corrupted, names_filter=lambda n: n == name)

    def patch(z, hook):
        z[:, :, head] = cache[name][:, :, head]
        return z

    with torch.no_grad():
        logits = model.run_with_hooks(clean, fwd_hooks=[(name, patch)])
    return naive_log_odds(logits[:, -1], upper, lower)


def test_pooled_verification_matches_a_hand_patched_forward(organism, contrast_batch):
    upper, lower = naive_masks(organism)
    idx = list(range(len(contrast_batch.spec.prompts)))
    clean, corrupted = members(contrast_batch, idx)
    assert len({t.shape[-1] for t in clean}) > 1  # pairs of several lengths
    runner = PooledRunner(organism, clean, corrupted, None, case_masks=(upper, lower))
    assert sorted(runner.order) == idx
    graph = runner.graph
    keep = graph.upstream().clone()
    assert torch.allclose(runner.evaluate(keep), runner.clean_metric, atol=1e-5)
    assert torch.allclose(runner.evaluate(torch.zeros_like(keep)), runner.corrupted_metric, atol=1e-5)
    layer, head = 1, 2
    keep[graph.writers.index(("head", layer, head))] = False  # every edge out of L1H2
    got = runner.evaluate(keep)
    want = torch.cat([hand_patched(organism, clean[i], corrupted[i], layer, head, upper, lower) for i in runner.order])
    torch.testing.assert_close(got.double(), want, atol=TOL_REFERENCE, rtol=0)
    # position-aware: the same ablation at the final position only (counted from the end) is
    # each length group's own runner with its last column ablated
    aware = graph.upstream()[..., None].expand(*graph.upstream().shape, runner.n_pos).clone()
    aware[graph.writers.index(("head", layer, head)), :, -1] = False
    for r, got in zip(runner.runners, runner.evaluate(aware).split(runner.sizes.int().tolist())):
        mine = graph.upstream()[..., None].expand(*graph.upstream().shape, r.n_pos).clone()
        mine[graph.writers.index(("head", layer, head)), :, -1] = False
        torch.testing.assert_close(got, r.evaluate(mine))


def test_padded_batches_equal_one_runner_per_length(organism, contrast_batch):
    """Left-padding pairs of several lengths into one batch changes no number: each prompt's
    metrics, random circuits on both graphs, patched edges and EAP-IG scores equal those of a
    runner per length with no padding (the way the pool ran before it padded)."""
    upper, lower = naive_masks(organism)
    idx = list(range(len(contrast_batch.spec.prompts)))
    clean, corrupted = members(contrast_batch, idx)
    runner = PooledRunner(organism, clean, corrupted, None, case_masks=(upper, lower))
    lengths = {int(t.shape[-1]) for t in clean}
    assert len(runner.runners) < len(lengths)  # padding pooled some lengths
    assert any(r.pad is not None and bool(r.pad.any()) for r in runner.runners)
    alone = {}
    for n in lengths:
        rows = [i for i in idx if clean[i].shape[-1] == n]
        r = CircuitRunner(organism, torch.cat([clean[i] for i in rows]), torch.cat([corrupted[i] for i in rows]), None,
                          case_masks=(upper, lower))  # fmt: skip
        alone[n] = (rows, r)

    def per_prompt(fn):  # a per-length function's per-prompt values, in the pool's order
        values = {}
        for rows, r in alone.values():
            values.update(zip(rows, fn(r)))
        return torch.stack([values[i] for i in runner.order])

    tol = {"atol": 1e-4, "rtol": 0}
    torch.testing.assert_close(runner.clean_metric, per_prompt(lambda r: r.clean_metric), **tol)
    torch.testing.assert_close(runner.corrupted_metric, per_prompt(lambda r: r.corrupted_metric), **tol)
    g = torch.Generator().manual_seed(1)
    plain = (torch.rand(runner.graph.upstream().shape, generator=g) < 0.3) & runner.graph.upstream()
    aware = torch.rand(*plain.shape, runner.n_pos, generator=g) < 0.5

    def cut(mask, r):
        return mask[..., runner.n_pos - r.n_pos :] if mask.dim() == 3 else mask

    for keep in (plain, aware):
        torch.testing.assert_close(runner.evaluate(keep), per_prompt(lambda r, k=keep: r.evaluate(cut(k, r))), **tol)
        torch.testing.assert_close(
            runner.patch_edges(~keep), per_prompt(lambda r, k=keep: r.patch_edges(cut(~k, r))), **tol
        )
    want = torch.zeros_like(runner.scores(2))
    for rows, r in alone.values():
        want[..., runner.n_pos - r.n_pos :] += r.scores(2) * len(rows) / len(idx)
    torch.testing.assert_close(runner.scores(2), want, atol=1e-5, rtol=1e-4)


def test_lengths_join_a_padded_batch_only_within_its_shared_prefix():
    """pooled.batches, longest first: a length joins the current batch while its padding fits
    in the prefix every pair of the batch shares, counted in that batch's positions."""

    def pair(n, first):  # a pair of n tokens that first differs at position `first`
        clean = torch.arange(1, n + 1)[None]
        corrupted = clean.clone()
        corrupted[0, first] = 0
        return clean, corrupted

    # A (10 tokens) shares 2; B (6) would need 4 pads; C (4) shares 3 of its own, so it fits
    # B's batch only if B's prefix (1) were counted in A's positions (1 + 4 = 5) by mistake
    a, b, c, d = pair(10, 2), pair(6, 1), pair(4, 3), pair(5, 4)
    assert pooled.batches(*zip(a, b, c)) == [[0], [1], [2]]
    # D (5) would need 5 pads, more than the 2 positions A's batch shares: a batch of its own
    assert pooled.batches(*zip(a, d)) == [[0], [1]]
    e = pair(9, 7)  # one pad, and its first difference (7, so 8 in A's positions) keeps A's prefix at 2
    assert pooled.batches(*zip(a, e)) == [[0, 1]]


def test_pooled_scores_are_the_prompt_weighted_mean(organism, contrast_batch):
    """EAP-IG scores of the pool: the gradient of the mean over every prompt, i.e. each length
    group's scores (aligned at the final position) weighted by its share of the prompts."""
    upper, lower = naive_masks(organism)
    idx = list(range(len(contrast_batch.spec.prompts)))
    runner = PooledRunner(organism, *members(contrast_batch, idx), None, case_masks=(upper, lower))
    total = torch.zeros_like(runner.scores(2))
    for r in runner.runners:
        total[..., runner.n_pos - r.n_pos :] += r.scores(2) * len(r.clean_metric) / len(idx)
    torch.testing.assert_close(runner.scores(2), total)
    # the scores sum to the first-order change of the mean metric: close to the exact one (IG's completeness)
    assert torch.sign(runner.scores(2).sum()) == torch.sign((runner.clean_metric - runner.corrupted_metric).mean())


def test_random_orders_run_on_the_graphs_the_params_name(organism, contrast_batch, result):
    """random_seeds orders on the position-agnostic graph; on the position-aware one only
    position_random_seeds (default none): each takes a curve's evaluations."""
    for f in result.metrics["families"]:
        if f["circuit"] is not None:
            assert len(f["circuit"]["methods"]["random"]["seeds"]) == 1
            assert "random" not in f["circuit"]["by_position"]["methods"]
    upper, lower = naive_masks(organism)
    idx = [i for i, p in enumerate(contrast_batch.spec.prompts) if p.group == FAMILIES[0]]
    runner = PooledRunner(organism, *members(contrast_batch, idx), None, case_masks=(upper, lower))
    prompts = [contrast_batch.spec.prompts[idx[j]] for j in runner.order]
    cp = contrast.circuit_params(params.Contrast(bootstrap=100, sizes=[0.1, 1.0]))
    for seeds in (0, 2):
        table, state, _ = contrast.run_graph(runner, cp, True, prompts, only=["eap_ig"], random_seeds=seeds)
        assert len(table.get("random", {"seeds": []})["seeds"]) == seeds
        # two sizes per curve: the EAP-IG curves (the full circuit shared) and each order's smaller one
        assert len(state["evaluator"].runs) == 3 + seeds


def test_stored_measures_match_plain_forwards(organism, contrast_batch, result):
    m = typed("contrast", result)
    upper, lower = naive_masks(organism)
    assert [r.pair for r in m.per_pair] == [p.name for p in contrast_batch.spec.prompts]
    for r, clean, corrupted, pair in zip(
        m.per_pair, contrast_batch.clean_tokens, contrast_batch.corrupted_tokens, contrast_batch.answer_tokens
    ):
        with torch.no_grad():
            logits = organism(torch.cat([clean, corrupted]))[:, -1]
        want = naive_log_odds(logits, upper, lower)
        assert abs(r.log_odds_exception - float(want[0])) < 1e-3 and abs(r.log_odds_end - float(want[1])) < 1e-3
        assert abs(r.logit_diff_end - float(logits[1, pair[0]] - logits[1, pair[1]])) < 1e-3
    for f in m.families:
        rows = [r for r in m.per_pair if r.family == f.family]
        gap = sum(r.log_odds_end - r.log_odds_exception for r in rows) / len(rows)
        assert abs(f.gap - gap) < 1e-4 and f.gap_ci[0] <= f.gap <= f.gap_ci[1] and f.gap_ci[0] < f.gap_ci[1]
        assert f.has_contrast == (abs(f.gap) >= 0.25 and (f.gap_ci[0] > 0 or f.gap_ci[1] < 0))


def test_movers_and_their_attention_against_the_patterns(organism, contrast_batch, result):
    m = typed("contrast", result)
    family = next(f for f in m.families if f.movers)
    rows = [i for i, p in enumerate(contrast_batch.spec.prompts) if p.group == family.family]
    for h in family.movers:
        name = f"blocks.{h.layer}.attn.hook_pattern"
        for member, tokens in (("exception", contrast_batch.clean_tokens), ("end", contrast_batch.corrupted_tokens)):
            shares = []
            for i in rows:
                _, cache = organism.run_with_cache(tokens[i], names_filter=lambda n, name=name: n == name)
                shares.append(float(cache[name][0, h.head, -1, contrast_batch.differing[i]].sum()))
            got = h.attention[member]
            assert abs(got.mean - sum(shares) / len(shares)) < 1e-4 and got.low <= got.mean <= got.high
        # each read position is counted from the end, and its deciding share from the pairs
        for read in h.reads:
            assert read.offset < 0
            hits = [
                contrast_batch.clean_tokens[i].shape[-1] - 1 + read.offset in contrast_batch.differing[i] for i in rows
            ]
            assert abs(read.deciding - sum(hits) / len(hits)) < 1e-6
    # movers are ranked by their circuit edges out of the final position
    scores = [h.score for h in family.movers]
    assert scores == sorted(scores, reverse=True)


def test_transfer_diagonal_is_the_family_circuit_at_that_size(result):
    m = typed("contrast", result)
    t = m.transfer
    assert t is not None and t.targets[-1] == "pronoun"
    explained = [f.family for f in m.families if f.circuit]
    assert [row.circuit for row in t.rows] == explained and t.targets[:-1] == explained
    for row in t.rows:
        for cell in row.on.values():
            assert cell.low <= cell.faithfulness + 1e-9 and cell.faithfulness <= cell.high + 1e-9
    # the diagonal: each family's own circuit at that size, a point of its |score| curve
    for f in m.families:
        if f.circuit:
            curve = f.circuit.methods["eap_ig"].cmd
            at = curve.sizes.index(t.edges)
            assert next(r for r in t.rows if r.circuit == f.family).on[f.family].faithfulness == curve.faithfulness[at]
    # the shared and specific edges: counted from the membership table
    s = m.edge_sets
    assert s.shared_by_all == sum(len(e.families) == len(s.families) for e in s.edges)
    assert all(len(e.families) >= 1 for e in s.edges)
    assert len(s.edges) <= t.edges * len(s.families)


def test_families_side_by_side_give_the_numbers_of_one_family_at_a_time(
    organism, pronoun_batch, contrast_batch, monkeypatch
):
    """On two threads the families' circuits and the transfer cells run side by side
    (generator.engine.threads), each on one intra-op thread: the same numbers as one thread."""
    import threading

    p = params.Contrast(bootstrap=100, random_seeds=1, sizes=[0.05, 0.5, 1.0], graph_edges=10, position_aware=False)
    inputs = {"tasks": {"contrast": contrast_batch}}
    before = torch.get_num_threads()
    seen = set()
    inner = contrast.family_circuit

    def spy(*args, **kwargs):
        seen.add(threading.get_ident())
        return inner(*args, **kwargs)

    monkeypatch.setattr(contrast, "family_circuit", spy)
    try:
        torch.set_num_threads(1)
        alone = contrast.run(organism, pronoun_batch, p, inputs).metrics
        assert seen == {threading.get_ident()}
        seen.clear()
        torch.set_num_threads(2)
        together = contrast.run(organism, pronoun_batch, p, inputs).metrics
    finally:
        torch.set_num_threads(before)
    assert len(seen) == 2 and threading.get_ident() not in seen
    assert [f["family"] for f in together["families"]] == list(FAMILIES)
    # the circuits and the transfer matrix exactly; the plain forwards of `measure` ran on the
    # main thread's two intra-op threads in one run and one in the other (the last digit may move)
    assert [f["circuit"] for f in together["families"]] == [f["circuit"] for f in alone["families"]]
    assert together["transfer"] == alone["transfer"] and together["edge_sets"] == alone["edge_sets"]
    for a, b in zip(together["per_pair"], alone["per_pair"], strict=True):
        assert a.keys() == b.keys()
        assert all(a[k] == (pytest.approx(b[k], rel=1e-4, abs=1e-4) if isinstance(b[k], float) else b[k]) for k in a)


def test_an_unbuildable_contrast_task_is_reported(organism, pronoun_batch):
    out = contrast.run(
        organism,
        pronoun_batch,
        params.Contrast(),
        {"tasks": {"contrast": tasks.Unbuildable("contrast", "pair email[3] ...: 9 against 8 tokens")}},
    )
    m = typed("contrast", out)
    assert m.unbuildable.startswith("pair email[3]") and m.families == [] and m.transfer is None


# --- a planted context route ------------------------------------------------------------------


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The planted `context` model's baseline and contrast results, through the pipeline."""
    from generator.config import load_config
    from generator.pipeline import run
    from generator.render import load_results

    folder = tmp_path_factory.mktemp("planted-context")
    model = str(save_planted(folder / "model", "context"))
    experiments = {"baseline": {}, "contrast": {"bootstrap": 100, "random_seeds": 1, "sizes": [0.1, 0.5, 1.0]}}
    config = load_config(write_config(folder, models=[model], device="cpu", experiments=experiments))
    run(config, log=lambda message: None)
    return model, folder, experiments, load_results(config, log=lambda message: None)[model]


def test_the_contrast_circuit_finds_the_planted_context_head(planted):
    _, _, _, records = planted
    m = records["contrast"]["metrics"]
    email = next(f for f in m.families if f.family == "email")
    assert email.has_contrast and email.gap > 0  # "@" suppresses the capital
    top = email.movers[0]
    assert (top.layer, top.head) == CONTEXT_HEAD
    # it reads at the "@": the circuit keeps its key / value input there
    model = load(planted[0])
    batch = tasks.build(tasks.load_task("contrast"), model)
    at = [
        [i + 1 - len(model.to_str_tokens(p.text)) for i, t in enumerate(model.to_str_tokens(p.text)) if "@" in t]
        for p in batch.spec.prompts
        if p.group == "email"
    ]
    assert {tuple(a) for a in at} == {(top.reads[0].offset,)}
    assert top.attention["exception"].low > top.attention["end"].high


def test_the_page_names_the_planted_head(planted, tmp_path):
    model, folder, experiments, _ = planted
    config = build_report(tmp_path, results=folder / "results", models=[model], experiments=experiments)
    page = (config.path("docs") / "contrast.md").read_text()
    section = page.split("## email", 1)[1].split("\n## ", 1)[0]
    assert f"**{head_name(CONTEXT_HEAD)}** reads" in section
    assert "move the deciding context" in section or "moves the deciding context" in section


def test_findings_say_a_head_reads_the_deciding_words_from_half_the_pairs_on():
    """contrast_findings' thresholds, at and just beyond their bounds: a head reads the deciding
    words where at least half of the pairs have them at its key / value position, and its
    attention tells the members apart only where the two intervals do not overlap."""
    from generator.contrast_findings import DECIDING, mover
    from generator.schemas.contrast import Mover

    def head(deciding, exception, end):
        return Mover.model_validate(
            {
                "layer": 1,
                "head": 2,
                "score": 1.0,
                "reads": [{"offset": -2, "score": 1.0, "deciding": deciding}],
                "attention": {
                    "exception": dict(zip(("mean", "low", "high"), exception)),
                    "end": dict(zip(("mean", "low", "high"), end)),
                },
            }
        )

    at = mover(head(DECIDING, (0.5, 0.4, 0.6), (0.5, 0.4, 0.6)))
    assert at["name"] == "L1H2" and at["reads_deciding"] and at["reads"] == "2 tokens before the final period"
    assert not (at["attends_more"] or at["attends_less"])
    below = mover(head(DECIDING - 1e-9, (0.8, 0.7001, 0.9), (0.5, 0.4, 0.7)))
    assert not below["reads_deciding"] and below["attends_more"] and not below["attends_less"]
    touching = mover(head(1.0, (0.8, 0.7, 0.9), (0.5, 0.4, 0.7)))
    assert not touching["attends_more"]  # intervals that touch overlap
    assert mover(head(1.0, (0.1, 0.0, 0.2), (0.5, 0.3, 0.7)))["attends_less"]


def test_figures_hold_each_cell_at_its_labels(result):
    """The transfer heatmap and the edge-membership map, cell by cell against the metrics."""
    from generator import figures
    from generator.heads import node_name

    m = typed("contrast", result)
    spec = figures.build("contrast", "transfer", m)["figure"]["data"][0]
    for i, circuit in enumerate(spec["y"]):
        for j, target in enumerate(spec["x"]):
            row = next(r for r in m.transfer.rows if r.circuit == circuit)
            assert spec["z"][i][j] == row.on[target].faithfulness
    spec = figures.build("contrast", "edge_sets", m)["figure"]["data"][0]
    for i, label in enumerate(spec["y"]):
        edge = m.edge_sets.edges[i]
        assert label == f"{node_name(edge.writer)} → {node_name(edge.reader)}"
        assert [bool(v) for v in spec["z"][i]] == [f in edge.families for f in spec["x"]]
    # the families' curves are drawn for each family with a circuit, and no other
    names = set(figures.available("contrast", m))
    assert {n for n in names if n.startswith("faithfulness_") and not n.endswith("_by_position")} == {
        f"faithfulness_{f.family}" for f in m.families if f.circuit
    }
