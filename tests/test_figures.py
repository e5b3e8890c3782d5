"""Figures line up with the data they draw, cell by cell: every heatmap cell equals the stored
metric at its labelled row and column, on the committed results of every bundled model (the
figures are drawn render-side from the typed metrics, generator.figures)."""

from __future__ import annotations

import json

import pytest
from conftest import ROOT

from generator import figures, schemas
from generator.heads import head_name
from generator.models import BUNDLED, slug
from generator.patch_targets import TARGETS


def stored(model: str, experiment: str):
    record = json.loads((ROOT / "results" / slug(model) / f"{experiment}.json").read_text())
    return schemas.validate(experiment, record["metrics"])


def drawn(experiment: str, metrics, name: str) -> dict:
    return figures.build(experiment, name, metrics)["figure"]


def cells(trace: dict):
    """(row label, column label, value) of every cell of a plotly heatmap trace."""
    for i, row in enumerate(trace["z"]):
        for j, value in enumerate(row):
            yield trace["y"][i], trace["x"][j], value


@pytest.mark.parametrize("model", sorted(BUNDLED))
def test_patching_heatmaps_hold_each_sweep_cell_at_its_labels(model):
    m = stored(model, "patching")
    layers = {f"L{l}": l for l in range(m.n_layers)}
    for t in m.targets:
        axes, values = TARGETS[t].axes, m.sweeps[t]
        trace = drawn("patching", m, t)["data"][0]
        for row, column, value in cells(trace):
            if axes == ("layer", "pos"):
                expected = values[layers[row]][list(m.positions).index(column)]
            elif axes == ("layer", "head"):
                expected = values[layers[row]][int(column[1:])]
            else:  # rows are heads "LxHy", columns positions
                layer, head = (int(x) for x in row[1:].split("H"))
                pos = list(m.positions).index(column)
                expected = values[layer][head][pos] if axes[1] == "head" else values[layer][pos][head]
            assert value == expected, (t, row, column)


@pytest.mark.parametrize("model", sorted(BUNDLED))
def test_attribution_heads_and_breakdowns_line_up(model):
    m = stored(model, "attribution")
    trace = drawn("attribution", m, "heads")["data"][0]
    for row, column, value in cells(trace):
        assert value == m.heads.values[list(m.heads.layers).index(row)][list(m.heads.heads).index(column)]
    bars = drawn("attribution", m, "components")["data"][0]
    assert dict(zip(bars["x"], bars["y"])) == dict(zip(m.components.labels, m.components.values))
    for kind, table in m.breakdowns.items():
        trace = drawn("attribution", m, f"breakdown_{kind}")["data"][0]
        columns = ["logit diff"] + [head_name(h) for h in table.heads]
        assert list(trace["x"]) == columns
        for row, column, value in cells(trace):
            r = next(r for r in table.rows if r.group == row)
            assert value == (r.logit_diff if column == "logit diff" else r.heads[columns.index(column) - 1])


@pytest.mark.parametrize("model", sorted(BUNDLED))
def test_per_prompt_cells_are_their_prompts(model):
    m = stored(model, "baseline")
    fig = drawn("baseline", m, "per_prompt")
    by_cell = {(f"template {r.template + 1}", r.name): r for r in m.per_prompt}
    for k, trace in enumerate(fig["data"]):
        key = ("clean", "corrupted")[k]
        for i, row in enumerate(trace["z"]):
            for j, value in enumerate(row):
                r = by_cell[(trace["y"][i], trace["x"][j])]
                assert value == getattr(r, key)
                assert trace["text"][i][j] == f"#{r.index + 1}: {r.prompt}"


@pytest.mark.parametrize("model", sorted(BUNDLED))
def test_path_and_attention_figures_line_up(model):
    pp = stored(model, "path_patching")
    for s in pp.senders:
        if not s.grids:
            continue
        fig = drawn("path_patching", pp, s.figure)
        for trace in fig["data"]:
            component = trace["hovertemplate"].split("}.")[1][0]  # "… %{y}%{x}.q<br>…"
            for row, column, value in cells(trace):
                assert value == s.grids[component][int(row[1:])][int(column[1:])]
    at = stored(model, "attention")
    for g in at.groups:
        if not g.heads:
            continue
        for kind, pattern in (("example", g.pattern_example), ("mean", g.pattern_mean)):
            trace = drawn("attention", at, f"{g.group}_{kind}_final")["data"][0]
            assert list(trace["y"]) == [head_name(h) for h in g.heads]
            # the example on its own tokens; the mean over prompts by what each position holds
            assert list(trace["x"]) == list(at.positions if kind == "example" else at.mean_positions)
            assert [list(r) for r in trace["z"]] == [list(p[-1]) for p in pattern]
