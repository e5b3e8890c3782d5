"""The contrast page's figures: each family's capital log-odds for both members of every pair,
faithfulness curves per family (the circuit page's kind), the transfer matrix, and which
edges of the families' circuits are shared by all and which belong to one."""

from __future__ import annotations

import plotly.graph_objects as go

from generator.figures.circuit import curves
from generator.figures.plot import NEGATIVE, POSITIVE, heatmap, plotly_spec
from generator.heads import node_name


def figures(m) -> dict:
    out = {}
    if m.families:
        out["pairs"] = lambda: pairs(m)
    for f in m.families:
        if f.circuit is not None:
            out[f"faithfulness_{f.family}"] = lambda f=f: curves(
                f.circuit.methods, list(m.fractions), f.circuit.n_edges, f"{f.family}, position-agnostic graph"
            )
            if f.circuit.by_position is not None:
                position = f.circuit.by_position
                out[f"faithfulness_{f.family}_by_position"] = lambda f=f, position=position: curves(
                    position.methods, list(m.fractions), position.n_edges, f"{f.family}, position-aware graph"
                )
    if m.transfer is not None:
        out["transfer"] = lambda: transfer(m.transfer)
        out["edge_sets"] = lambda: edge_sets(m.edge_sets)
    return out


def pairs(m) -> dict:
    """Per family, each member's capital log-odds, the two joined by a line per pair."""
    fig = go.Figure()
    families = [f.family for f in m.families]
    for member, colour in (("end", POSITIVE), ("exception", NEGATIVE)):
        rows = m.per_pair
        fig.add_trace(
            go.Box(
                x=[r.family for r in rows],
                y=[getattr(r, f"log_odds_{member}") for r in rows],
                name=f"{member} member",
                marker_color=colour,
                boxpoints="all",
                jitter=0.3,
                text=[getattr(r, member) for r in rows],
                hovertemplate="%{text}<br>capital log-odds %{y:.2f}<extra></extra>",
            )
        )
    fig.add_hline(y=0, line_width=1, line_color="grey")
    fig.update_layout(
        title="Capital log-odds after the final period, both members of every pair",
        boxmode="group",
        xaxis_title="family",
        yaxis_title="log P(capital) − log P(lowercase)",
    )
    fig.update_xaxes(type="category", categoryarray=families)
    return plotly_spec(fig)


def transfer(t) -> dict:
    """Rows: whose circuit; columns: where it is verified; cell: faithfulness."""
    z = [[row.on[target].faithfulness for target in t.targets] for row in t.rows]
    text = [
        [f"{c.faithfulness:.2f} [{c.low:.2f}, {c.high:.2f}]" for c in (row.on[x] for x in t.targets)] for row in t.rows
    ]
    spec = heatmap(
        z,
        t.targets,
        [row.circuit for row in t.rows],
        f"Transfer: each family's circuit ({t.edges} edges) verified on every task",
        "verified on",
        "circuit of",
        colorbar="faithfulness",
        text=text,
    )
    data = spec["figure"]["data"][0]
    data.update(
        zmin=-1, zmax=1, texttemplate="%{text}", hovertemplate="circuit of %{y} on %{x}<br>f = %{text}<extra></extra>"
    )
    data.pop("zmid", None)
    return spec


def edge_label(e) -> str:
    return f"{node_name(e.writer)} → {node_name(e.reader)}"


def edge_sets(s) -> dict:
    """One row per edge in some family's circuit, a column per family: filled where that
    family's circuit holds the edge; the edges all families share first."""
    labels = [edge_label(e) for e in s.edges]
    z = [[1 if f in e.families else 0 for f in s.families] for e in s.edges]
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=s.families,
            y=labels,
            colorscale=[[0, "#f7f7f7"], [1, POSITIVE]],
            showscale=False,
            xgap=2,
            ygap=1,
            customdata=[[len(e.families)] * len(s.families) for e in s.edges],
            hovertemplate="%{y}<br>%{x}: %{z}<br>in %{customdata} families<extra></extra>",
        )
    )
    fig.update_layout(
        # no x-axis title: the axis sits on top, under the title, and its labels are the families
        title="Edges of the families' circuits: shared by all (top) to one family's own (bottom)",
        height=max(420, 16 * len(labels) + 140),
    )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", side="top")
    return plotly_spec(fig)
