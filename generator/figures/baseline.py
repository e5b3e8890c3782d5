"""The baseline page's figure: the logit difference of every prompt, clean and corrupted."""

from __future__ import annotations

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from generator.figures.plot import plotly_spec


def figures(m) -> dict:
    return {"per_prompt": lambda: per_prompt(m)}


def per_prompt(m) -> dict:
    """Two heatmaps (template × name), clean and corrupted, on one shared colour scale."""
    rows, names = m.per_prompt, list(m.names)
    templates = sorted({r.template for r in rows})
    fig = make_subplots(
        rows=1, cols=2, subplot_titles=("clean: “.”", "corrupted: “;”"), shared_yaxes=True, horizontal_spacing=0.04
    )
    lookup = {(r.template, r.name): r for r in rows}
    bound = max(abs(getattr(r, k)) for r in rows for k in ("clean", "corrupted"))
    for col, key in enumerate(("clean", "corrupted"), start=1):
        # a task need not be a full grid: a missing (template, name) cell is a gap
        cells = [[lookup.get((t, n)) for n in names] for t in templates]
        z = [[getattr(c, key) if c else None for c in row] for row in cells]
        text = [[f"#{c.index + 1}: {c.prompt}" if c else "" for c in row] for row in cells]
        fig.add_trace(
            go.Heatmap(
                z=z,
                x=names,
                y=[f"template {t + 1}" for t in templates],
                text=text,
                zmin=-bound,
                zmax=bound,
                colorscale="RdBu",
                reversescale=True,
                showscale=col == 2,
                colorbar=dict(title="logit diff"),
                hovertemplate="%{text}<br>logit diff %{z:.2f}<extra>" + key + "</extra>",
            ),
            row=1,
            col=col,
        )
    fig.update_xaxes(type="category", tickangle=-45)
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_layout(title="Logit difference (capital − lowercase) per prompt", height=380)
    return plotly_spec(fig)
