"""The sentence-end page's figures: the mean logit difference per final token (with its
interval), the top neurons' cumulative share of the MLPs' effect, the probe's held-out accuracy
per residual stream, and the steering curves against the random direction."""

from __future__ import annotations

import plotly.graph_objects as go

from generator.figures.plot import NEGATIVE, POSITIVE, plotly_spec

ENDING_LABELS = {"": "(none)"}


def figures(m) -> dict:
    out = {"endings": lambda: endings(m), "probe": lambda: probe(m), "steering": lambda: steering(m)}
    for c in m.neurons.contrasts:
        out[f"neurons_{c.name}"] = lambda c=c: top_k(c)
    return out


def error_bars(values: list[float], bands: list) -> dict:
    """Plotly's asymmetric error bars from each value's [low, high] interval."""
    return dict(
        type="data",
        symmetric=False,
        array=[b[1] - v for v, b in zip(values, bands)],
        arrayminus=[v - b[0] for v, b in zip(values, bands)],
    )


def label(ending: str) -> str:
    return ENDING_LABELS.get(ending, f"“{ending}”")


def endings(m) -> dict:
    rows = m.endings.rows
    fig = go.Figure(
        go.Bar(
            x=[label(r.ending) for r in rows],
            y=[r.logit_diff for r in rows],
            error_y=error_bars([r.logit_diff for r in rows], [r.logit_diff_ci for r in rows]),
            marker_color=[POSITIVE if r.sentence_end else NEGATIVE for r in rows],
            hovertemplate="%{x}: %{y:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        title="Mean logit difference (capital − lowercase pronoun) by final token",
        xaxis_title="final token (red: sentence end)",
        yaxis_title="mean logit difference",
    )
    fig.update_xaxes(type="category")
    return plotly_spec(fig)


def top_k(c) -> dict:
    fig = go.Figure(
        go.Scatter(
            x=[t.k for t in c.top_k],
            y=[t.share for t in c.top_k],
            mode="lines+markers",
            hovertemplate="top %{x}: %{y:.3f}<extra></extra>",
        )
    )
    fig.add_hline(y=1, line_width=1, line_dash="dot", line_color="grey")
    fig.update_layout(
        title="Share of the MLPs' exact effect carried by the top-k neurons patched together",
        xaxis_title="neurons patched (top k by attribution)",
        yaxis_title="share of the effect",
    )
    fig.update_xaxes(type="log")
    return plotly_spec(fig)


def probe(m) -> dict:
    streams = m.probe.streams
    x = [s.stream for s in streams]
    fig = go.Figure()
    series = [("all held-out examples", "test", "test_ci"), ("those ending in “.”", "period_test", "period_test_ci")]
    if streams[0].pairs_test is not None:
        series.append(("contrast pairs' members", "pairs_test", "pairs_test_ci"))
    for name, field, ci in series:
        values = [getattr(s, field) for s in streams]
        bands = [getattr(s, ci) for s in streams]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=values,
                mode="lines+markers",
                name=name,
                error_y=error_bars(values, bands),
            )
        )
    fig.add_hline(y=m.probe.present, line_width=1, line_dash="dot", line_color="grey")
    fig.update_layout(
        title="Held-out accuracy of the sentence-end probe per residual stream (final position)",
        xaxis_title="residual stream (before each layer, final)",
        yaxis_title="accuracy",
    )
    fig.update_xaxes(type="category")
    return plotly_spec(fig)


def steering(m) -> dict:
    s = m.probe.steering
    fig = go.Figure()
    series = (
        ("exception prompts, probe direction", s.exceptions_probe, POSITIVE, "solid"),
        ("exception prompts, random direction", s.exceptions_random, POSITIVE, "dot"),
        ("sentence ends, probe direction", s.sentence_ends_probe, NEGATIVE, "solid"),
        ("sentence ends, random direction", s.sentence_ends_random, NEGATIVE, "dot"),
    )
    for name, curve, colour, dash in series:
        fig.add_trace(
            go.Scatter(
                x=s.coefficients,
                y=curve.mean,
                mode="lines+markers",
                name=name,
                line=dict(color=colour, dash=dash),
                error_y=error_bars(curve.mean, list(zip(curve.low, curve.high))),
            )
        )
    fig.add_hline(y=0, line_width=1, line_color="grey")
    fig.update_layout(
        title=f"Steering at {s.stream}: capital log-odds by coefficient",
        xaxis_title="coefficient (× the gap between the classes' mean projections)",
        yaxis_title="mean capital log-odds",
    )
    return plotly_spec(fig)
