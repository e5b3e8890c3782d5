"""Figure specs as plain JSON: plotly figures (built with plotly, stored as their JSON) and
circuitsvis calls. The site's loader draws them; colours follow the light/dark palette there."""

from __future__ import annotations

import json

import plotly.graph_objects as go

LAYOUT = dict(margin=dict(l=60, r=20, t=50, b=60), font=dict(size=13), template="none")
DEFAULT_HEIGHT = 420  # px; the page reserves no room for a figure without one


def plotly_spec(fig: go.Figure) -> dict:
    """The figure as JSON-ready data (plain lists, no numpy typed arrays)."""
    fig.update_layout(**LAYOUT)
    if fig.layout.height is None:
        fig.update_layout(height=DEFAULT_HEIGHT)
    return {"kind": "plotly", "figure": json.loads(fig.to_json(engine="json"))}


def heatmap(z, x, y, title, x_title, y_title, colorbar="logit diff", zmid=0.0, text=None) -> dict:
    """A diverging heatmap centred on `zmid` (blue negative, red positive)."""
    fig = go.Figure(
        go.Heatmap(
            z=z,
            x=x,
            y=y,
            zmid=zmid,
            colorscale="RdBu",
            reversescale=True,
            colorbar=dict(title=colorbar),
            text=text,
            hovertemplate="%{y} · %{x}<br>%{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title)
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return plotly_spec(fig)


def recovered_heatmap(z, x, y, title, x_title, y_title) -> dict:
    """A heatmap of normalised effects (0 = corrupted run, 1 = clean run) on a fixed colour
    scale from −1 to 1 (wider only where an effect exceeds it): the colour says how much of the
    clean behaviour a cell restores, so effects of a few millionths stay white instead of being
    stretched to full colour."""
    values = [abs(v) for row in z for v in row if v is not None]
    bound = max([1.0] + values)
    spec = heatmap(z, x, y, title, x_title, y_title, colorbar="recovered")
    spec["figure"]["data"][0].update(zmin=-bound, zmax=bound)
    spec["figure"]["data"][0].pop("zmid", None)
    return spec


def circuitsvis_spec(function: str, props: dict) -> dict:
    """A circuitsvis visualisation: the site calls CircuitsVis.render(element, function, props)."""
    return {"kind": "circuitsvis", "function": function, "props": props}


def stack_label(label: str) -> str:
    """TransformerLens's residual-stack labels ("3_attn_out", "3_mid", "final_post") as axis labels."""
    names = {"attn_out": "attn", "mlp_out": "MLP", "pre": "pre", "mid": "mid"}
    layer, _, kind = label.partition("_")
    if layer.isdigit():
        return f"L{layer} {names[kind]}"
    return {"final_post": "final"}.get(label, label)


def lens_lines(labels: list[str], series: dict[str, list[float]], title: str, y_title: str) -> dict:
    """One line per series over the residual stream's stages (a logit lens), with a zero line."""
    fig = go.Figure()
    for name, values in series.items():
        fig.add_trace(
            go.Scatter(
                x=labels,
                y=values,
                mode="lines+markers",
                name=name,
                hovertemplate="%{x}: %{y:.3f}<extra>" + name + "</extra>",
            )
        )
    fig.add_hline(y=0, line_width=1, line_color="grey")
    fig.update_layout(
        title=title,
        yaxis_title=y_title,
        xaxis_title="residual stream (before each attention layer, before each MLP, final)",
    )
    fig.update_xaxes(type="category")
    return plotly_spec(fig)
