"""Counterfactual endings of the pronoun task (issue 20, item 3).

Each of the notebook's prompts ends in "."; here its final token is also "!" and "?" (sentence
ends: English goes on with a capital) and ";", "," or nothing at all (no sentence end). Per
ending: the mean logit difference of the prompt's own answers (" He" − " he") and the capital
log-odds over the whole vocabulary (the exceptions experiment's measure), with intervals from
resampling whole names, as the circuit page's.

Does the pronoun circuit (the circuit experiment's stored circuit: its smallest faithful one)
carry "!" and "?" too? It is verified exactly (generator.engine.graph.CircuitRunner, MIB's
evaluation, as the circuit experiment does) with each sentence end as the clean run and the
task's corruption (";") as the corrupted one: f = 1 means its edges carry the whole difference.

The task's corruption mixes two things: "." raising the capital and ";" lowering it. Against a
neutral final token both halves show: a mean ablation (the final token's embedding replaced by
the mean embedding of the single-token endings) and a resample ablation (the mean over the
other endings, those neither "." nor ";").
"""

from __future__ import annotations

import torch

from generator import ReportError
from generator.engine.graph import CircuitRunner
from generator.experiments.circuit import boot_faithfulness, cluster_weights, faithfulness, quantiles
from generator.experiments.exceptions import capital_log_odds
from generator.experiments.sentence_end import final
from generator.metrics import logit_diff, num, to_list


def ending_tokens(model, prompts, ending: str) -> torch.Tensor:
    """[B, P] tokens of the task's prompts with their final "." replaced by `ending`; one
    length for all (else a ReportError naming the ending)."""
    rows = []
    for p in prompts:
        if not p.text.endswith("."):
            raise ReportError(f"sentence_end: prompt {p.text!r} does not end in '.'; the endings replace that '.'")
        rows.append(model.to_tokens(p.text[:-1] + ending))
    if len({r.shape[1] for r in rows}) > 1:
        raise ReportError(f"sentence_end: with the ending {ending!r} the prompts differ in token length")
    return torch.cat(rows)


def final_metrics(model, tokens: torch.Tensor, answers: torch.Tensor, masks, fwd_hooks=()) -> tuple:
    """Per prompt ([B] each): the answer pair's logit difference and the capital log-odds."""
    logits = model.run_with_hooks(tokens, fwd_hooks=list(fwd_hooks))[:, -1]
    upper, lower = (m.to(logits.device) for m in masks)
    return logit_diff(logits, answers).float().cpu(), capital_log_odds(logits, upper, lower).cpu()


class LastToken:
    """Runs of the task's prompts that change only the final token, computed for the final
    position alone from one cached run of `tokens` (sentence_end.final: exact, as whole
    forwards; tested against them)."""

    def __init__(self, model, tokens: torch.Tensor, answers: torch.Tensor, masks):
        from generator.engine.families import model_weights

        self.w, self.answers, self.masks, self.n_pos = model_weights(model), answers, masks, tokens.shape[1]
        logits, _, self.prefix = final.cached(model, tokens, 0)
        final.agrees(self.metrics(self.embed(tokens[:, -1]))[1], self._odds(logits), "endings")

    def embed(self, last: torch.Tensor | None, vector: torch.Tensor | None = None) -> torch.Tensor:
        """The residual stream's input at the final position [1, B, 1, D]: the embedding of each
        prompt's final token `last` [B] (or `vector` for all) and the position's."""
        w, p = self.w, self.n_pos
        x = w.W_E[last.to(w.W_E.device)] if last is not None else vector.expand(len(self.answers), -1)
        return (x + w.family.positions(w, p - 1, p))[None, :, None]

    def metrics(self, resid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per prompt ([B] each): the logit difference and the capital log-odds."""
        logits = (final.run(self.w, resid, self.prefix, 0) @ self.w.W_U + self.w.b_U)[0]
        return logit_diff(logits, self.answers.to(logits.device)).float().cpu(), self._odds(logits)

    def _odds(self, logits: torch.Tensor) -> torch.Tensor:
        upper, lower = (m.to(logits.device) for m in self.masks)
        return capital_log_odds(logits, upper, lower).cpu()


def interval(values: torch.Tensor, weights: torch.Tensor, params) -> list[float]:
    """The percentile interval of the weighted mean of per-prompt `values` [B] over resamples."""
    boot = (weights @ values.double()) / weights.sum(-1)
    return to_list(quantiles(boot, params))


def analyse(model, batch, circuit_keep, params, masks) -> tuple[dict, dict]:
    """The endings table, the halves of the "." / ";" contrast and the circuit's faithfulness on
    each sentence end; also the tokens of every ending (the probe reuses them)."""
    prompts = batch.spec.prompts
    answers = batch.answer_tokens
    g = torch.Generator().manual_seed(params.seed)
    weights = cluster_weights([p.name for p in prompts], params.bootstrap, g)
    endings = list(dict.fromkeys(params.sentence_ends + params.non_ends))
    tokens = {e: ending_tokens(model, prompts, e) for e in endings}
    ld, odds, rows = {}, {}, []
    period, corruption = params.sentence_ends[0], params.non_ends[0]
    last = LastToken(model, tokens[period], answers, masks)
    for e in endings:
        same = tokens[e].shape == tokens[period].shape and bool((tokens[e][:, :-1] == tokens[period][:, :-1]).all())
        if same:  # the period's run but for the last token: that position alone
            ld[e], odds[e] = last.metrics(last.embed(tokens[e][:, -1]))
        else:
            ld[e], odds[e] = final_metrics(model, tokens[e], answers, masks)
        rows.append(
            {
                "ending": e,
                "sentence_end": e in params.sentence_ends,
                "logit_diff": num(ld[e].mean()),
                "logit_diff_ci": interval(ld[e], weights, params),
                "capital_wins": num((ld[e] > 0).float().mean()),
                "log_odds": num(odds[e].mean()),
                "log_odds_ci": interval(odds[e], weights, params),
            }
        )
    singles = [int(tokens[e][0, -1]) for e in endings if e and tokens[e].shape == tokens[period].shape]
    # the final token's embedding replaced by the mean of the single-token endings' (a mean
    # ablation of its identity, computed for the last position alone)
    mean = model.W_E[torch.tensor(singles, device=model.W_E.device)].mean(0)
    neutral, _ = last.metrics(last.embed(None, mean))
    others = [e for e in endings if e not in (period, corruption)]
    resample = torch.stack([ld[e] for e in others]).mean(0)
    halves = {
        "period": period,
        "corruption": corruption,
        "mean_ablation": halves_of(ld[period], neutral, ld[corruption], weights, params),
        "mean_ablation_endings": [e for e in endings if e and tokens[e].shape == tokens[period].shape],
        "resample": halves_of(ld[period], resample, ld[corruption], weights, params),
        "resample_endings": others,
    }
    prefixes: dict = {}  # the endings of one sentence: the same keys and values before the last token
    carried = [
        carries(model, tokens[e], tokens[corruption], answers, circuit_keep, weights, e, params, prefixes)
        for e in params.sentence_ends
    ]
    return {"rows": rows, "halves": halves, "circuit": carried}, tokens


def halves_of(top: torch.Tensor, neutral: torch.Tensor, bottom: torch.Tensor, weights, params) -> dict:
    """How much of top − bottom (per prompt [B]) lies above the neutral baseline ("." raising
    the capital) and how much below it (";" lowering it), with intervals."""
    up, down = top - neutral, neutral - bottom
    w = weights.double()
    boot_up, boot_down = (w @ up.double()) / w.sum(-1), (w @ down.double()) / w.sum(-1)
    total = float((up + down).mean())
    return {
        "neutral": num(neutral.mean()),
        "neutral_ci": interval(neutral, weights, params),
        "up": num(up.mean()),
        "up_ci": interval(up, weights, params),
        "down": num(down.mean()),
        "down_ci": interval(down, weights, params),
        "up_share": num(float(up.mean()) / total) if abs(total) > 1e-6 else None,
        "up_share_ci": to_list(quantiles(boot_up / (boot_up + boot_down), params)) if abs(total) > 1e-6 else None,
    }


def carries(model, clean, corrupted, answers, keep, weights, ending: str, params, prefixes=None) -> dict:
    """The stored circuit verified exactly with `ending` as the clean run: its faithfulness
    (prefixes: the circuit runners' prefix_cache)."""
    if clean.shape != corrupted.shape:  # an ending of another token length: no edge-level run
        return {
            "ending": ending,
            "clean": None,
            "corrupted": None,
            "gap": None,
            "faithfulness": None,
            "faithfulness_ci": None,
        }
    runner = CircuitRunner(model, clean, corrupted, answers, prefix_cache=prefixes)
    m_n, m_0 = runner.clean_metric.float().cpu(), runner.corrupted_metric.float().cpu()
    gap = float(m_n.mean() - m_0.mean())
    row = {"ending": ending, "clean": num(m_n.mean()), "corrupted": num(m_0.mean()), "gap": num(gap)}
    if abs(gap) < 1e-6:
        return {**row, "faithfulness": None, "faithfulness_ci": None}
    m_c = runner.evaluate(keep.to(runner.device)).float().cpu()[None]
    f = faithfulness(m_c, m_n, m_0)[0]
    boot = boot_faithfulness(m_c, m_n, m_0, weights)[:, 0]
    return {**row, "faithfulness": num(f), "faithfulness_ci": to_list(quantiles(boot, params))}


def circuit_keep(model, circuit) -> torch.Tensor:
    """The stored circuit's edges (circuit metrics, typed) as a [writers, readers] mask of
    generator.engine.graph's graph."""
    from generator.engine.graph import EdgeGraph

    graph = EdgeGraph(model.cfg.n_layers, model.cfg.n_heads)
    writers, readers = graph.writers, graph.readers
    keep = torch.zeros(len(writers), len(readers), dtype=torch.bool)
    for edge in circuit.circuit.edges:
        keep[writers.index(node_tuple(edge.writer)), readers.index(node_tuple(edge.reader))] = True
    return keep


def node_tuple(node) -> tuple:
    """A stored node id as the graph's tuple: ("head", 1, 2), ("mlp", 0), ("logits",)."""
    return tuple(v for v in (node.kind, getattr(node, "layer", None), getattr(node, "head", None)) if v is not None)
