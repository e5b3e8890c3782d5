"""The circuit: automatic discovery over every prompt, verified exactly the way MIB does it.

Edges of the residual-stream graph (generator.engine.graph: writers = token embedding, heads,
MLPs; readers = each head's q / k / v input, each MLP's input, the logits) are ranked by four
methods, each over all prompts of the task at once:

* EAP, as MIB computes it: (clean − corrupted writer output) · ∂(mean logit difference)/∂(reader
  input) at the clean run (hannamw/EAP-IG, src/eap/attribute.py get_scores_eap; tested);
* attribution patching: the same product with the gradient at the corrupted run (equal to
  TransformerLens's `attribution_patch` edge scores; tested);
* EAP-IG: the same with the gradient averaged over `ig_steps` inputs whose token embeddings
  are interpolated from corrupted to clean, starting at the corrupted run (Hanna et al. 2024,
  get_scores_eap_ig; TransformerLens has no EAP-IG);
* exact node ranking: each writer's exact effect, patching all of its outputs clean into the
  corrupted run; an edge ranks by its writer, ties by its reader's effect;
* random: a random order (several seeds), the baseline any method must beat.

A circuit of size n keeps the n top-ranked edges; it is verified by running the clean prompts
with every other edge fed the corrupted run's writer output, one batched forward per size.
Faithfulness f(C) = (m(C) − m(∅)) / (m(N) − m(∅)), m the mean logit difference, ∅ the empty
circuit (= the corrupted run) and N the whole model. MIB's sizes (0.1 % … 100 % of the edges),
and its areas by the trapezoid rule over those fractions on a linear axis, f(0) left out:
CPR = ∫ f with edges ranked by signed score (higher is better), CMD = ∫ |1 − f| with edges
ranked by |score| (lower is better). Intervals: percentile bootstrap over prompts. Also: the
smallest circuit reaching f ≥ `faithful`, a position-aware graph (one edge per position), a
held-out half of the prompts, and the pronoun circuit on the exceptions task's ordinary
sentence ends corrupted the same way.

The statistics (sizes, rankings, faithfulness, areas, the cluster bootstrap, the split) are
generator.circuit_stats's, apart from any model; this module runs the model.
"""

from __future__ import annotations

import hashlib
import time

import torch

from generator import ReportError
from generator.circuit_stats import (  # noqa: F401 (the statistics, importable from here too)
    CLUSTERS,
    area,
    boot_faithfulness,
    cluster_weights,
    faithfulness,
    mean_curve,
    name_split,
    paired_difference,
    quantiles,
    ranking,
    resamples,
    sizes_for,
    smallest_faithful,
    summarise,
)
from generator.engine.graph import CircuitRunner
from generator.engine.threads import side_by_side
from generator.experiments import Result
from generator.experiments.params import Circuit as Params
from generator.experiments.patching import make_engine
from generator.metrics import normalisation_scale, num, to_list
from generator.tasks import UNUSABLE, TaskBatch


class Evaluator:
    """Exact circuit runs on one runner: per-prompt metrics [B] of the top-n edges of an order."""

    def __init__(self, runner: CircuitRunner, position_aware: bool):
        self.runner = runner
        upstream = runner.graph.upstream()
        mask = upstream[..., None].expand(*upstream.shape, runner.n_pos) if position_aware else upstream
        self.shape = mask.shape
        self.edges = mask.flatten().nonzero()[:, 0]  # flat indices of the graph's edges
        self.n_edges = len(self.edges)
        self.runs: dict[bytes, torch.Tensor] = {}  # evaluate's, by the circuit's set of edges

    def edge_scores(self, scores: torch.Tensor) -> torch.Tensor:
        """Position-aware [W, R, n_pos] scores -> one score per edge of this graph."""
        flat = scores if len(self.shape) == 3 else scores.sum(-1)
        return flat.flatten()[self.edges]

    def keep(self, order: torch.Tensor, n: int) -> torch.Tensor:
        keep = torch.zeros(self.shape, dtype=torch.bool).flatten()
        keep[self.edges[order[:n]]] = True
        return keep.reshape(self.shape)

    def evaluate(self, order: torch.Tensor, n: int) -> torch.Tensor:
        """[B] per-prompt metrics of the top-n edges of `order`. A circuit is its set of edges,
        whatever the order: each set runs once (every ranking's and random order's full
        circuit, a refined size that the curve already has, rankings agreeing on their top n)."""
        return self.run_all([(order, n)])[0]

    def run_all(self, circuits: list[tuple[torch.Tensor, int]]) -> list[torch.Tensor]:
        """evaluate for each (order, n), the circuits not run yet side by side
        (generator.engine.threads)."""
        keys = [
            hashlib.blake2b(o[:n].sort().values.cpu().numpy().tobytes(), digest_size=16).digest() for o, n in circuits
        ]
        todo = {k: c for k, c in zip(keys, circuits) if k not in self.runs}
        if todo:
            found = side_by_side(lambda c: self.runner.evaluate(self.keep(*c)), list(todo.values()), self.runner.device)
            self.runs.update(zip(todo, found))
        return [self.runs[k] for k in keys]

    def curve(self, order: torch.Tensor, sizes: list[int]) -> torch.Tensor:
        """[len(sizes), B] per-prompt logit differences of each circuit."""
        return torch.stack(self.run_all([(order, n) for n in sizes]))


def node_effects(runner: CircuitRunner, position_aware: bool) -> torch.Tensor:
    """Each writer's exact effect (mean logit difference minus the corrupted run's, in logits):
    all of its outgoing edges (at one position, or all) patched clean into the corrupted run.
    [W], or [W, n_pos] (zero at the shared prefix, where nothing differs). Computed once."""
    computed = list(range(runner.start, runner.n_pos))
    if "node_effects" not in runner.memo:
        runner.memo["node_effects"] = _node_effects(runner, [None])[:, 0]
    if position_aware and "node_effects_by_position" not in runner.memo:
        # with one computed position, patching every position is patching that one
        runner.memo["node_effects_by_position"] = (
            _node_effects(runner, computed)
            if len(computed) > 1
            else torch.zeros(len(runner.graph.writers), runner.n_pos).index_copy(
                1, torch.tensor(computed), runner.memo["node_effects"][:, None]
            )
        )
    return runner.memo["node_effects_by_position" if position_aware else "node_effects"]


def engine_head_effects(model, batch, runner: CircuitRunner) -> None:
    """Each head's node effect from the patching engine's head-output sweep, kept for
    node_effects (all positions): the engine runs a layer's heads as one batch of variants where
    the runner runs each node alone (GPT-2 small's shape: 10 s against 20 s). Equal to the
    runner's to 1e-5 (tested); nothing is kept where the engine does not run."""
    engine = make_engine(model, batch)
    if engine is not None:
        heads = engine.sweep("head_out") - engine.corrupted_logit_diff.mean()
        writers = runner.graph.writers
        runner.memo["head_effects"] = {i: heads[w[1], w[2]] for i, w in enumerate(writers) if w[0] == "head"}


def _node_effects(runner: CircuitRunner, positions: list) -> torch.Tensor:
    upstream = runner.graph.upstream()
    base = runner.corrupted_metric.mean()
    out = torch.zeros(upstream.shape[0], runner.n_pos)
    known = runner.memo.get("head_effects", {}) if positions == [None] else {}
    for w, value in known.items():
        out[w, 0] = value
    nodes = [(w, p) for w in range(upstream.shape[0]) for p in positions if w not in known]

    def effect(node):
        w, p = node
        patched = torch.zeros(*upstream.shape, runner.n_pos, dtype=torch.bool)
        if p is None:
            patched[w] = upstream[w, :, None]
        else:
            patched[w, :, p] = upstream[w]
        return runner.patch_edges(patched).mean() - base

    for (w, p), value in zip(nodes, side_by_side(effect, nodes, runner.device)):  # the nodes side by side
        out[w, p or 0] = value
    return out


def node_scores(graph, effects: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per (writer, reader[, pos]) edge: the writer's exact effect, and (to break ties) the
    effect of the component the reader belongs to (the logits rank first)."""
    reader_effect = []
    for r in graph.readers:
        if r[0] == "logits":
            reader_effect.append(torch.full_like(effects[0], float("inf")))
        else:
            w = graph.writers.index(("head", r[1], r[2]) if r[0] in "qkv" else ("mlp", r[1]))
            reader_effect.append(effects[w].abs())
    reader_effect = torch.stack(reader_effect)  # [R] or [R, P]
    writer = effects[:, None].expand(len(graph.writers), *reader_effect.shape)
    reader = reader_effect[None].expand_as(writer)
    return writer, reader


@torch.no_grad()
def edge_effects(runner: CircuitRunner, evaluator: Evaluator, order: torch.Tensor, n: int) -> torch.Tensor:
    """The exact effect (logits) of patching each of the first n edges of `order` alone. An edge
    at the only position computed is that edge at every position: each is computed once."""
    base = runner.corrupted_metric.mean()
    shape, one_position = evaluator.shape, runner.n_pos - runner.start == 1
    keys, edges = [], {}  # each edge's memo key; memo key -> (writer, reader, position or None)
    for i in order[:n].tolist():
        flat = int(evaluator.edges[i])
        w, r, p = (
            (flat // (shape[1] * shape[2]), flat // shape[2] % shape[1], flat % shape[2])
            if len(shape) == 3
            else (flat // shape[1], flat % shape[1], None)
        )
        keys.append(("edge_effect", w, r, None if one_position else p))
        edges.setdefault(keys[-1], (w, r, p))

    def effect(edge):
        w, r, p = edge
        patched = torch.zeros(*shape[:2], runner.n_pos, dtype=torch.bool)
        patched[w, r, slice(None) if p is None else p] = True
        return runner.patch_edges(patched).mean() - base

    todo = [k for k in edges if k not in runner.memo]
    runner.memo.update(zip(todo, side_by_side(effect, [edges[k] for k in todo], runner.device)))  # side by side
    return torch.stack([runner.memo[k] for k in keys])


def methods(runner: CircuitRunner, evaluator: Evaluator, params: Params, position_aware: bool, only=None):
    """{method: (edge scores, tie-breaker or None, seconds)} for this graph (`only`: these
    gradient methods, by name; None: all three)."""
    out = {}
    # (method, steps, where the gradient starts): MIB's EAP at the clean run, attribution
    # patching at the corrupted run, EAP-IG from the corrupted run towards the clean one
    gradients = [("eap", 1, "clean"), ("attribution_patching", 1, "corrupted")]
    gradients.append(("eap_ig", params.ig_steps, "corrupted"))
    for name, steps, at in (g for g in gradients if only is None or g[0] in only):
        start = time.perf_counter()
        scores = evaluator.edge_scores(runner.scores(steps, at))
        out[name] = (scores, None, time.perf_counter() - start)
    if params.node_ranking:
        start = time.perf_counter()
        effects = node_effects(runner, position_aware)
        writer, reader = node_scores(runner.graph, effects)
        out["exact_node"] = (
            writer.flatten()[evaluator.edges],
            reader.flatten()[evaluator.edges],
            time.perf_counter() - start,
        )
    return out


def run_graph(
    runner: CircuitRunner, params: Params, position_aware: bool, prompts, only=None, random_seeds: int | None = None
) -> tuple[dict, dict, dict]:
    """Every method's curves (signed and absolute rankings) on one graph (`only`: just these
    gradient methods, and the random baseline); the evaluator and the methods' scores and
    orders come back for the figures. random_seeds: how many random orders (default the
    params'; 0: no random baseline on this graph)."""
    evaluator = Evaluator(runner, position_aware)
    weights = resamples(prompts, params, params.seed)
    fractions = list(params.sizes)
    sizes = sizes_for(fractions, evaluator.n_edges)
    table, orders, timings = {}, {}, {}
    for name, (scores, tie, seconds) in methods(runner, evaluator, params, position_aware, only).items():
        start = time.perf_counter()
        row = {"scores": scores}
        kinds = {kind: ranking(scores, absolute, tie) for kind, absolute in (("cpr", False), ("cmd", True))}
        evaluator.run_all([(order, n) for order in kinds.values() for n in sizes])  # both curves side by side
        for kind, absolute in (("cpr", False), ("cmd", True)):
            order = orders[(name, kind)] = kinds[kind]
            curve = evaluator.curve(order, sizes)
            row[kind] = summarise(curve, runner, fractions, sizes, absolute, params, weights)
        row["smallest_faithful"] = smallest_faithful(
            evaluator, orders[(name, "cmd")], sizes, row["cmd"]["faithfulness"], params
        )
        timings[name] = round(seconds + time.perf_counter() - start, 3)
        table[name] = row
    state = {"evaluator": evaluator, "orders": orders, "sizes": sizes}
    random_seeds = params.random_seeds if random_seeds is None else random_seeds
    if not random_seeds:
        return table, state, timings
    start = time.perf_counter()
    g = torch.Generator().manual_seed(params.seed)
    randoms, shuffled = [], [torch.randperm(evaluator.n_edges, generator=g) for _ in range(random_seeds)]
    evaluator.run_all([(order, n) for order in shuffled for n in sizes])  # every order's curve side by side
    for order in shuffled:
        curve = evaluator.curve(order, sizes)
        randoms.append(
            {k: summarise(curve, runner, fractions, sizes, k == "cmd", params, weights) for k in ("cpr", "cmd")}
        )
    table["random"] = {
        "seeds": randoms,
        "cpr": mean_curve([r["cpr"] for r in randoms]),
        "cmd": mean_curve([r["cmd"] for r in randoms]),
        "smallest_faithful": None,
    }
    timings["random"] = round(time.perf_counter() - start, 3)
    return table, state, timings


def subset(runner_args, idx: torch.Tensor) -> CircuitRunner:
    model, clean, corrupted, answers = runner_args
    return CircuitRunner(model, clean[idx], corrupted[idx], answers[idx])


def held_out(model, batch, params: Params) -> dict | None:
    """EAP-IG scored on the prompts of half of the names, verified on the other names' prompts,
    against the same test prompts scored and verified in sample: a paired comparison (both arms
    on the same cluster resamples of the test prompts, by name and by template), whose
    difference in CPR has its own interval."""
    scoring_idx, testing_idx = name_split(batch.spec.prompts, params.seed)
    if not scoring_idx or not testing_idx:
        return None
    args = (model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens)
    scoring, testing = subset(args, torch.tensor(scoring_idx)), subset(args, torch.tensor(testing_idx))
    weights = resamples([batch.spec.prompts[i] for i in testing_idx], params, params.seed)
    evaluator = Evaluator(testing, False)
    fractions = list(params.sizes)
    sizes = sizes_for(fractions, evaluator.n_edges)
    out = {"n_scoring": len(scoring_idx), "n_testing": len(testing_idx), "small": params.small_difference}
    curves = {}
    for name, source in (("held_out", scoring), ("in_sample", testing)):
        order = ranking(evaluator.edge_scores(source.scores(params.ig_steps)), absolute=False)
        curves[name] = evaluator.curve(order, sizes)
        out[name] = summarise(curves[name], testing, fractions, sizes, False, params, weights)
    out["difference"] = paired_difference(curves["held_out"], curves["in_sample"], testing, fractions, params, weights)
    return out


def transfer(model, batch, order: torch.Tensor, params: Params) -> dict | None:
    """The pronoun circuits (EAP-IG, signed ranking) on the exceptions task's control family,
    ordinary sentence ends, corrupted the same way ("." -> ";"), on prompts whose answer pair is
    single-token: per length group one runner; faithfulness from the pooled per-prompt metrics."""
    spec = batch.spec
    control = spec.info["control"]
    groups: dict[int, list] = {}
    for i, p in enumerate(spec.prompts):
        answers = batch.answer_tokens[i]
        if p.group != control or not p.text.endswith(".") or bool((answers == UNUSABLE).any()):
            continue
        clean, corrupted = model.to_tokens(p.text), model.to_tokens(p.text[:-1] + ";")
        if clean.shape == corrupted.shape:
            groups.setdefault(clean.shape[1], []).append((clean, corrupted, answers, p.text))
    if not groups:
        return None
    fractions = list(params.sizes)
    m_c, m_n, m_0, prompts = [], [], [], []
    for rows in groups.values():
        runner = CircuitRunner(
            model, torch.cat([r[0] for r in rows]), torch.cat([r[1] for r in rows]), torch.stack([r[2] for r in rows])
        )
        evaluator = Evaluator(runner, False)
        m_c.append(evaluator.curve(order, sizes_for(fractions, evaluator.n_edges)))
        m_n.append(runner.clean_metric)
        m_0.append(runner.corrupted_metric)
        prompts += [r[3] for r in rows]
    m_c, m_n, m_0 = torch.cat(m_c, -1), torch.cat(m_n), torch.cat(m_0)
    if abs(float(m_n.mean() - m_0.mean())) < 1e-6:
        return {"family": control, "prompts": prompts, "defined": False}
    f = faithfulness(m_c, m_n, m_0)
    return {
        "family": control,
        "prompts": prompts,
        "defined": True,
        "clean": num(m_n.mean()),
        "corrupted": num(m_0.mean()),
        "faithfulness": to_list(f),
        "area": num(area(fractions, f.double(), False)),
    }


def describe(
    graph,
    evaluator: Evaluator,
    order: torch.Tensor,
    n: int,
    scores: torch.Tensor,
    effects: torch.Tensor,
    position_aware: bool,
) -> dict:
    """The circuit of the first n edges of `order`, as data: its edges (ids, score, exact
    effect), its nodes, and how many edges feed each kind of reader."""
    shape = evaluator.shape
    edges = []
    for rank, i in enumerate(order[:n].tolist()):
        flat = int(evaluator.edges[i])
        w, r, p = (
            (flat // (shape[1] * shape[2]), flat // shape[2] % shape[1], flat % shape[2])
            if position_aware
            else (flat // shape[1], flat % shape[1], None)
        )
        edge = {"writer": graph.writer_id(w), "reader": graph.reader_id(r), "score": num(scores[i])}
        if p is not None:
            edge["position"] = p
        if rank < len(effects):
            edge["exact_effect"] = num(effects[rank])
        edges.append(edge)
    kinds = {}
    for e in edges:
        kind = e["reader"]["kind"]
        kinds[kind] = kinds.get(kind, 0) + 1
    nodes = {tuple(sorted(e["writer"].items())) for e in edges} | {tuple(sorted(e["reader"].items())) for e in edges}
    writers = sorted({graph.writers.index(tuple(e["writer"].values())) for e in edges})
    return {
        "n_edges": n,
        "edges": edges,
        "readers_by_kind": kinds,
        "writers": [graph.writer_id(w) for w in writers],
        "heads": [
            {"layer": layer, "head": head}
            for layer, head in sorted(
                {(e["writer"]["layer"], e["writer"]["head"]) for e in edges if e["writer"]["kind"] == "head"}
            )
        ],
        "mlps": [
            {"kind": "mlp", "layer": layer}
            for layer in sorted({e["writer"]["layer"] for e in edges if e["writer"]["kind"] == "mlp"})
        ],
        "n_nodes": len(nodes),
    }


def unsupported(model) -> str | None:
    """Why the circuit runner cannot run this model (generator.engine.unsupported): the pipeline
    then skips this experiment for it, before it runs, and its page says why."""
    from generator.engine import unsupported as engine_unsupported

    return engine_unsupported(model, circuit=True)


def run(model, batch, params: Params, inputs: dict) -> Result:
    try:
        runner = CircuitRunner(model, batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens)
    except NotImplementedError as e:  # TransformerLens's own edge tools refuse such models too
        raise ReportError(f"circuit: {e} Remove `circuit` from experiments for this model.") from None
    clean, corrupted = runner.clean_metric.mean(), runner.corrupted_metric.mean()
    normalisation_scale("circuit", clean, corrupted)
    if params.node_ranking:
        engine_head_effects(model, batch, runner)
    graph = runner.graph
    table, state, timings = run_graph(runner, params, position_aware=False, prompts=batch.spec.prompts)
    evaluator, orders = state["evaluator"], state["orders"]

    # the circuit: EAP-IG by |score|, at its smallest faithful size (else the largest drawn)
    order = orders[("eap_ig", "cmd")]
    faithful = smallest_faithful(
        evaluator, order, state["sizes"], table["eap_ig"]["cmd"]["faithfulness"], params, refine=params.refine
    )
    shown = min(params.graph_edges, evaluator.n_edges)
    n = faithful["edges"] if faithful and faithful["edges"] <= shown else shown
    effects = edge_effects(runner, evaluator, order, shown)
    ig_scores = table["eap_ig"]["scores"]
    circuit = describe(graph, evaluator, order, n, ig_scores, effects, False)
    drawn = describe(graph, evaluator, order, shown, ig_scores, effects, False)

    position = by_position(runner, params, timings, batch.spec.prompts) if params.position_aware else None
    methods_table = {k: {kk: vv for kk, vv in v.items() if kk != "scores"} for k, v in table.items()}
    metrics = {
        "clean_logit_diff": num(clean),
        "corrupted_logit_diff": num(corrupted),
        "n_prompts": len(batch.spec.prompts),
        "n_edges": evaluator.n_edges,
        "n_edges_by_position": evaluator.n_edges * runner.n_pos,
        "shared_prefix": runner.start,
        "graph_shape": {
            "n_layers": graph.n_layers,
            "n_heads": graph.n_heads,
            "n_pos": runner.n_pos,
            "d_model": model.cfg.d_model,
        },
        "example_prompt": batch.spec.prompts[0].text,
        "example_tokens": model.to_str_tokens(batch.clean_tokens[0]),
        "answers": list(batch.spec.prompts[0].answers),
        "fractions": list(params.sizes),
        "ig_steps": params.ig_steps,
        "top_edges": params.top_edges,
        "faithful": params.faithful,
        "confidence": params.confidence,
        "bootstrap": params.bootstrap,
        "random_seeds": params.random_seeds,
        "position_random_seeds": params.position_random_seeds,
        "methods": methods_table,
        "by_position": position,
        "circuit": {**circuit, "smallest_faithful": faithful},
        "drawn": drawn,
        "selected_edges": n,  # the drawn edges the page's graph selects: the circuit's
        "held_out": held_out(model, batch, params) if params.held_out else None,
        "transfer": (
            transfer(model, inputs["tasks"]["exceptions"], orders[("eap_ig", "cpr")], params)
            if isinstance(inputs.get("tasks", {}).get("exceptions"), TaskBatch)
            else None
        ),
        # the downloadable circuit graph's edges (render writes it beside the page as JSON)
        "download": download(graph, evaluator, table, order[: min(params.export_edges, evaluator.n_edges)]),
        "negligible": params.negligible,
        "negligible_edges": sum(
            abs(e.get("exact_effect", 0.0)) < params.negligible * float(clean - corrupted) for e in drawn["edges"]
        ),
    }
    return Result(metrics, timings=timings)


def by_position(runner: CircuitRunner, params: Params, timings: dict, prompts) -> dict:
    """The position-aware graph: every method's curves, and its EAP-IG circuit as drawn."""
    table, state, seconds = run_graph(
        runner, params, position_aware=True, prompts=prompts, random_seeds=params.position_random_seeds
    )
    timings.update({f"{k}_by_position": v for k, v in seconds.items()})
    out = {k: {kk: vv for kk, vv in v.items() if kk != "scores"} for k, v in table.items()}
    order = state["orders"][("eap_ig", "cmd")]
    shown = min(params.graph_edges, state["evaluator"].n_edges)
    effects = edge_effects(runner, state["evaluator"], order, shown)
    out["drawn"] = describe(runner.graph, state["evaluator"], order, shown, table["eap_ig"]["scores"], effects, True)
    return out


def download(graph, evaluator: Evaluator, table: dict, top: torch.Tensor) -> dict:
    """The top edges (by EAP-IG |score|, best first: the circuit is their first edges) with every
    method's score: [writer, reader, scores…]."""
    scores = {name: row["scores"] for name, row in table.items() if "scores" in row}
    n_readers = len(graph.readers)
    return {
        "writers": [graph.writer_id(i) for i in range(len(graph.writers))],
        "readers": [graph.reader_id(i) for i in range(n_readers)],
        "edges": [
            [int(evaluator.edges[i]) // n_readers, int(evaluator.edges[i]) % n_readers]
            + [num(scores[m][i]) for m in sorted(scores)]
            for i in top.tolist()
        ],
        "columns": ["writer", "reader"] + sorted(scores),
    }
