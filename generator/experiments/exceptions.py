"""Exceptions: periods that are not followed by a sentence-starting capital.

For each family of the exceptions task (e-mail addresses, domains, file names, method calls,
abbreviations, P.S., titles, and ordinary sentence ends as the control): the logit difference
capital − lowercase of each prompt's answer pair, compared with the control; the probability
mass on every token that starts with a capital letter (a check that does not depend on the
chosen pair); and the logit lens of the pair's difference, computed as in the attribution
experiment. Prompts differ in length, so each runs on its own.
"""

from __future__ import annotations

import plotly.graph_objects as go
import torch

from generator.experiments import Result
from generator.experiments.attribution import attribute, stack_label
from generator.experiments.common import num, to_list
from generator.experiments.params import Exceptions as Params
from generator.figures import plotly_spec


def case_masks(model) -> tuple[torch.Tensor, torch.Tensor]:
    """Which vocabulary entries start (after any leading space) with an upper / lower case letter."""
    tokenizer = model.tokenizer
    words = [w.lstrip()[:1] for w in tokenizer.batch_decode([[i] for i in range(len(tokenizer))])]
    upper = torch.zeros(model.cfg.d_vocab, dtype=torch.bool)
    lower = torch.zeros(model.cfg.d_vocab, dtype=torch.bool)
    n = min(len(words), model.cfg.d_vocab)
    upper[:n] = torch.tensor([w.isupper() for w in words[:n]])
    lower[:n] = torch.tensor([w.islower() for w in words[:n]])
    return upper, lower


@torch.no_grad()
def run(model, batch, params: Params, inputs: dict) -> Result:
    spec = batch.spec
    upper, lower = case_masks(model)
    # prompts of equal token length run as one batch: far fewer forward passes than one each
    by_length: dict[int, list[int]] = {}
    for i, tokens in enumerate(batch.clean_tokens):
        by_length.setdefault(int(tokens.shape[1]), []).append(i)
    rows, lenses = [None] * len(spec.prompts), [None] * len(spec.prompts)
    for length, idx in by_length.items():
        a = attribute(model, torch.cat([batch.clean_tokens[i] for i in idx]), batch.answer_tokens[idx])
        probs = a["final_logits"].softmax(-1).cpu()
        for j, i in enumerate(idx):
            p = spec.prompts[i]
            rows[i] = {"prompt": p.text, "family": p.group, "capital": p.answers[0], "lowercase": p.answers[1],
                       "n_tokens": length, "logit_diff": num(a["logit_diff"][j]),
                       "p_capital": num(probs[j, upper].sum()), "p_lowercase": num(probs[j, lower].sum())}
            lenses[i] = a["lens"][:, j]
        labels = [stack_label(s) for s in a["lens_labels"]]
    lenses = torch.stack(lenses)  # [prompt, lens entry]
    control = spec.info["control"]
    control_mean = mean([r["logit_diff"] for r in rows if r["family"] == control])
    families = []
    for family in spec.groups:
        mine = [r for r in rows if r["family"] == family]
        expected = spec.info["families"][family]["expected"]
        diffs = [r["logit_diff"] for r in mine]
        families.append({
            "family": family, "description": spec.info["families"][family]["description"],
            "expected": expected, "n": len(mine), "example": mine[0]["prompt"],
            "mean_logit_diff": num(mean(diffs)), "min_logit_diff": min(diffs), "max_logit_diff": max(diffs),
            "vs_control": num(mean(diffs) - control_mean),
            # does the sign of each prompt's logit difference match written English?
            "agrees": num(mean([(d > 0) == (expected == "capital") for d in diffs])),
            "p_capital": num(mean([r["p_capital"] for r in mine])),
            "p_lowercase": num(mean([r["p_lowercase"] for r in mine])),
        })
    lens = {f: to_list(lenses[[r["family"] == f for r in rows]].mean(0)) for f in spec.groups}
    metrics = {"control": control, "control_mean": num(control_mean), "families": families,
               "per_prompt": rows, "lens": {"labels": labels, "families": lens},
               "agreement": num(mean([f["agrees"] for f in families if f["family"] != control]))}
    return Result(metrics, {"families": families_figure(rows, families),
                            "logit_lens": lens_figure(labels, lens)})


def mean(values) -> float:
    values = [float(v) for v in values]
    return sum(values) / len(values)


def families_figure(rows: list[dict], families: list[dict]) -> dict:
    """A bar per family (its mean) with every prompt as a dot on top."""
    names = [f["family"] for f in families]
    fig = go.Figure(go.Bar(x=names, y=[f["mean_logit_diff"] for f in families], name="family mean",
                           marker_color=["#b2182b" if f["expected"] == "capital" else "#2166ac" for f in families],
                           opacity=0.6, hovertemplate="%{x}: mean %{y:.2f}<extra></extra>"))
    fig.add_trace(go.Scatter(x=[r["family"] for r in rows], y=[r["logit_diff"] for r in rows], mode="markers",
                             name="prompt",
                             text=[f'{r["prompt"]} → {r["capital"]!r} vs {r["lowercase"]!r}' for r in rows],
                             marker=dict(color="black", size=6),
                             hovertemplate="%{text}<br>logit diff %{y:.2f}<extra></extra>"))
    fig.add_hline(y=0, line_width=1, line_color="grey")
    fig.update_layout(title="Capital − lowercase logit difference after the period, per family",
                      xaxis_title="family (red: English expects a capital, blue: lowercase)",
                      yaxis_title="logit diff (capital − lowercase)", showlegend=False)
    fig.update_xaxes(type="category", categoryarray=names)
    return plotly_spec(fig)


def lens_figure(labels: list[str], lens: dict[str, list[float]]) -> dict:
    fig = go.Figure()
    for family, values in lens.items():
        fig.add_trace(go.Scatter(x=labels, y=values, mode="lines+markers", name=family,
                                 hovertemplate="%{x}: %{y:.3f}<extra>" + family + "</extra>"))
    fig.add_hline(y=0, line_width=1, line_color="grey")
    fig.update_layout(title="Logit lens on the exceptions: capital − lowercase per family",
                      xaxis_title="residual stream (before each attention layer, before each MLP, final)",
                      yaxis_title="logit diff (capital − lowercase)")
    fig.update_xaxes(type="category")
    return plotly_spec(fig)
