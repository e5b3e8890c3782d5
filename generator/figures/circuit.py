"""The circuit page's figures: faithfulness curves with their intervals, and the interactive
circuit graph (plotly, drawn offline): nodes by layer (embedding → L0 … → logits) and
component (heads, MLP), per position for the position-aware graph; edge width by |score|,
colour by sign; hover with the score and the exact effect; a slider over circuit size."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from generator.figures.plot import NEGATIVE, POSITIVE, plotly_spec
from generator.heads import node_name

METHOD_NAMES = {
    "eap": "EAP (MIB)",
    "attribution_patching": "attribution patching",
    "eap_ig": "EAP-IG",
    "exact_node": "exact node ranking",
    "random": "random",
}
COLOURS = {
    "eap": "#1f77b4",
    "attribution_patching": "#9467bd",
    "eap_ig": "#d62728",
    "exact_node": "#2ca02c",
    "random": "#7f7f7f",
}


def figures(m) -> dict:
    shape = m.graph_shape
    out = {
        "faithfulness": lambda: curves(m.methods, list(m.fractions), m.n_edges, "position-agnostic graph"),
        "graph": lambda: graph(
            m.drawn, sizes(m.methods), m.selected_edges, m.faithful, shape.n_layers, shape.n_heads, shape.n_pos, False
        ),
    }
    if m.by_position is not None:
        position = m.by_position
        methods = {name: getattr(position, name) for name in METHOD_NAMES if getattr(position, name) is not None}
        out["faithfulness_by_position"] = lambda: curves(
            methods, list(m.fractions), m.n_edges_by_position, "position-aware graph"
        )
        out["graph_by_position"] = lambda: graph(
            position.drawn, sizes(methods), None, m.faithful, shape.n_layers, shape.n_heads, shape.n_pos, True
        )
    return out


def sizes(methods: dict) -> list[int]:
    """The edge counts of MIB's circuit sizes (every method's curve is evaluated at them)."""
    return list(methods["eap_ig"].cmd.sizes)


def curves(table: dict, fractions: list[float], n_edges: int, graph: str) -> dict:
    """f against circuit size for each method, signed ranking (CPR) left and |score| (CMD)
    right, each with its bootstrap interval (random: the range over seeds)."""
    fig = make_subplots(
        rows=1,
        cols=2,
        shared_yaxes=True,
        horizontal_spacing=0.05,
        subplot_titles=("ranked by score (CPR)", "ranked by |score| (CMD)"),
    )
    for col, kind in enumerate(("cpr", "cmd"), start=1):
        for name, row in table.items():
            c = getattr(row, kind, None)
            if name not in METHOD_NAMES or c is None:
                continue
            x = list(fractions)  # MIB's nominal sizes (the areas integrate over these)
            colour = COLOURS[name]
            fig.add_trace(
                go.Scatter(
                    x=x + x[::-1],
                    y=list(c.high) + list(c.low)[::-1],
                    fill="toself",
                    line=dict(width=0),
                    fillcolor=colour,
                    opacity=0.15,
                    hoverinfo="skip",
                    showlegend=False,
                    legendgroup=name,
                ),
                row=1,
                col=col,
            )
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=c.faithfulness,
                    mode="lines+markers",
                    name=METHOD_NAMES[name],
                    line=dict(color=colour),
                    legendgroup=name,
                    showlegend=col == 1,
                    customdata=c.sizes,
                    hovertemplate="%{customdata} edges (%{x:.1%})<br>f = %{y:.3f}<extra>"
                    + METHOD_NAMES[name]
                    + "</extra>",
                ),
                row=1,
                col=col,
            )
        fig.add_hline(y=1, line_width=1, line_dash="dot", line_color="grey", row=1, col=col)
        fig.add_hline(y=0, line_width=1, line_color="grey", row=1, col=col)
    # one short x title per panel: two long ones side by side run into each other
    fig.update_xaxes(type="log", tickformat=".1%", title_text="edges kept (log scale)")
    fig.update_yaxes(title_text="faithfulness f", row=1, col=1)
    fig.update_layout(title=f"Faithfulness against circuit size, {graph} ({n_edges} edges)", height=440)
    return plotly_spec(fig)


def node_xy(node: dict, n_heads: int, n_layers: int, position: int | None, n_positions: int) -> tuple[float, float]:
    """Layout: columns embed, L0 heads, MLP0, L1 heads, …, logits; heads stacked, the MLP
    below them; for the position-aware graph one band per position (the last on top)."""
    kind = node["kind"]
    band = (position or 0) * (n_heads + 2)
    middle = band + (n_heads - 1) / 2
    if kind == "embed":
        return 0.0, middle
    if kind == "logits":
        return 2.0 * n_layers + 1, middle
    if kind == "mlp":
        return 2.0 * node["layer"] + 2, band - 1.0
    return 2.0 * node["layer"] + 1, band + node["head"]  # a head (or one of its q/k/v inputs)


def graph(
    drawn,
    sizes: list[int],
    selected: int | None,
    faithful: float,
    n_layers: int,
    n_heads: int,
    n_pos: int,
    position_aware: bool,
) -> dict:
    """The drawn edges (EAP-IG, by |score|) with a slider over the circuit sizes up to them."""
    # edges as plain data: their nodes' fields depend on the kind (the embedding has no layer)
    edges = [e.model_dump(exclude_none=True) for e in drawn.edges]
    positions = sorted({e.get("position", 0) for e in edges}) if position_aware else [None]
    largest = max([abs(e["score"]) for e in edges] + [1e-12])
    fig = go.Figure()
    for e in edges:
        fig.add_trace(edge_trace(e, largest, n_heads, n_layers, n_pos))
    fig.add_trace(node_trace(positions, n_heads, n_layers, n_pos))
    # MIB's smallest sizes can keep no edge: no slider step for an empty circuit
    steps_at = sorted({n for n in sizes if 0 < n <= len(edges)} | ({selected} if selected else set()) | {len(edges)})
    steps = []
    for n in steps_at:
        visible = [i < n for i in range(len(edges))] + [True]
        label = f"{n}" + (f" (f ≥ {faithful})" if n == selected else "")
        steps.append(dict(method="restyle", args=[{"visible": visible}], label=label))
    active = steps_at.index(selected) if selected in steps_at else len(steps_at) - 1
    for i, trace in enumerate(fig.data[:-1]):
        trace.visible = i < steps_at[active]
    ticks = (
        [0.0] + [2.0 * l + 1 for l in range(n_layers)] + [2.0 * l + 2 for l in range(n_layers)] + [2.0 * n_layers + 1]
    )
    labels = ["embed"] + [f"L{l} heads" for l in range(n_layers)] + [f"MLP{l}" for l in range(n_layers)] + ["logits"]
    fig.update_xaxes(tickvals=ticks, ticktext=labels, showgrid=False, zeroline=False)
    fig.update_yaxes(
        showticklabels=position_aware,
        showgrid=False,
        zeroline=False,
        tickvals=[(p or 0) * (n_heads + 2) + (n_heads - 1) / 2 for p in positions] if position_aware else None,
        ticktext=[f"position {p}" for p in positions] if position_aware else None,
    )
    fig.update_layout(
        title="The circuit by EAP-IG: " + ("one edge per position" if position_aware else "edges between components"),
        height=520 if not position_aware else 200 + 170 * len(positions),
        sliders=[dict(active=active, currentvalue=dict(prefix="edges kept: "), pad=dict(t=40), steps=steps)],
        margin=dict(l=60, r=20, t=60, b=80),
    )
    return plotly_spec(fig)


def edge_trace(e: dict, largest: float, n_heads: int, n_layers: int, n_pos: int) -> go.Scatter:
    """One edge: a line from writer to reader (dash by reader kind, width by |score|, colour by
    sign) with a hover marker at its midpoint."""
    p = e.get("position")
    (x0, y0), (x1, y1) = (node_xy(n, n_heads, n_layers, p, n_pos) for n in (e["writer"], e["reader"]))
    dash = {"q": "solid", "k": "dot", "v": "dash"}.get(e["reader"]["kind"], "solid")
    where = f" at position {p}" if p is not None else ""
    exact = f"<br>exact effect {e['exact_effect']:.4f}" if "exact_effect" in e else ""
    label = f"{node_name(e['writer'])} → {node_name(e['reader'])}{where}<br>EAP-IG score {e['score']:.4f}{exact}"
    return go.Scatter(
        x=[x0, (x0 + x1) / 2, x1],
        y=[y0, (y0 + y1) / 2, y1],
        mode="lines+markers",
        line=dict(width=1 + 7 * abs(e["score"]) / largest, color=POSITIVE if e["score"] > 0 else NEGATIVE, dash=dash),
        marker=dict(size=[0, 7, 0], color=POSITIVE if e["score"] > 0 else NEGATIVE),
        hovertext=["", label, ""],
        hoverinfo="text",
        showlegend=False,
        opacity=0.75,
    )


def node_trace(positions: list, n_heads: int, n_layers: int, n_pos: int) -> go.Scatter:
    """Every node (embed, heads, MLPs, logits; per position when position-aware) as a grey dot."""
    nodes = [("embed", None), ("logits", None)] + [
        (("head", l, h), None) for l in range(n_layers) for h in range(n_heads)
    ]
    nodes += [(("mlp", l), None) for l in range(n_layers)]
    xs, ys, text = [], [], []
    for p in positions:
        for node, _ in nodes:
            ident = {"kind": node} if isinstance(node, str) else dict(zip(("kind", "layer", "head"), node))
            x, y = node_xy(ident, n_heads, n_layers, p, n_pos)
            xs.append(x)
            ys.append(y)
            text.append(node_name(ident) + (f" at position {p}" if p is not None else ""))
    return go.Scatter(
        x=xs,
        y=ys,
        mode="markers",
        marker=dict(size=9, color="#888888", symbol="circle"),
        hovertext=text,
        hoverinfo="text",
        showlegend=False,
    )
