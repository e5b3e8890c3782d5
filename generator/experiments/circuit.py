"""Automatic circuit discovery: edge attribution patching (EAP) and faithfulness.

TransformerLens's `attribution_patch` (edge granularity) scores every edge writer -> reader of
the residual-stream graph (writers: embedding, heads, MLPs; readers: each head's query / key /
value input, each MLP's input, the logits) by (clean − corrupted write) · d(logit diff)/d(reader
input) at the corrupted run, one prompt at a time; scores are averaged over prompts. The
circuit of size k is the k edges with the largest |score|. `faithfulness` then ablates every
edge outside it (replacing the writer's contribution with the corrupted run's) on the clean
prompt: the recovered fraction is 1 when the circuit alone reproduces the clean logit
difference and 0 when it does no better than the corrupted run.
"""

from __future__ import annotations

import plotly.graph_objects as go
import torch
from transformer_lens.tools.analysis import EdgeAttributionConfig, attribution_patch, faithfulness

from generator.experiments import Result
from generator.experiments.common import logit_diff, num
from generator.experiments.params import Circuit as Params
from generator.figures import plotly_spec


def node_label(node, positions: list[str]) -> str:
    where = positions[node.position]
    if node.kind == "embed":
        return f"embed@{where}"
    if node.kind in ("mlp_out", "mlp_in"):
        return f"MLP{node.layer}@{where}"
    if node.kind == "logits":
        return f"logits@{where}"
    suffix = {"q_input": ".q", "k_input": ".k", "v_input": ".v"}.get(node.kind, "")
    return f"L{node.layer}H{node.head}{suffix}@{where}"


def prompt_metric(answers: torch.Tensor):
    """The logit difference of one prompt (TransformerLens scores one prompt at a time)."""
    return lambda logits: logit_diff(logits, answers.unsqueeze(0))[0]


def run(model, batch, params: Params, inputs: dict) -> Result:
    n = batch.clean_tokens.shape[0]
    # spread the prompts over the task: both groups and every template
    chosen = sorted(set(torch.linspace(0, n - 1, min(params.n_prompts, n)).round().long().tolist()))
    pairs = [(batch.clean_tokens[i : i + 1], batch.corrupted_tokens[i : i + 1], prompt_metric(batch.answer_tokens[i]))
             for i in chosen]

    totals: dict = {}
    with torch.enable_grad():
        for clean, corrupted, metric in pairs:
            scores = attribution_patch(model, clean, corrupted, metric, EdgeAttributionConfig(granularity="edge"))
            for edge, score in scores.edge_scores.items():
                totals[edge] = totals.get(edge, 0.0) + score / len(pairs)
    ranked = sorted(totals.items(), key=lambda item: abs(item[1]), reverse=True)

    labels = batch.position_labels
    sizes = sorted({min(k, len(ranked)) for k in params.circuit_sizes})
    curve = []
    for k in sizes:
        circuit = [edge for edge, _ in ranked[:k]]
        runs = [faithfulness(model, clean, corrupted, metric, circuit) for clean, corrupted, metric in pairs]
        curve.append({"size": k, "recovered": num(sum(r.recovered for r in runs) / len(runs)),
                      "per_prompt": [num(r.recovered) for r in runs],
                      "by_class": {c: num(sum(r.edge_class_recovered[c] for r in runs) / len(runs))
                                   for c in runs[0].edge_class_recovered}})
    faithful = [c for c in curve if c["recovered"] >= params.faithful]
    top = [{"writer": node_label(w, labels), "reader": node_label(r, labels), "score": num(s)}
           for (w, r), s in ranked[: params.top_edges]]
    metrics = {
        "prompts": [batch.spec.prompts[i].text for i in chosen],
        "total_edges": len(ranked),
        "nonzero_edges": sum(1 for _, s in ranked if s != 0.0),
        "top_edges": top,
        "faithfulness": curve,
        "faithful_threshold": params.faithful,
        "smallest_faithful": faithful[0]["size"] if faithful else None,
    }
    return Result(metrics, {"edges": edges_figure(top), "faithfulness": faithfulness_figure(curve, len(ranked))})


def edges_figure(top: list[dict]) -> dict:
    names = [f"{e['writer']} → {e['reader']}" for e in top]
    fig = go.Figure(go.Bar(x=[e["score"] for e in top], y=names, orientation="h",
                           hovertemplate="%{y}<br>%{x:.4f}<extra></extra>"))
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_layout(title="Top edges by edge attribution patching", xaxis_title="estimated effect (logit diff)",
                      height=max(300, 24 * len(top) + 120), margin=dict(l=260))
    return plotly_spec(fig)


def faithfulness_figure(curve: list[dict], total: int) -> dict:
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=[c["size"] for c in curve], y=[c["recovered"] for c in curve], mode="lines+markers",
                             name="recovered", hovertemplate="%{x} edges<br>recovered %{y:.3f}<extra></extra>"))
    fig.update_layout(title="Faithfulness of the top-k circuit", height=380, xaxis_type="log",
                      xaxis_title=f"edges kept (of {total})", yaxis_title="recovered (0 corrupted, 1 clean)")
    return plotly_spec(fig)
