"""The attention page's figures: circuitsvis views of each group's heads (example prompt and
the mean over prompts) and heatmaps of the row that matters, attention from the final position."""

from __future__ import annotations

import plotly.graph_objects as go

from generator.figures.plot import circuitsvis_spec, plotly_spec
from generator.heads import head_name


def figures(m) -> dict:
    out = {}
    for g in m.groups:
        if not g.heads:
            continue
        names = [head_name(h) for h in g.heads]
        for kind, pattern in (("example", g.pattern_example), ("mean", g.pattern_mean)):
            # averaged maps: each position labelled by what it holds in every prompt
            tokens, labels = (m.tokens, m.positions) if kind == "example" else (m.mean_positions, m.mean_positions)
            out[f"{g.group}_{kind}"] = lambda p=pattern, n=names, t=list(tokens): circuitsvis_spec(
                "AttentionHeads",
                {"attention": p, "tokens": t, "attentionHeadNames": n, "maskUpperTri": True},
            )
            out[f"{g.group}_{kind}_final"] = lambda p=pattern, n=names, g=g.group, k=kind, x=list(labels): final_row(
                [head[-1] for head in p], n, x, g, k
            )
    return out


def final_row(rows: list, heads: list[str], labels: list[str], group: str, kind: str) -> dict:
    """Attention from the final position: one row per head, one column per source position."""
    what = "the example prompt" if kind == "example" else "the mean over prompts"
    fig = go.Figure(
        go.Heatmap(
            z=rows,
            x=labels,
            y=heads,
            zmin=0,
            zmax=1,
            colorscale="Blues",
            colorbar=dict(title="attention"),
            hovertemplate="%{y} attends from the final position to %{x}: %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title=f"Attention from the final position, {group.replace('_', ' ')} heads, {what}",
        xaxis_title="source position (token_index)" if kind == "example" else "source position (role_index)",
        yaxis_title="head",
        height=160 + 40 * len(heads),
    )
    fig.update_xaxes(type="category")
    fig.update_yaxes(type="category", autorange="reversed")
    return plotly_spec(fig)
