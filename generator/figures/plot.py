"""The figure kinds every page uses, as plain JSON specs: plotly figures (built with plotly,
embedded as their JSON) and circuitsvis calls. The site's loader draws them; colours follow the
light/dark palette there. Render side only: no result's cache key depends on this module."""

from __future__ import annotations

import json

import plotly.graph_objects as go

LAYOUT = dict(margin=dict(l=60, r=20, t=50, b=60), font=dict(size=13), template="none")
DEFAULT_HEIGHT = 420  # px; the page reserves no room for a figure without one
POSITIVE, NEGATIVE = "#b2182b", "#2166ac"  # towards the capital / the lowercase answer


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


def scatter(series: dict, title: str, x_title: str, y_title: str) -> dict:
    """One point per item, a trace per series ({name: (x, y, hover labels)}), with the y = x
    diagonal for reference."""
    fig = go.Figure()
    values: list[float] = []
    for name, (x, y, labels) in series.items():
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                text=labels,
                mode="markers",
                name=name,
                hovertemplate="%{text}<br>x %{x:.3f}<br>y %{y:.3f}<extra>" + name + "</extra>",
            )
        )
        values += list(x) + list(y)
    low, high = min(values + [0.0]), max(values + [1.0])
    fig.add_trace(
        go.Scatter(
            x=[low, high],
            y=[low, high],
            mode="lines",
            name="y = x",
            line=dict(dash="dot", color="gray"),
            hoverinfo="skip",
        )
    )
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title, height=480)
    return plotly_spec(fig)


def signed_bars(labels: list[str], values: list[float], title: str, x_title: str, y_title: str) -> dict:
    """A bar per label, red where positive (towards the capital), blue where not."""
    fig = go.Figure(
        go.Bar(
            x=labels,
            y=values,
            marker_color=[POSITIVE if v > 0 else NEGATIVE for v in values],
            hovertemplate="%{x}: %{y:.3f}<extra></extra>",
        )
    )
    fig.update_layout(title=title, xaxis_title=x_title, yaxis_title=y_title)
    fig.update_xaxes(type="category")
    return plotly_spec(fig)
