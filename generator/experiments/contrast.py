"""Contrast circuits: what makes this "." not a sentence end.

Each family of the contrast task (tasks/data/contrast.yaml: e-mail, domain, file extension,
abbreviation, capital anyway, decimal) is a set of minimal pairs ending in the same "." whose
members differ only in earlier words. The circuit machinery of generator.experiments.circuit
runs on each family with

* clean = the **exception** member ("I wrote it to john@gmail.") and corrupted = the
  **sentence-end** member ("I wrote it to john at noon."): a circuit is the set of edges that,
  kept at the exception's values while every other edge carries the sentence end's, makes the
  model treat the "." as the exception does, so it is what carries "this '.' does not end a
  sentence" (or, for capital_anyway, "a title, not a sentence end");
* metric = the capital log-odds of the next token over the whole vocabulary (the exceptions
  experiment's measure; the runner's second readout, generator.engine.ops.vocabulary_log_odds),
  so every family is measured the same way whatever its continuation. Faithfulness
  f = (m(C) − m(∅)) / (m(N) − m(∅)) is the same ratio as on the Circuit page.

Pairs differ in length from pair to pair; generator.engine.pooled left-pads them into one batch
(no position reads the padding), positions counted from the end (the final "." is always the
last). Per family: the
EAP-IG ranking (with EAP, attribution patching and the exact node ranking where the params ask
for them: the circuit page compares the methods, this one uses EAP-IG's) verified exactly at MIB's
sizes, CPR / CMD with pair-bootstrap intervals (each pair is its own cluster), random orders
(on the plain graph; on the position-aware one only if `position_random_seeds` asks), the
smallest faithful circuit, on the plain and the position-aware graph. Then the transfer
matrix (each family's circuit at one fixed size, verified exactly on every other family and on
the pronoun task, measured the same way), the edges all families share and those only one has,
and the heads that move the deciding context to the final position: heads whose output at the
final position is in the family's position-aware circuit, where their key and value inputs are
kept, and how much they attend from the final "." to the differing words.

Each family's circuit reads the case its exception member favours: log P(lowercase) −
log P(capital) where the sentence-end member is the more capital (as English has it), so that
the clean run scores higher, as MIB's signed ranking (CPR) assumes; faithfulness does not depend
on the sign. A family whose two members differ by less than `min_gap` in mean capital
log-odds, or whose difference has an interval that includes zero, has no contrast to explain:
it is measured and reported, without a circuit.
"""

from __future__ import annotations

import time

import torch

from generator.engine.graph import CircuitRunner
from generator.engine.pooled import PooledRunner
from generator.engine.threads import side_by_side
from generator.experiments import Result
from generator.experiments.circuit import (
    boot_faithfulness,
    describe,
    faithfulness,
    quantiles,
    resamples,
    run_graph,
    smallest_faithful,
    unsupported,  # noqa: F401  (the pipeline skips this experiment where the circuit engine cannot run)
)
from generator.experiments.exceptions import capital_log_odds, case_masks
from generator.experiments.params import Circuit
from generator.experiments.params import Contrast as Params
from generator.metrics import num
from generator.models import final_logits_only
from generator.tasks import UNUSABLE, Unbuildable

TASK = "contrast"


def circuit_params(params: Params) -> Circuit:
    """The circuit machinery's parameters from this experiment's (what run_graph reads)."""
    shared = ("ig_steps", "sizes", "faithful", "node_ranking", "random_seeds", "bootstrap", "confidence", "seed")
    return Circuit(**{k: getattr(params, k) for k in shared}, position_aware=params.position_aware, held_out=False)


def by_length(batch, idx: list[int]) -> list[list[int]]:
    """The pairs `idx` grouped by token length (each group runs as one batch)."""
    groups: dict[int, list[int]] = {}
    for i in idx:
        groups.setdefault(int(batch.clean_tokens[i].shape[-1]), []).append(i)
    return list(groups.values())


@torch.no_grad()
def measure(model, batch, masks) -> list[dict]:
    """Per pair, from plain forwards of the model: the capital log-odds after each member's "."
    and the answer pair's logit difference where both answers are single tokens."""
    upper, lower = masks
    final = {}
    for group in by_length(batch, list(range(len(batch.spec.prompts)))):
        for member, tokens in (("exception", batch.clean_tokens), ("end", batch.corrupted_tokens)):
            logits = model(torch.cat([tokens[i] for i in group]), **final_logits_only(model))[:, -1].float()
            for k, i in enumerate(group):
                final[(i, member)] = logits[k]
    rows = []
    for i, p in enumerate(batch.spec.prompts):
        logits = torch.stack([final[(i, "exception")], final[(i, "end")]])
        odds = capital_log_odds(logits, upper.to(logits.device), lower.to(logits.device))
        pair = batch.answer_tokens[i]
        single = bool((pair != UNUSABLE).all())
        diff = (logits[:, pair[0]] - logits[:, pair[1]]) if single else None
        rows.append(
            {
                "family": p.group,
                "pair": p.name,
                "exception": p.text,
                "end": p.corrupted,
                "n_tokens": int(batch.clean_tokens[i].shape[-1]),
                "differing": batch.differing[i],
                "log_odds_exception": num(odds[0]),
                "log_odds_end": num(odds[1]),
                "logit_diff_exception": num(diff[0]) if single else None,
                "logit_diff_end": num(diff[1]) if single else None,
            }
        )
    return rows


def family_summary(rows: list[dict], params: Params) -> dict:
    """A family's contrast: mean log-odds of each member, their gap (end − exception) with a
    pair-bootstrap interval, and the share of pairs where the end member is the more capital."""
    exc = torch.tensor([r["log_odds_exception"] for r in rows], dtype=torch.double)
    end = torch.tensor([r["log_odds_end"] for r in rows], dtype=torch.double)
    gap = mean_interval(end - exc, params)
    pairs = [r for r in rows if r["logit_diff_exception"] is not None]
    return {
        "n_pairs": len(rows),
        "mean_exception": num(exc.mean()),
        "mean_end": num(end.mean()),
        "gap": gap["mean"],
        "gap_ci": [gap["low"], gap["high"]],
        "end_higher": num((end > exc).double().mean()),
        "n_single_token": len(pairs),
        "logit_diff_exception": num(sum(r["logit_diff_exception"] for r in pairs) / len(pairs)) if pairs else None,
        "logit_diff_end": num(sum(r["logit_diff_end"] for r in pairs) / len(pairs)) if pairs else None,
    }


def family_circuit(model, contrast, idx: list[int], row: dict, masks, params: Params) -> tuple:
    """One family's runner (its pairs pooled, reading the case its exception member favours),
    circuits and movers: (circuits, runner, its prompts in the runner's order, timings)."""
    start, family = time.perf_counter(), row["family"]
    # read the case the exception member favours, so that the clean run scores higher, as
    # MIB's signed ranking (CPR) assumes
    upper, lower = masks
    runner = PooledRunner(
        model,
        [contrast.clean_tokens[i] for i in idx],
        [contrast.corrupted_tokens[i] for i in idx],
        None,
        case_masks=(lower, upper) if row["readout"] == "lowercase" else (upper, lower),
    )
    prompts = [contrast.spec.prompts[idx[j]] for j in runner.order]
    timings: dict[str, float] = {}
    c = graph_circuits(runner, prompts, params, timings, family)
    if params.position_aware:
        c["movers"] = movers(runner, contrast, idx, c["by_position"]["circuit"], params)
    timings[family] = round(time.perf_counter() - start, 3)
    return c, runner, prompts, timings


def graph_circuits(runner: PooledRunner, prompts, params: Params, timings: dict, family: str) -> dict:
    """The circuit machinery on one family: both graphs' method tables, the plain graph's
    circuit at its smallest faithful size, and the position-aware graph's drawn circuit."""
    cp = circuit_params(params)
    table, state, seconds = run_graph(runner, cp, position_aware=False, prompts=prompts, only=params.methods)
    timings.update({f"{family}_{k}": v for k, v in seconds.items()})
    evaluator, order = state["evaluator"], state["orders"][("eap_ig", "cmd")]
    faithful = smallest_faithful(
        evaluator, order, state["sizes"], table["eap_ig"]["cmd"]["faithfulness"], cp, refine=params.refine
    )
    out = {
        "methods": strip(table),
        "smallest_faithful": faithful,
        "n_edges": evaluator.n_edges,
        "scores": table["eap_ig"]["scores"],
        "order": order,
        "evaluator": evaluator,
    }
    if params.position_aware:
        ptable, pstate, seconds = run_graph(
            runner, cp, True, prompts, only=params.methods, random_seeds=params.position_random_seeds
        )
        timings.update({f"{family}_{k}_by_position": v for k, v in seconds.items()})
        pevaluator, porder = pstate["evaluator"], pstate["orders"][("eap_ig", "cmd")]
        pfaithful = smallest_faithful(
            pevaluator, porder, pstate["sizes"], ptable["eap_ig"]["cmd"]["faithfulness"], cp, refine=params.refine
        )
        shown = min(params.graph_edges, pevaluator.n_edges)
        n = pfaithful["edges"] if pfaithful and pfaithful["edges"] <= shown else shown
        # no per-edge exact effects (the page reads the circuit's edges and scores, not each
        # edge alone): each would be a patched run of its own
        drawn = describe(runner.graph, pevaluator, porder, n, ptable["eap_ig"]["scores"], torch.zeros(0), True)
        out["by_position"] = {
            "methods": strip(ptable),
            "smallest_faithful": pfaithful,
            "n_edges": pevaluator.n_edges,
            "circuit": drawn,
        }
    return out


def strip(table: dict) -> dict:
    return {k: {kk: vv for kk, vv in v.items() if kk != "scores"} for k, v in table.items()}


def transfer_cell(runner, m_c: torch.Tensor, weights: torch.Tensor, params: Params) -> dict:
    """One circuit verified exactly on another task (m_c: its per-prompt metric there): f with
    a bootstrap interval over the task's prompts."""
    m_c = m_c[None]
    f = float(faithfulness(m_c, runner.clean_metric, runner.corrupted_metric)[0])
    band = quantiles(boot_faithfulness(m_c, runner.clean_metric, runner.corrupted_metric, weights)[:, 0], params)
    return {"faithfulness": num(f), "low": num(band[0]), "high": num(band[1])}


def edge_sets(circuits: dict[str, dict], graph, n: int) -> list[dict]:
    """Every edge in some family's top-n circuit (plain graph, EAP-IG by |score|), with the
    families whose circuit holds it, the edges most families share first."""
    members: dict[int, list[str]] = {}
    for family, c in circuits.items():
        for i in c["order"][:n].tolist():
            members.setdefault(int(c["evaluator"].edges[i]), []).append(family)
    n_readers = len(graph.readers)
    rows = [
        {"writer": graph.writer_id(flat // n_readers), "reader": graph.reader_id(flat % n_readers), "families": fams}
        for flat, fams in members.items()
    ]
    return sorted(rows, key=lambda r: (-len(r["families"]), r["families"], str(r["writer"]), str(r["reader"])))


@torch.no_grad()
def movers(runner: PooledRunner, batch, idx: list[int], circuit: dict, params: Params) -> list[dict]:
    """The heads that move context to the final position, from the position-aware circuit:
    each head with an outgoing edge at the final position, ranked by those edges' total
    |EAP-IG score|; where the circuit keeps its key and value inputs at earlier positions
    (offsets from the final token), the share of pairs whose differing words sit at each such
    offset, and its attention from the final position to the differing words in each member
    (mean over pairs, with a pair-bootstrap interval)."""
    final = runner.n_pos - 1
    heads: dict[tuple, dict] = {}
    for e in circuit["edges"]:
        w = e["writer"]
        if w["kind"] == "head" and e["position"] == final:
            h = heads.setdefault((w["layer"], w["head"]), {"weight": 0.0, "reads": {}})
            h["weight"] += abs(e["score"])
    for e in circuit["edges"]:
        r = e["reader"]
        key = (r.get("layer"), r.get("head"))
        if r["kind"] in ("k", "v") and key in heads and e["position"] < final:
            offset = e["position"] - final
            heads[key]["reads"][offset] = heads[key]["reads"].get(offset, 0.0) + abs(e["score"])
    ranked = sorted(heads.items(), key=lambda kv: -kv[1]["weight"])[: params.movers]
    shares = attention_to_differing(runner, batch, idx) if ranked else None
    out = []
    for (layer, head), h in ranked:
        reads = sorted(h["reads"].items(), key=lambda kv: -kv[1])
        out.append(
            {
                "layer": layer,
                "head": head,
                "score": num(h["weight"]),
                "reads": [
                    {"offset": o, "score": num(s), "deciding": num(deciding_share(batch, idx, o))} for o, s in reads
                ],
                "attention": {member: mean_interval(x[:, layer, head], params) for member, x in shares.items()},
            }
        )
    return out


def deciding_share(batch, idx: list[int], offset: int) -> float:
    """The share of pairs whose differing words include the token `offset` before the end."""
    hits = [int(batch.clean_tokens[i].shape[-1]) - 1 + offset in batch.differing[i] for i in idx]
    return sum(hits) / len(hits)


@torch.no_grad()
def attention_to_differing(runner: PooledRunner, batch, idx: list[int]) -> dict[str, torch.Tensor]:
    """Every head's attention from the final position to each pair's differing words, in the
    exception and in the sentence-end member: {member: [pair, layer, head]}, pairs in idx's
    order, from the runner's recorded runs (CircuitRunner.final_attention; a padded prompt's
    positions are shifted by its padding)."""
    w = runner.runners[0].w
    out = {m: torch.zeros(len(idx), w.n_layers, w.n_heads) for m in ("exception", "end")}
    done = 0
    for r in runner.runners:
        pads = [0] * len(r.clean_metric) if r.pad is None else r.pad.tolist()
        for member, run in (("exception", "clean"), ("end", "corrupted")):
            pattern = r.final_attention(run).cpu()  # [pair, layer, head, position]
            for b, pad in enumerate(pads):
                j = runner.order[done + b]  # the pair's place in idx
                out[member][j] = pattern[b][..., [d + pad for d in batch.differing[idx[j]]]].sum(-1)
        done += len(pads)
    return out


def mean_interval(values: torch.Tensor, params: Params) -> dict:
    """The mean of per-pair values with a percentile interval from resampling the pairs."""
    x = values.double()
    g = torch.Generator().manual_seed(params.seed)
    band = quantiles(x[torch.randint(len(x), (params.bootstrap, len(x)), generator=g)].mean(-1), params)
    return {"mean": num(x.mean()), "low": num(band[0]), "high": num(band[1])}


def run(model, batch, params: Params, inputs: dict) -> Result:
    contrast = inputs["tasks"][TASK]
    metrics = {
        "unbuildable": contrast.reason if isinstance(contrast, Unbuildable) else None,
        "min_gap": params.min_gap,
        "fractions": list(params.sizes),
        "methods": list(params.methods),
        "ig_steps": params.ig_steps,
        "bootstrap": params.bootstrap,
        "confidence": params.confidence,
        "random_seeds": params.random_seeds,
        "position_random_seeds": params.position_random_seeds,
        "faithful": params.faithful,
        "transfer_size": params.transfer_size,
        "n_pairs": 0,
        "families": [],
        "per_pair": [],
        "transfer": None,
        "edge_sets": None,
    }
    if isinstance(contrast, Unbuildable):
        return Result(metrics)
    masks = case_masks(model)
    rows = measure(model, contrast, masks)
    cp = circuit_params(params)
    families, todo = [], []
    for family in contrast.spec.groups:
        idx = [i for i, p in enumerate(contrast.spec.prompts) if p.group == family]
        mine = [rows[i] for i in idx]
        summary = family_summary(mine, params)
        info = contrast.spec.info["families"][family]
        example = {"exception": mine[0]["exception"], "end": mine[0]["end"]}
        row = {"family": family, **info, **summary, "example": example, "circuit": None, "movers": None}
        row["readout"] = "lowercase" if summary["gap"] > 0 else "capital"
        low, high = summary["gap_ci"]
        row["has_contrast"] = abs(summary["gap"]) >= params.min_gap and (low > 0 or high < 0)
        if row["has_contrast"]:
            todo.append((row, idx))
        families.append(row)
    # the families' circuits side by side (generator.engine.threads), the largest first: the
    # circuit runner's work only (TransformerLens runs, whose hooks are the model's shared
    # state, stay on this thread)
    largest = sorted(todo, key=lambda t: -sum(int(contrast.clean_tokens[i].shape[-1]) for i in t[1]))
    found = side_by_side(
        lambda t: family_circuit(model, contrast, t[1], t[0], masks, params), largest, model.cfg.device
    )
    done = {t[0]["family"]: f for t, f in zip(largest, found)}
    timings: dict[str, float] = {}
    circuits, runners = {}, {}
    for row, _ in todo:  # in the families' order
        family = row["family"]
        c, runner, prompts, seconds = done[family]
        timings.update(seconds)
        circuits[family], runners[family] = c, (runner, prompts)
        row["circuit"] = {k: c[k] for k in ("methods", "smallest_faithful", "n_edges", "by_position") if k in c}
        row["movers"] = c.get("movers")
    metrics.update(n_pairs=len(rows), families=families, per_pair=rows)
    if circuits:
        metrics.update(transfer(model, batch, circuits, runners, masks, params, cp))
    return Result(metrics, timings=timings)


def transfer(model, batch, circuits: dict, runners: dict, masks, params: Params, cp: Circuit) -> dict:
    """The transfer matrix and the shared / specific edges, every family's circuit at the same
    size: int(transfer_size × edges) of the plain graph, EAP-IG ranked by |score|."""
    graph = next(iter(runners.values()))[0].graph
    n_edges = next(iter(circuits.values()))["n_edges"]
    n = max(1, int(params.transfer_size * n_edges))
    pronoun = CircuitRunner(model, batch.clean_tokens, batch.corrupted_tokens, None, case_masks=masks)
    targets = {family: runner for family, runner in runners.items()}
    targets["pronoun"] = (pronoun, batch.spec.prompts)
    weights = {t: resamples(prompts, cp, params.seed)["name"] for t, (_, prompts) in targets.items()}
    keeps = {family: c["evaluator"].keep(c["order"], n) for family, c in circuits.items()}
    cells = [(family, target) for family in circuits for target in targets]

    def metric(cell):
        family, target = cell
        if target == family:  # its own circuit: a size its curves have likely run already
            return circuits[family]["evaluator"].evaluate(circuits[family]["order"], n)
        return targets[target][0].evaluate(keeps[family])

    values = side_by_side(metric, cells, model.cfg.device)
    found = {cell: transfer_cell(targets[cell[1]][0], m, weights[cell[1]], cp) for cell, m in zip(cells, values)}
    matrix = [{"circuit": family, "on": {t: found[(family, t)] for t in targets}} for family in circuits]
    sets = edge_sets(circuits, graph, n)
    return {
        "transfer": {
            "edges": n,
            "fraction": num(n / n_edges),
            "targets": list(targets),
            "pronoun_clean": num(pronoun.clean_metric.mean()),
            "pronoun_corrupted": num(pronoun.corrupted_metric.mean()),
            "rows": matrix,
        },
        "edge_sets": {
            "families": list(circuits),
            "edges": sets,
            "shared_by_all": sum(len(r["families"]) == len(circuits) for r in sets),
            "specific": {f: sum(r["families"] == [f] for r in sets) for f in circuits},
        },
    }
