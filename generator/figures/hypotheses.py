"""The hypotheses page's figures: the copying prompt sets' logit differences, each component's
DLA onto He − he and onto the capitalisation direction, the examined heads by source role
(attention from the final position and what they write from there), and position-wise patching
of each corruption labelled by role."""

from __future__ import annotations

import plotly.graph_objects as go

from generator.figures.plot import NEGATIVE, POSITIVE, heatmap, plotly_spec, recovered_heatmap, signed_bars
from generator.heads import head_name, stack_label
from generator.words import role_title

SET_TITLES = {
    "pronoun": "the task (names)",
    "copy_lowercase_names": "lowercase names",
    "copy_no_capital": "no capitalised word",
    "copy_capital_word": "capitalised non-name",
}


def figures(m) -> dict:
    out = {"sets": lambda: sets(m), "components": lambda: components(m)}
    if m.attention.heads:
        out["head_attention"] = lambda: head_roles(m, "attention", "attention from the final position", "attention")
        out["head_writes"] = lambda: head_roles(
            m, "writes_pronoun", "what each head writes onto the answer direction, from each role", "logit diff"
        )
        out["head_per_unit"] = lambda: head_roles(
            m, "per_unit_pronoun", "OV: written onto the answer direction per unit of attention", "logit diff"
        )
        if m.attention.heads[0].per_unit_capital is not None:
            out["head_per_unit_capital"] = lambda: head_roles(
                m, "per_unit_capital", "OV: written onto the capitalisation direction per unit of attention", "logit"
            )
    for p in m.positions:
        if p.recovered is not None:
            out[f"positions_{p.task}"] = lambda p=p: positions(p)
            out[f"positions_heads_{p.task}"] = lambda p=p: recovered_heatmap(
                p.final_head_out,
                [f"H{h}" for h in range(len(p.final_head_out[0]))],
                [f"L{layer}" for layer in range(len(p.final_head_out))],
                f"Head outputs patched at the final position ({p.task})",
                "head",
                "layer",
            )
    return out


def sets(m) -> dict:
    rows = m.copying.sets
    return signed_bars(
        [SET_TITLES.get(r.task, r.task) for r in rows],
        [r.logit_diff for r in rows],
        "Mean logit difference (capital − lowercase pronoun) per prompt set",
        "prompt set",
        "mean logit difference",
    )


def components(m) -> dict:
    d = m.copying.direction
    labels = [stack_label(c) if c[0].isdigit() else c for c in d.components]
    fig = go.Figure(go.Bar(name="He − he (the task's answers)", x=labels, y=d.pronoun_dla, marker_color=POSITIVE))
    if d.capital_dla is not None:
        fig.add_trace(go.Bar(name="capitalisation direction", x=labels, y=d.capital_dla, marker_color=NEGATIVE))
    fig.update_layout(
        barmode="group",
        title="Direct logit attribution per component at the final position",
        xaxis_title="component",
        yaxis_title="DLA (logits)",
    )
    fig.update_xaxes(type="category")
    return plotly_spec(fig)


def head_roles(m, field: str, title: str, colorbar: str) -> dict:
    heads = m.attention.heads
    roles = list(m.attention.roles)
    z = [[getattr(h, field)[r] for r in roles] for h in heads]
    spec = heatmap(
        z,
        [role_title(r) for r in roles],
        [head_name(h) for h in heads],
        title.capitalize(),
        "source role",
        "head",
        colorbar=colorbar,
    )
    spec["figure"]["layout"]["height"] = 160 + 36 * len(heads)
    return spec


def positions(p) -> dict:
    x = [f"{role_title(role)}: {label}" for role, label in zip(p.roles, p.positions)]
    layers = [f"L{layer}" for layer in range(len(p.recovered))]
    return recovered_heatmap(
        p.recovered, x, layers, f"Residual stream patched by position ({p.task})", "position (role: token)", "layer"
    )
