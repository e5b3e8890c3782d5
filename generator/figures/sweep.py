"""The sweep page's figure: every model's key numbers against its size or training step, one
panel per number on a shared x axis (log where the sweep says so), from generator.sweep."""

from __future__ import annotations

import html

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from generator.figures.circuit import COLOURS, METHOD_NAMES
from generator.figures.plot import NEGATIVE, POSITIVE, plotly_spec

AXIS_TITLES = {"parameters": "parameters", "step": "training step"}
PANELS = (
    "logit difference",
    "faithfulness of the smallest faithful circuit",
    "CPR of each method",
    "share of heads among the circuit's nodes",
    "edge overlap with the previous model's circuit",
)


def figure(data: dict) -> dict:
    rows = data["rows"]
    x = [r["order"] for r in rows]
    # every point's hover names the model's top components too (categories, not a y value)
    # (a label is the user's text: escaped, since plotly reads tags in hover text)
    labels = [
        f"{html.escape(r['label'])}<br>top head (DLA): {r['top_head'] or '–'}<br>"
        f"top circuit edge: {html.escape(r['top_edge'] or '–')}"
        for r in rows
    ]
    fig = make_subplots(rows=len(PANELS), cols=1, shared_xaxes=True, subplot_titles=PANELS, vertical_spacing=0.05)

    def line(panel: int, key, name: str, colour: str, fmt: str = ".3f") -> None:
        y = [key(r) for r in rows]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                text=labels,
                name=name,
                mode="lines+markers",
                line=dict(color=colour),
                connectgaps=False,  # a model without that result leaves a gap, not a made-up line
                hovertemplate="%{text}<br>%{y:" + fmt + "}<extra>" + name + "</extra>",
            ),
            row=panel,
            col=1,
        )

    line(1, lambda r: r["clean"], "clean (after '.')", POSITIVE)
    line(1, lambda r: r["corrupted"], "corrupted (after ';')", NEGATIVE)
    line(2, lambda r: r["faithfulness"], "faithfulness", "#444444")
    for method in data["methods"]:
        line(3, lambda r, m=method: r["cpr"].get(m), f"CPR {METHOD_NAMES[method]}", COLOURS[method])
    line(4, lambda r: r["head_share"], "heads / (heads + MLPs)", "#8c564b", ".0%")
    line(5, lambda r: r["overlap"], "edge overlap (Jaccard)", "#17becf", ".0%")
    fig.add_hline(y=0, line_width=1, line_color="grey", row=1, col=1)
    fig.update_xaxes(type="log" if data["log_axis"] else "linear")
    fig.update_xaxes(title_text=AXIS_TITLES[data["axis"]], row=len(PANELS), col=1)
    fig.update_layout(title=data["title"], height=260 * len(PANELS), legend=dict(orientation="h", y=-0.05))
    return plotly_spec(fig)
