"""The attribution pages' figures: the logit lens, DLA per component and per head, and the
breakdowns of the top heads by template, name and gender."""

from __future__ import annotations

from generator.figures.plot import heatmap, lens_lines, signed_bars
from generator.heads import head_name


def figures(m) -> dict:
    out = {
        "logit_lens": lambda: lens_lines(
            m.lens.labels,
            {"clean: “.”": m.lens.clean, "corrupted: “;”": m.lens.corrupted},
            "Logit lens: logit difference read from the residual stream",
            "logit diff (capital − lowercase)",
        ),
        "components": lambda: signed_bars(
            m.components.labels,
            m.components.values,
            "Direct logit attribution per component (mean over prompts)",
            "component",
            "logit diff attribution",
        ),
        "heads": lambda: heatmap(
            m.heads.values,
            m.heads.heads,
            m.heads.layers,
            "Direct logit attribution per head (mean over prompts)",
            "head",
            "layer",
        ),
    }
    for kind, table in m.breakdowns.items():
        out[f"breakdown_{kind}"] = lambda kind=kind, table=table: breakdown(kind, table)
    return out


def breakdown(kind: str, table) -> dict:
    columns = ["logit diff"] + [head_name(h) for h in table.heads]
    return heatmap(
        [[r.logit_diff] + list(r.heads) for r in table.rows],
        columns,
        [r.group for r in table.rows],
        f"Logit difference and top heads' attribution per {kind}",
        "logit difference, then each top head's attribution",
        kind,
        colorbar="logits",
    )
