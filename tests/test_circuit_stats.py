"""The circuit experiment's printed numbers, checked as properties that hold whatever the
implementation: bootstrap intervals have width and contain their estimate; the held-out split's
two halves are disjoint and cover the prompts; the random baseline is not EAP-IG's ordering; an
edge ranking is an order (a permutation of it changes the curve)."""

from __future__ import annotations

import pytest
import torch

from generator.experiments import circuit, params

TOL = 1e-6


@pytest.fixture(scope="module")
def spied(organism, few_prompts):
    """circuit.run on 4 prompts, recording the clean tokens of every CircuitRunner it builds."""
    built = []

    class Spy(circuit.CircuitRunner):
        def __init__(self, model, clean, *args, **kwargs):
            built.append(clean.clone())
            super().__init__(model, clean, *args, **kwargs)

    p = params.Circuit(bootstrap=100, graph_edges=5, export_edges=5, position_aware=False, refine=1, random_seeds=2)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(circuit, "CircuitRunner", Spy)
        out = circuit.run(organism, few_prompts, p, {})
    return out.metrics, built, few_prompts


def curves(m):
    for name, row in m["methods"].items():
        for kind in ("cpr", "cmd"):
            yield f"{name}.{kind}", row[kind]
    for name in ("held_out", "in_sample"):
        yield name, m["held_out"][name]


def test_every_interval_contains_its_estimate(spied):
    m = spied[0]
    for where, c in curves(m):
        for f, lo, hi in zip(c["faithfulness"], c["low"], c["high"]):
            assert lo - TOL <= f <= hi + TOL, (where, f, lo, hi)
        lo, hi = c["area_ci"]
        assert lo - TOL <= c["area"] <= hi + TOL, (where, c["area"], lo, hi)


def test_intervals_have_width(spied):
    """A bootstrap that resamples without replacement (each resample a permutation of the
    prompts) gives every interval zero width: over prompts that disagree, it must not."""
    m = spied[0]
    for where, c in curves(m):
        widths = [hi - lo for lo, hi in zip(c["low"], c["high"])]
        # at 100 % of the edges f is 1 for every resample; below it the prompts differ
        assert max(widths) > 1e-3, (where, widths)
        assert c["area_ci"][1] - c["area_ci"][0] > 1e-4, (where, c["area_ci"])


def test_held_out_halves_are_disjoint_and_cover_the_prompts(spied):
    m, built, batch = spied
    rows = {tuple(r.tolist()) for r in batch.clean_tokens}
    assert len(rows) == len(batch.clean_tokens)  # the prompts are distinct, so rows identify them
    halves = [[tuple(r.tolist()) for r in t] for t in built if len(t) < len(batch.clean_tokens)]
    assert len(halves) >= 2, "held_out builds a runner for each half"
    scoring, testing = halves[0], halves[1]
    assert len(set(scoring)) == len(scoring) and len(set(testing)) == len(testing)
    assert not set(scoring) & set(testing), "a prompt is in both halves"
    assert set(scoring) | set(testing) == rows, "a prompt is in neither half"
    assert [m["held_out"]["n_scoring"], m["held_out"]["n_testing"]] == [len(scoring), len(testing)]


def test_random_baseline_is_not_the_methods_ordering(spied):
    m = spied[0]
    random = m["methods"]["random"]
    for kind in ("cpr", "cmd"):
        for method in ("eap", "eap_ig"):
            assert random[kind]["faithfulness"] != m["methods"][method][kind]["faithfulness"], (method, kind)
    seeds = random["seeds"]
    assert len(seeds) == 2 and seeds[0]["cpr"]["faithfulness"] != seeds[1]["cpr"]["faithfulness"]


def test_clean_and_corrupted_differ(spied):
    m = spied[0]
    assert abs(m["clean_logit_diff"] - m["corrupted_logit_diff"]) > 0.1


def test_faithfulness_and_area_against_naive_sums():
    """faithfulness = (mean circuit − mean empty) / (mean full − mean empty), per size; the area
    is the trapezoid rule over the fractions, of f (CPR) or |1 − f| (CMD): order matters."""
    m_c = torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 9.0]])
    m_n, m_0 = torch.tensor([6.0, 6.0, 6.0]), torch.tensor([0.0, 1.0, 2.0])
    f = circuit.faithfulness(m_c, m_n, m_0)
    assert f.tolist() == pytest.approx([(2 - 1) / (6 - 1), (6 - 1) / (6 - 1)])
    fractions = [0.1, 0.3, 1.0]
    y = torch.tensor([0.2, 1.5, 0.9], dtype=torch.float64)
    naive_cpr = (0.3 - 0.1) * (0.2 + 1.5) / 2 + (1.0 - 0.3) * (1.5 + 0.9) / 2
    naive_cmd = (0.3 - 0.1) * (0.8 + 0.5) / 2 + (1.0 - 0.3) * (0.5 + 0.1) / 2
    assert float(circuit.area(fractions, y, cmd=False)) == pytest.approx(naive_cpr)
    assert float(circuit.area(fractions, y, cmd=True)) == pytest.approx(naive_cmd)
    swapped = y[[1, 0, 2]]  # the same values in another order: another area
    assert float(circuit.area(fractions, swapped, cmd=False)) != pytest.approx(naive_cpr)


def test_a_ranking_is_an_order():
    scores = torch.tensor([0.5, -3.0, 2.0, -0.1])
    assert circuit.ranking(scores, absolute=False).tolist() == [2, 0, 3, 1]
    assert circuit.ranking(scores, absolute=True).tolist() == [1, 2, 0, 3]
    tied = torch.tensor([1.0, 1.0, 0.0, 1.0])
    assert circuit.ranking(tied, absolute=False, tie=torch.tensor([0.0, 5.0, 9.0, 2.0])).tolist() == [1, 3, 0, 2]
