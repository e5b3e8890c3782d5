"""The circuit experiment's statistics, apart from any model: MIB's circuit sizes, edge
rankings, faithfulness and its areas (CPR, CMD), the cluster bootstrap over prompts and its
percentile intervals, the smallest faithful circuit, the random baseline's summary, the
held-out split by name and the paired held-out difference. generator.experiments.circuit runs
the model and calls these; a `runner` here is anything with per-prompt `clean_metric` and
`corrupted_metric` [B] (and `evaluate(keep)` for smallest_faithful's refinement), an
`evaluator` anything with `runner`, `keep(order, n)` and `n_edges` (circuit.Evaluator)."""

from __future__ import annotations

import torch

from generator.experiments.params import Circuit as Params
from generator.metrics import num, to_list


def sizes_for(fractions: list[float], n_edges: int) -> list[int]:
    """Edge counts for fractions of the graph as MIB counts them: int(fraction × edges), a Python
    float product truncated, so the smallest fractions of a small graph keep no edge at all (an
    empty circuit: the corrupted run, f = 0). hannamw/MIB-circuit-track,
    MIB_circuit_track/evaluation.py, evaluate_area_under_curve: `curr_num_items = int(pct *
    n_scored_items)`."""
    return [min(n_edges, int(f * n_edges)) for f in fractions]


def ranking(scores: torch.Tensor, absolute: bool, tie: torch.Tensor | None = None) -> torch.Tensor:
    """Edge order, best first: by score (or |score|), ties broken by `tie` (larger first)."""
    key = scores.abs() if absolute else scores
    order = torch.arange(len(key))
    if tie is not None:
        order = order[tie[order].argsort(descending=True, stable=True)]
    return order[key[order].argsort(descending=True, stable=True)]


def faithfulness(m_c: torch.Tensor, m_n: torch.Tensor, m_0: torch.Tensor) -> torch.Tensor:
    """f per circuit from per-prompt metrics ([..., S, B], [..., B], [..., B]): means first."""
    full, empty = m_n.mean(-1, keepdim=True), m_0.mean(-1, keepdim=True)
    return (m_c.mean(-1) - empty) / (full - empty)


def area(fractions: list[float], f: torch.Tensor, cmd: bool) -> torch.Tensor:
    """MIB's area: trapezoid rule over the fractions (linear axis) of f (CPR) or |1 − f| (CMD)."""
    y = (1 - f).abs() if cmd else f
    x = torch.tensor(fractions, dtype=y.dtype)
    return ((x[1:] - x[:-1]) * (y[..., 1:] + y[..., :-1]) / 2).sum(-1)


def cluster_weights(labels: list, n: int, generator: torch.Generator) -> torch.Tensor:
    """[n, B] bootstrap weights that resample whole clusters: each resample draws as many
    clusters as there are, with replacement, and a prompt counts as often as its cluster
    (its name, or its template) was drawn. The 100 prompts are 20 names x 5 templates, not 100
    independent draws; resampling clusters keeps what a prompt shares with its cluster."""
    ids = {label: i for i, label in enumerate(dict.fromkeys(labels))}
    index = torch.tensor([ids[label] for label in labels])
    draws = torch.randint(len(ids), (n, len(ids)), generator=generator)
    counts = torch.zeros(n, len(ids), dtype=torch.double).scatter_add_(
        1, draws, torch.ones(n, len(ids), dtype=torch.double)
    )
    return counts[:, index]


CLUSTERS = ("name", "template")  # what the bootstrap resamples: the prompts' names, their templates


def resamples(prompts, params: Params, seed: int) -> dict[str, torch.Tensor]:
    """One set of cluster bootstrap weights per kind of cluster, [bootstrap, B] each, drawn
    once so every curve and every arm of a comparison is resampled the same way (paired)."""
    g = torch.Generator().manual_seed(seed)
    return {kind: cluster_weights([getattr(p, kind) for p in prompts], params.bootstrap, g) for kind in CLUSTERS}


def boot_faithfulness(curve: torch.Tensor, m_n: torch.Tensor, m_0: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    """f per resample and circuit, [R, S], from per-prompt metrics [S, B], [B], [B] and weights
    [R, B]: the weighted means of faithfulness's means."""
    total = w.sum(-1, keepdim=True)
    m_c, full, empty = (
        (w @ curve.double().T) / total,
        (w @ m_n.double()[:, None]) / total,
        (w @ m_0.double()[:, None]) / total,
    )
    return (m_c - empty) / (full - empty)


def quantiles(x: torch.Tensor, params: Params) -> torch.Tensor:
    """The percentile interval [2, ...] of resamples x [R, ...] at params.confidence."""
    tail = (1 - params.confidence) / 2
    return torch.quantile(x, torch.tensor([tail, 1 - tail], dtype=torch.double), dim=0)


def summarise(curve: torch.Tensor, runner, fractions, sizes, cmd: bool, params: Params, weights) -> dict:
    """f at each size and the area (CPR or CMD), with cluster-bootstrap intervals: by name
    (low, high, area_ci) and by template (by_template)."""
    m_n, m_0 = runner.clean_metric, runner.corrupted_metric
    f = faithfulness(curve, m_n, m_0)
    bands = {}
    for kind, w in weights.items():
        boot = boot_faithfulness(curve, m_n, m_0, w)  # [R, S]
        band = quantiles(boot, params)
        bands[kind] = {
            "low": to_list(band[0]),
            "high": to_list(band[1]),
            "area_ci": to_list(quantiles(area(fractions, boot, cmd), params)),
        }
    return {
        "sizes": sizes,
        "faithfulness": to_list(f),
        **bands["name"],
        "area": num(area(fractions, f.double(), cmd)),
        "by_template": bands["template"],
    }


def smallest_faithful(
    evaluator, order: torch.Tensor, sizes: list[int], f: list[float], params: Params, refine: int = 0
) -> dict | None:
    """The smallest circuit with f ≥ params.faithful: the first evaluated size that reaches it,
    or (refine > 0) the smallest of `refine` sizes on a log grid between it and the size before."""
    runner = evaluator.runner
    hit = next((i for i, v in enumerate(f) if v >= params.faithful), None)
    if hit is None:
        return None
    low = sizes[hit - 1] if hit else 0
    grid = sorted({round(low + (sizes[hit] - low) * t) for t in torch.logspace(-1, 0, refine).tolist()} - {low})
    for n in grid if refine else []:
        metric = evaluator.evaluate(order, n)[None]
        value = float(faithfulness(metric, runner.clean_metric, runner.corrupted_metric)[0])
        if value >= params.faithful:
            return {"edges": n, "fraction": num(n / evaluator.n_edges), "faithfulness": num(value)}
    return {"edges": sizes[hit], "fraction": num(sizes[hit] / evaluator.n_edges), "faithfulness": num(f[hit])}


def mean_curve(curves: list[dict]) -> dict:
    """The random baseline: the mean over seeds of f and of the area, with the seeds' range."""
    f = torch.tensor([c["faithfulness"] for c in curves])
    areas = torch.tensor([c["area"] for c in curves])
    return {
        "sizes": curves[0]["sizes"],
        "faithfulness": to_list(f.mean(0)),
        "low": to_list(f.min(0).values),
        "high": to_list(f.max(0).values),
        "area": num(areas.mean()),
        "area_ci": [num(areas.min()), num(areas.max())],
        "by_template": None,  # the range over orders, not a bootstrap
    }


def name_split(prompts, seed: int) -> tuple[list[int], list[int]]:
    """(scoring, testing) prompt indices: half of each group's names (seeded) score, the other
    names' prompts test, so the test prompts have names the scoring never saw. Where every
    group has a single name, half of all names."""
    g = torch.Generator().manual_seed(seed)
    by_group: dict[str, list[str]] = {}
    for p in prompts:
        names = by_group.setdefault(p.group, [])
        if p.name not in names:
            names.append(p.name)
    groups = list(by_group.values()) if any(len(n) > 1 for n in by_group.values()) else [sum(by_group.values(), [])]
    scoring = set()
    for names in groups:
        perm = torch.randperm(len(names), generator=g).tolist()
        scoring |= {names[i] for i in perm[: len(names) // 2]}
    picked = [i for i, p in enumerate(prompts) if p.name in scoring]
    return picked, [i for i, p in enumerate(prompts) if p.name not in scoring]


def paired_difference(a: torch.Tensor, b: torch.Tensor, runner, fractions, params: Params, weights) -> dict:
    """CPR(a) − CPR(b) on the same prompts, with its interval from the same resamples for both
    (paired), per kind of cluster, and whether that interval excludes 0."""
    m_n, m_0 = runner.clean_metric, runner.corrupted_metric
    estimate = area(fractions, faithfulness(a, m_n, m_0).double(), False) - area(
        fractions, faithfulness(b, m_n, m_0).double(), False
    )
    out = {"estimate": num(estimate)}
    for kind, w in weights.items():
        diff = area(fractions, boot_faithfulness(a, m_n, m_0, w), False) - area(
            fractions, boot_faithfulness(b, m_n, m_0, w), False
        )
        low, high = to_list(quantiles(diff, params))
        out[f"by_{kind}"] = {"low": low, "high": high, "excludes_zero": bool(low > 0 or high < 0)}
    return out
