"""Baseline: does the model prefer the capital pronoun after ". " and the lowercase after ";"?

Per-prompt logit differences (correct capital minus lowercase of the same gender) on clean
and corrupted prompts, gender agreement, and the top-k next tokens for the example prompt
(the seed's `test_prompt`).
"""

from __future__ import annotations

import plotly.graph_objects as go
import torch
from plotly.subplots import make_subplots
from generator.experiments import Result
from generator.experiments.common import logit_diff, num, to_list
from generator.experiments.params import Baseline as Params
from generator.figures import plotly_spec


def top_k_table(model, prompt: str, k: int) -> list[dict]:
    logits = model(model.to_tokens(prompt))[0, -1]
    probs = logits.softmax(-1)
    top = probs.topk(k)
    return [{"rank": i + 1, "token": model.to_string(int(t)), "prob": num(p), "logit": num(logits[t])}
            for i, (p, t) in enumerate(zip(top.values, top.indices))]


def other_group_capital(spec) -> list[list[int]]:
    """For each prompt, the capital answers of the other groups (the other gender)."""
    capitals = sorted({p.answers[0] for p in spec.prompts})
    return [[c for c in capitals if c != p.answers[0]] for p in spec.prompts]


@torch.no_grad()
def run(model, batch, params: Params, inputs: dict) -> Result:
    spec = batch.spec
    clean_logits = model(batch.clean_tokens)[:, -1]
    corrupted_logits = model(batch.corrupted_tokens)[:, -1]
    clean = logit_diff(clean_logits, batch.answer_tokens)
    corrupted = logit_diff(corrupted_logits, batch.answer_tokens)

    # gender agreement: the right capital pronoun beats every other group's capital pronoun
    capital_ids = {p.answers[0]: int(batch.answer_tokens[i, 0]) for i, p in enumerate(spec.prompts)}
    agrees = []
    for i, others in enumerate(other_group_capital(spec)):
        right = clean_logits[i, batch.answer_tokens[i, 0]]
        agrees.append(all(right > clean_logits[i, capital_ids[o]] for o in others))

    templates = sorted({p.template for p in spec.prompts})
    names = [p.name for p in spec.prompts if p.template == templates[0]]
    rows = [{"prompt": p.text, "template": p.template, "name": p.name, "group": p.group,
             "correct": p.answers[0], "wrong": p.answers[1],
             "clean": num(clean[i]), "corrupted": num(corrupted[i]), "gender_ok": agrees[i]}
            for i, p in enumerate(spec.prompts)]
    metrics = {
        "n_prompts": len(rows),
        "n_tokens": int(batch.clean_tokens.shape[1]),
        "mean_logit_diff": num(clean.mean()),
        "mean_logit_diff_corrupted": num(corrupted.mean()),
        "std_logit_diff": num(clean.std()),
        "frac_capital_preferred": num((clean > 0).float().mean()),
        "frac_lowercase_after_corruption": num((corrupted < 0).float().mean()),
        "gender_accuracy": num(sum(agrees) / len(agrees)),
        "example_prompt": spec.example,
        "top_k": top_k_table(model, spec.example, params.top_k),
        "per_prompt": rows,
        "templates": list(spec.templates),
        "names": names,
    }
    return Result(metrics, {"per_prompt": per_prompt_figure(rows, templates, names)})


def per_prompt_figure(rows, templates, names) -> dict:
    """Two heatmaps (template × name), clean and corrupted, on one shared colour scale."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("clean: “.”", "corrupted: “;”"),
                        shared_yaxes=True, horizontal_spacing=0.04)
    lookup = {(r["template"], r["name"]): r for r in rows}
    bound = max(abs(r[k]) for r in rows for k in ("clean", "corrupted"))
    for col, key in enumerate(("clean", "corrupted"), start=1):
        z = [[lookup[(t, n)][key] for n in names] for t in templates]
        text = [[lookup[(t, n)]["prompt"] for n in names] for t in templates]
        fig.add_trace(go.Heatmap(
            z=z, x=names, y=[f"template {t + 1}" for t in templates], text=text,
            zmin=-bound, zmax=bound, colorscale="RdBu", reversescale=True, showscale=col == 2,
            colorbar=dict(title="logit diff"),
            hovertemplate="%{text}<br>logit diff %{z:.2f}<extra>" + key + "</extra>"), row=1, col=col)
    fig.update_xaxes(type="category", tickangle=-45)
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_layout(title="Logit difference (capital − lowercase) per prompt", height=380)
    return plotly_spec(fig)
