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
    fig = go.Figure(go.Heatmap(z=z, x=x, y=y, zmid=zmid, colorscale="RdBu", reversescale=True,
                               colorbar=dict(title=colorbar), text=text,
                               hovertemplate="%{y} · %{x}<br>%{z:.3f}<extra></extra>"))
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title)
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category")
    return plotly_spec(fig)


def circuitsvis_spec(function: str, props: dict) -> dict:
    """A circuitsvis visualisation: the site calls CircuitsVis.render(element, function, props)."""
    return {"kind": "circuitsvis", "function": function, "props": props}
