"""generator/circuit_stats.py on tiny tensors, each function against a naive computation written
here with Python loops (or numpy's own percentile): no model, well under a second in all, so
that `make mutation` can run these for every mutant of the module. The properties on a real
circuit run are in test_circuit_stats.py and test_circuit.py."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from generator import circuit_stats as stats
from generator.experiments.params import Circuit as Params

FRACTIONS = [0.05, 0.1, 0.3, 0.6, 1.0]  # uneven steps: a wrong step width changes the area


def rand(*shape, seed=0, dtype=torch.float64):
    return torch.rand(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype)


def naive_f(m_c, m_n, m_0):
    """[S] faithfulness by hand: (mean circuit − mean empty) / (mean full − mean empty)."""
    mean = lambda xs: sum(float(x) for x in xs) / len(xs)  # noqa: E731
    full, empty = mean(m_n), mean(m_0)
    return [(mean(row) - empty) / (full - empty) for row in m_c]


def naive_area(fractions, f, cmd):
    y = [abs(1 - v) if cmd else v for v in f]
    return sum((fractions[i + 1] - fractions[i]) * (y[i + 1] + y[i]) / 2 for i in range(len(y) - 1))


def naive_weighted_f(curve, m_n, m_0, w):
    """faithfulness of one resample: every mean weighted by the prompts' weights w [B]."""
    total = sum(w)
    mean = lambda xs: sum(float(x) * wi for x, wi in zip(xs, w)) / total  # noqa: E731
    full, empty = mean(m_n), mean(m_0)
    return [(mean(row) - empty) / (full - empty) for row in curve]


def prompts(names=("Ann", "Bob", "Cy", "Di"), templates=("t0", "t1", "t2"), groups=None):
    """Names × templates, like the pronoun task's 20 × 5; `groups`: {name: group}."""
    return [
        SimpleNamespace(name=n, template=t, group=(groups or {}).get(n, "all"), text=f"{n} {t}")
        for n in names
        for t in templates
    ]


def metrics(b, seed=1):
    """Per-prompt clean and corrupted logit differences [B] that differ prompt by prompt."""
    return rand(b, seed=seed) + 3, rand(b, seed=seed + 1) - 1


# ---- sizes and rankings ----------------------------------------------------------------------


def test_sizes_are_the_truncated_product_capped_at_the_graph():
    fractions = [0.0, 0.001, 0.29, 0.5, 0.999, 1.0, 1.5]
    for n in (0, 1, 7, 100, 479):
        expected = [min(n, math.floor(f * n)) for f in fractions]
        assert stats.sizes_for(fractions, n) == expected, n
    assert stats.sizes_for([1.5], 10) == [10]  # never more edges than the graph has


@pytest.mark.parametrize("absolute", [False, True])
@pytest.mark.parametrize("with_tie", [False, True])
def test_ranking_against_a_sort_by_hand(absolute, with_tie):
    g = torch.Generator().manual_seed(4)
    scores = torch.randint(-3, 4, (40,), generator=g).double()  # many ties, both signs
    tie = torch.randint(0, 3, (40,), generator=g).double() if with_tie else None
    key = [abs(float(s)) if absolute else float(s) for s in scores]
    expected = sorted(range(40), key=lambda i: (-key[i], -float(tie[i]) if with_tie else 0, i))
    assert stats.ranking(scores, absolute, tie).tolist() == expected


# ---- faithfulness and areas ------------------------------------------------------------------


def test_faithfulness_against_means_by_hand():
    m_n, m_0 = metrics(6)
    m_c = rand(4, 6, seed=3) * 5 - 1
    assert stats.faithfulness(m_c, m_n, m_0).tolist() == pytest.approx(naive_f(m_c, m_n, m_0))
    # leading axes: each [S, B] slice on its own
    stacked = torch.stack([m_c, m_c.flip(-1) * 2])
    out = stats.faithfulness(stacked, m_n, m_0)
    assert out.shape == (2, 4)
    assert out[1].tolist() == pytest.approx(naive_f(stacked[1], m_n, m_0))
    # leading axes on the full and empty runs too ([K, S, B], [K, B], [K, B], K ≠ S): each its own
    m_ns, m_0s = torch.stack([m_n, m_n * 2, m_n + 1]), torch.stack([m_0, m_0 - 1, m_0 * 3])
    out = stats.faithfulness(torch.stack([m_c, m_c + 1, m_c * 2]), m_ns, m_0s)
    assert out.shape == (3, 4)
    for k, m in enumerate((m_c, m_c + 1, m_c * 2)):
        assert out[k].tolist() == pytest.approx(naive_f(m, m_ns[k], m_0s[k])), k


@pytest.mark.parametrize("cmd", [False, True])
def test_area_is_the_trapezoid_rule_by_hand(cmd):
    f = rand(3, len(FRACTIONS), seed=5) * 1.6 - 0.2  # above 1 and below 0 too: |1 − f| ≠ 1 − f
    out = stats.area(FRACTIONS, f, cmd)
    assert out.shape == (3,)
    for row, value in zip(f.tolist(), out.tolist()):  # in float64 throughout, fractions too
        assert value == pytest.approx(naive_area(FRACTIONS, row, cmd), rel=1e-13)
    assert float(stats.area(FRACTIONS, f[0], cmd)) == pytest.approx(naive_area(FRACTIONS, f[0].tolist(), cmd))


# ---- the cluster bootstrap -------------------------------------------------------------------


def test_cluster_weights_count_whole_clusters_drawn_with_replacement():
    labels = ["a", "a", "b", "c", "c", "c", "b", "d"]  # unequal clusters, not contiguous
    first = {label: labels.index(label) for label in labels}
    n = 4000
    w = stats.cluster_weights(labels, n, torch.Generator().manual_seed(0))
    assert w.shape == (n, len(labels)) and w.dtype == torch.float64
    for i, label in enumerate(labels):  # a prompt counts as often as its cluster was drawn
        assert torch.equal(w[:, i], w[:, first[label]])
    counts = w[:, [first[c] for c in "abcd"]]  # [n, clusters]
    assert bool((counts % 1 == 0).all()) and bool((counts >= 0).all())
    assert bool((counts.sum(1) == 4).all())  # as many draws as there are clusters
    # with replacement: a cluster drawn twice or never happens; each is drawn once on average,
    # with the binomial(4, 1/4) variance 3/4
    assert counts.max() > 1 and bool((counts == 0).any())
    assert counts.mean(0).tolist() == pytest.approx([1.0] * 4, abs=0.06)
    assert counts.var(0).tolist() == pytest.approx([0.75] * 4, abs=0.08)


def test_resamples_by_name_and_template_seeded():
    ps = prompts()
    p = Params(bootstrap=100)
    weights = stats.resamples(ps, p, seed=3)
    assert set(weights) == set(stats.CLUSTERS) == {"name", "template"}
    for kind, n_clusters in (("name", 4), ("template", 3)):
        w = weights[kind]
        assert w.shape == (100, len(ps))
        for i, q in enumerate(ps):  # constant over each cluster of this kind
            same = [j for j, r in enumerate(ps) if getattr(r, kind) == getattr(q, kind)]
            assert bool((w[:, same] == w[:, [i]]).all()), (kind, i)
        per_cluster = len(ps) // n_clusters
        assert bool((w.sum(1) == n_clusters * per_cluster).all()), kind
    again = stats.resamples(ps, p, seed=3)
    assert all(torch.equal(weights[k], again[k]) for k in weights)  # seeded: the same draws
    other = stats.resamples(ps, p, seed=4)
    assert not torch.equal(weights["name"], other["name"])
    assert not torch.equal(weights["name"], weights["template"])  # drawn apart, not one copy


def test_boot_faithfulness_is_the_weighted_means_by_hand():
    b = 6
    m_n, m_0 = metrics(b)
    curve = (rand(3, b, seed=7) * 4 - 0.5).float()
    w = rand(5, b, seed=8) * 3  # fractional weights: a mean divided by the wrong total fails
    w[0, 2] = 0
    out = stats.boot_faithfulness(curve, m_n.float(), m_0.float(), w)
    assert out.shape == (5, 3) and out.dtype == torch.float64
    for r in range(5):
        assert out[r].tolist() == pytest.approx(naive_weighted_f(curve, m_n, m_0, w[r].tolist()), rel=1e-6)


@pytest.mark.parametrize("confidence", [0.9, 0.5])
def test_quantiles_are_numpys_percentile_interval(confidence):
    x = rand(37, 4, seed=9)
    out = stats.quantiles(x, Params(confidence=confidence))
    tail = (1 - confidence) / 2
    expected = np.quantile(x.numpy(), [tail, 1 - tail], axis=0)
    assert out.shape == (2, 4)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)
    assert bool((out[0] < out[1]).all())


# ---- a curve's summary, the random baseline ----------------------------------------------------


@pytest.mark.parametrize("cmd", [False, True])
def test_summarise_against_a_recomputation_by_hand(cmd):
    ps = prompts()
    b, p = len(ps), Params(bootstrap=100, confidence=0.8)
    m_n, m_0 = metrics(b)
    runner = SimpleNamespace(clean_metric=m_n.float(), corrupted_metric=m_0.float())
    curve = (m_0 + (m_n - m_0) * rand(len(FRACTIONS), b, seed=11) * 1.3).float()
    weights = stats.resamples(ps, p, seed=0)
    sizes = [1, 2, 6, 12, 20]
    out = stats.summarise(curve, runner, FRACTIONS, sizes, cmd, p, weights)
    f = naive_f(curve, m_n.float(), m_0.float())
    assert out["sizes"] == sizes
    assert out["faithfulness"] == pytest.approx(f, rel=1e-5)
    assert out["area"] == pytest.approx(naive_area(FRACTIONS, f, cmd), rel=1e-5)
    for kind, band in (("name", out), ("template", out["by_template"])):
        boot = [naive_weighted_f(curve, m_n.float(), m_0.float(), w.tolist()) for w in weights[kind]]
        low, high = np.quantile(np.array(boot), [0.1, 0.9], axis=0)
        assert band["low"] == pytest.approx(low.tolist(), rel=1e-5, abs=1e-6), kind
        assert band["high"] == pytest.approx(high.tolist(), rel=1e-5, abs=1e-6), kind
        areas = [naive_area(FRACTIONS, row, cmd) for row in boot]
        assert band["area_ci"] == pytest.approx(np.quantile(areas, [0.1, 0.9]).tolist(), rel=1e-5), kind
    assert out["by_template"]["low"] != out["low"]  # two kinds of cluster, two intervals


def test_mean_curve_is_the_mean_and_range_over_seeds():
    g = torch.Generator().manual_seed(12)
    curves = [
        {
            "sizes": [1, 2, 3],
            "faithfulness": torch.rand(3, generator=g).tolist(),
            "area": float(torch.rand(1, generator=g)),
        }
        for _ in range(4)
    ]
    out = stats.mean_curve(curves)
    columns = list(zip(*(c["faithfulness"] for c in curves)))
    areas = [c["area"] for c in curves]
    assert out["sizes"] == [1, 2, 3]
    assert out["faithfulness"] == pytest.approx([sum(c) / 4 for c in columns], rel=1e-5)
    assert out["low"] == pytest.approx([min(c) for c in columns], rel=1e-5)
    assert out["high"] == pytest.approx([max(c) for c in columns], rel=1e-5)
    assert out["area"] == pytest.approx(sum(areas) / 4, rel=1e-5)
    assert out["area_ci"] == pytest.approx([min(areas), max(areas)], rel=1e-5)
    assert out["by_template"] is None
    one = stats.mean_curve(curves[:1])  # one seed: itself, with a range of no width
    assert one["faithfulness"] == pytest.approx(curves[0]["faithfulness"], rel=1e-5)
    assert one["low"] == one["high"] == one["faithfulness"] and one["sizes"] == [1, 2, 3]


# ---- the smallest faithful circuit -------------------------------------------------------------


class Linear:
    """A fake evaluator whose circuit of n edges has f = n / n_edges exactly (its per-prompt
    metrics interpolate from the corrupted to the clean run), recording what it evaluates."""

    def __init__(self, n_edges, b=5):
        m_n, m_0 = metrics(b)
        self.n_edges, self.asked = n_edges, []
        self.runner = SimpleNamespace(clean_metric=m_n, corrupted_metric=m_0, evaluate=self.run)

    def keep(self, order, n):
        assert torch.equal(order, torch.arange(self.n_edges).flip(0))  # the order it was given
        return n

    def evaluate(self, order, n):  # the Evaluator's: the top n edges of the order, run
        return self.run(self.keep(order, n))

    def run(self, n):
        self.asked.append(n)
        r = self.runner
        return r.corrupted_metric + (r.clean_metric - r.corrupted_metric) * n / self.n_edges


@pytest.mark.parametrize("faithful", [0.1, 0.35, 0.5, 0.9, 1.0])
def test_smallest_faithful_is_the_first_size_reaching_the_bound(faithful):
    ev, sizes = Linear(200), [0, 10, 40, 100, 200]
    f = [n / 200 for n in sizes]
    out = stats.smallest_faithful(ev, torch.arange(200).flip(0), sizes, f, Params(faithful=faithful))
    hit = next(i for i, v in enumerate(f) if v >= faithful)
    assert out == {"edges": sizes[hit], "fraction": pytest.approx(sizes[hit] / 200), "faithfulness": f[hit]}
    assert ev.asked == []  # without refinement nothing is re-run


def test_smallest_faithful_at_and_beyond_the_bound():
    ev, sizes, f = Linear(100), [10, 50, 100], [0.1, 0.5, 1.0]
    order = torch.arange(100).flip(0)
    assert stats.smallest_faithful(ev, order, sizes, f, Params(faithful=0.5))["edges"] == 50  # at the bound
    assert stats.smallest_faithful(ev, order, sizes, f, Params(faithful=0.5000001))["edges"] == 100
    assert stats.smallest_faithful(ev, order, sizes, [0.1, 0.5, 0.9], Params(faithful=0.95)) is None


@pytest.mark.parametrize(("faithful", "refine"), [(0.3, 5), (0.42, 8), (0.05, 4), (0.5, 3), (0.004, 4), (0.02, 6)])
def test_refined_smallest_faithful_searches_a_log_grid_between_two_sizes(faithful, refine):
    n_edges, sizes = 200, [8, 40, 100, 200]
    ev, f = Linear(n_edges), [n / n_edges for n in sizes]
    out = stats.smallest_faithful(ev, torch.arange(n_edges).flip(0), sizes, f, Params(faithful=faithful), refine)
    hit = next(i for i, v in enumerate(f) if v >= faithful)
    low = sizes[hit - 1] if hit else 0
    grid = sorted({round(low + (sizes[hit] - low) * 10**t) for t in np.linspace(-1, 0, refine)} - {low})
    assert low < grid[0] and grid[-1] == sizes[hit]
    best = next(n for n in grid if n / n_edges >= faithful)
    assert out["edges"] == best and out["fraction"] == pytest.approx(best / n_edges)
    assert out["faithfulness"] == pytest.approx(best / n_edges, rel=1e-5)
    assert ev.asked == [n for n in grid if n <= best]  # smallest first, stopping at the first hit


def test_refined_smallest_faithful_at_the_bound_exactly():
    """Per-prompt metrics of few binary digits and 256 edges: f = n / 256 exactly, so a bound
    equal to a grid size's f is reached at that size, not the next."""
    n_edges, sizes = 256, [16, 128, 256]
    ev = Linear(n_edges)
    ev.runner.clean_metric = torch.tensor([4.0, 6.0, 5.0, 5.0], dtype=torch.float64)
    ev.runner.corrupted_metric = torch.tensor([1.0, 0.0, 0.5, 0.5], dtype=torch.float64)
    grid = sorted({round(16 + 112 * 10**t) for t in np.linspace(-1, 0, 5)} - {16})
    for n in grid[:-1]:
        out = stats.smallest_faithful(
            ev, torch.arange(n_edges).flip(0), sizes, [s / n_edges for s in sizes], Params(faithful=n / n_edges), 5
        )
        assert out["edges"] == n and out["faithfulness"] == pytest.approx(n / n_edges, rel=1e-5)


# ---- the held-out split and the paired difference ----------------------------------------------


def test_name_split_halves_each_groups_names():
    names = [f"m{i}" for i in range(5)] + [f"w{i}" for i in range(4)]
    ps = prompts(names, ("t0", "t1"), groups={n: n[0] for n in names})
    scoring, testing = stats.name_split(ps, seed=0)
    assert scoring == sorted(scoring) and testing == sorted(testing)
    assert sorted(scoring + testing) == list(range(len(ps)))
    picked = {ps[i].name for i in scoring}
    assert not picked & {ps[i].name for i in testing}
    assert len(picked & {n for n in names if n[0] == "m"}) == 5 // 2
    assert len(picked & {n for n in names if n[0] == "w"}) == 4 // 2
    splits = {tuple(stats.name_split(ps, seed)[0]) for seed in range(8)}
    assert len(splits) > 1 and stats.name_split(ps, 0) == (scoring, testing)  # seeded


def test_name_split_with_two_names_per_group_takes_one_of_each():
    names = ["a0", "a1", "b0", "b1", "c0", "c1"]
    ps = prompts(names, ("t0",), groups={n: n[0] for n in names})
    for seed in range(6):
        scoring, _ = stats.name_split(ps, seed)
        assert sorted(ps[i].name[0] for i in scoring) == ["a", "b", "c"], seed


def test_name_split_with_one_name_per_group_halves_all_names():
    names = [f"n{i}" for i in range(6)]
    ps = prompts(names, ("t0",), groups={n: n for n in names})
    scoring, testing = stats.name_split(ps, seed=1)
    assert len(scoring) == 3 and sorted(scoring + testing) == list(range(6))
    assert not {ps[i].name for i in scoring} & {ps[i].name for i in testing}


@pytest.mark.parametrize("shift", [-2.0, 0.0, 2.0, "same"])
def test_paired_difference_against_a_recomputation_by_hand(shift):
    ps = prompts()
    b, p = len(ps), Params(bootstrap=100, confidence=0.9)
    m_n, m_0 = metrics(b)
    runner = SimpleNamespace(clean_metric=m_n, corrupted_metric=m_0)
    base = m_0 + (m_n - m_0) * rand(len(FRACTIONS), b, seed=13)
    other = base if shift == "same" else base + shift * (m_n - m_0) / len(FRACTIONS) + rand(len(FRACTIONS), b, seed=14)
    weights = stats.resamples(ps, p, seed=0)
    out = stats.paired_difference(other, base, runner, FRACTIONS, p, weights)

    def cpr(curve, w):
        return naive_area(FRACTIONS, naive_weighted_f(curve, m_n, m_0, w), False)

    ones = [1.0] * b
    assert out["estimate"] == pytest.approx(cpr(other, ones) - cpr(base, ones), abs=1e-6)
    for kind, w in weights.items():
        diffs = [cpr(other, row.tolist()) - cpr(base, row.tolist()) for row in w]
        low, high = np.quantile(diffs, [0.05, 0.95])
        band = out[f"by_{kind}"]
        assert band["low"] == pytest.approx(low, abs=1e-6) and band["high"] == pytest.approx(high, abs=1e-6)
        assert band["excludes_zero"] == bool(low > 1e-9 or high < -1e-9), (kind, low, high)
    if shift == "same":
        assert out["estimate"] == 0 and not out["by_name"]["excludes_zero"]
    elif shift:
        assert out["by_name"]["excludes_zero"] and out["by_template"]["excludes_zero"]
