"""The exceptions page's figures: capital log-odds per family, and the logit lens per family."""

from __future__ import annotations

import plotly.graph_objects as go

from generator.figures.plot import NEGATIVE, POSITIVE, lens_lines, plotly_spec


def figures(m) -> dict:
    return {
        "families": lambda: families(m),
        "logit_lens": lambda: lens_lines(
            m.lens.labels,
            m.lens.families,
            "Logit lens on the exceptions: capital log-odds per family",
            "log P(capital) − log P(lowercase)",
        ),
    }


def families(m) -> dict:
    """A bar per family (its mean capital log-odds) with every prompt as a dot on top."""
    names = [f.family for f in m.families]
    fig = go.Figure(
        go.Bar(
            x=names,
            y=[f.mean_log_odds for f in m.families],
            name="family mean",
            marker_color=[POSITIVE if f.expected == "capital" else NEGATIVE for f in m.families],
            opacity=0.6,
            hovertemplate="%{x}: mean %{y:.2f}<extra></extra>",
        )
    )
    fig.add_trace(
        go.Scatter(
            x=[r.family for r in m.per_prompt],
            y=[r.log_odds for r in m.per_prompt],
            mode="markers",
            name="prompt",
            text=[r.prompt for r in m.per_prompt],
            marker=dict(color="black", size=6),
            hovertemplate="%{text}<br>capital log-odds %{y:.2f}<extra></extra>",
        )
    )
    fig.add_hline(y=0, line_width=1, line_color="grey")
    fig.update_layout(
        title="Capital log-odds after the period, per family",
        xaxis_title="family (red: English expects a capital, blue: lowercase)",
        yaxis_title="log P(capital) − log P(lowercase)",
        showlegend=False,
    )
    fig.update_xaxes(type="category", categoryarray=names)
    return plotly_spec(fig)
