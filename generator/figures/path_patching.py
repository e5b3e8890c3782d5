"""The path-patching page's figures: for each sender, its direct paths into every later head, and
into each MLP and the logits."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from generator.figures.plot import plotly_spec
from generator.heads import head_name


def figures(m) -> dict:
    out = {}
    for s in m.senders:
        if s.grids:
            out[s.figure] = lambda s=s: paths(head_name(s.sender), s.grids, m.n_layers, m.n_heads)
        if s.mlps is not None or s.logits is not None:
            out[f"{s.figure}_direct"] = lambda s=s: direct(head_name(s.sender), s.mlps, s.logits, m.n_layers)
    return out


def paths(sender: str, grids: dict, n_layers: int, n_heads: int) -> dict:
    """One heatmap per receiver input (receiver layer × head), on the normalised scale: colour
    saturates at ±1 (all of the clean behaviour), so a path carrying a few millionths is white."""
    values = [abs(v) for g in grids.values() for row in g for v in row if v is not None]
    bound = max([1.0] + values)
    names = {"q": "query", "k": "key", "v": "value"}
    fig = make_subplots(
        rows=1,
        cols=len(grids),
        shared_yaxes=True,
        horizontal_spacing=0.04,
        subplot_titles=[f"into {names[c]} ({c})" for c in grids],
    )
    layers, heads = [f"L{layer}" for layer in range(n_layers)], [f"H{h}" for h in range(n_heads)]
    for col, (c, grid) in enumerate(grids.items(), start=1):
        fig.add_trace(
            go.Heatmap(
                z=grid,
                x=heads,
                y=layers,
                zmin=-bound,
                zmax=bound,
                colorscale="RdBu",
                reversescale=True,
                showscale=col == len(grids),
                colorbar=dict(title="recovered"),
                hovertemplate=f"{sender} → %{{y}}%{{x}}.{c}<br>%{{z:.4f}}<extra></extra>",
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(type="category", title_text="receiver head")
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_yaxes(title_text="receiver layer", row=1, col=1)
    fig.update_layout(title=f"Direct paths from {sender} into later heads", height=420)
    return plotly_spec(fig)


def direct(sender: str, mlps, logits, n_layers: int) -> dict:
    """The paths into each MLP's input and straight to the logits, as bars on the normalised scale."""
    labels, values = [], []
    if mlps is not None:
        labels += [f"MLP{layer}" for layer in range(n_layers)]
        values += list(mlps)
    if logits is not None:
        labels.append("logits")
        values.append(logits)
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=values,
            marker_color=["#b2182b" if (v or 0) >= 0 else "#2166ac" for v in values],
            hovertemplate=f"{sender} → %{{x}}<br>%{{y:.4f}}<extra></extra>",
        )
    )
    bound = max([1.0] + [abs(v) for v in values if v is not None])
    fig.update_xaxes(type="category", title_text="receiver")
    fig.update_yaxes(range=[-bound, bound], title_text="recovered")
    fig.update_layout(title=f"Direct paths from {sender} into MLPs and the logits", height=360)
    return plotly_spec(fig)
