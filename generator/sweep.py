"""The sweep page's numbers: each model of a `sweep:` (sizes of a family, checkpoints of a
training run) in its order, with the key numbers of its stored results, when the behaviour
and the circuit appear, and how stable the circuit is between consecutive models.

Torch-free (render side). Every value is computed here from the typed metrics;
templates/sweep.md.j2 only words it, so a sentence can never claim what the numbers do not."""

from __future__ import annotations

from generator.heads import head_name, node_name

# consecutive circuits sharing at least this share of their edges (Jaccard) are called stable
STABLE_OVERLAP = 0.5
METHODS = ("eap", "attribution_patching", "eap_ig", "exact_node", "random")


def edge_id(edge) -> str:
    return f"{node_name(edge.writer)}→{node_name(edge.reader)}"


def overlap(a: set[str], b: set[str]) -> float:
    """Jaccard overlap of two edge sets (1 when both are empty: nothing changed)."""
    return len(a & b) / len(a | b) if a | b else 1.0


def model_row(model: str, label: str, order: float, records: dict) -> dict:
    """One model's key numbers; None where the experiment that gives it did not run (or was
    skipped) for this model."""
    b = records["baseline"]["metrics"] if "baseline" in records else None
    a = records["attribution"]["metrics"] if "attribution" in records else None
    c = records["circuit"]["metrics"] if "circuit" in records else None
    smallest = c.circuit.smallest_faithful if c else None
    nodes = (len(c.circuit.heads), len(c.circuit.mlps)) if c else (0, 0)
    return {
        "model": model,
        "label": label,
        "order": order,
        "clean": b.mean_logit_diff if b else None,
        "corrupted": b.mean_logit_diff_corrupted if b else None,
        "performs": b.performs_task if b else None,
        "faithful_edges": smallest.edges if smallest else None,
        "faithfulness": smallest.faithfulness if smallest else None,
        "has_circuit": None if c is None else smallest is not None,
        "cpr": {m: c.methods[m].cpr.area for m in METHODS if c and m in c.methods},
        "heads": nodes[0] if c else None,
        "mlps": nodes[1] if c else None,
        "head_share": nodes[0] / sum(nodes) if c and sum(nodes) else None,
        "top_head": head_name(a.top_positive[0]) if a and a.top_positive else None,
        "top_edge": edge_id(c.circuit.edges[0]) if c and c.circuit.edges else None,
        "edges": {edge_id(e) for e in c.circuit.edges} if c else None,
        "overlap": None,  # with the previous model's circuit, filled in by sweep()
    }


def first_from(rows: list[dict], key: str) -> dict | None:
    """The first row from which `key` is true for that row and every later one (None when the
    last row's is not true: the property has not appeared by the end of the sweep)."""
    found = None
    for row in reversed(rows):
        if not row[key]:
            break
        found = row
    return found


def sweep(config, results: dict) -> dict:
    """The sweep's rows in order, with what the page says of them."""
    rows = [model_row(m.model, m.label or m.model, m.order, results.get(m.model, {})) for m in config.sweep.models]
    for row in rows:  # a circuit is read only where there is a behaviour for it to explain
        row["explained"] = bool(row["performs"] and row["has_circuit"])
    for prev, row in zip(rows, rows[1:]):
        if prev["edges"] is not None and row["edges"] is not None:
            row["overlap"] = overlap(prev["edges"], row["edges"])
    # stability: between consecutive models that both perform the task with a faithful circuit
    overlaps = [
        r for prev, r in zip(rows, rows[1:]) if r["overlap"] is not None and prev["explained"] and r["explained"]
    ]
    measured = [r for r in rows if r["performs"] is not None]
    with_circuit = [r for r in rows if r["has_circuit"] is not None and r["performs"] is not None]
    return {
        "title": config.sweep.title,
        "axis": config.sweep.axis,
        "log_axis": config.sweep.log_axis,
        "rows": rows,
        "methods": [m for m in METHODS if any(m in r["cpr"] for r in rows)],
        "behaviour_from": first_from(measured, "performs") if measured else None,
        "behaviour_measured": len(measured),
        "circuit_from": first_from(with_circuit, "explained") if with_circuit else None,
        "circuit_measured": len(with_circuit),
        "stable_overlap": STABLE_OVERLAP,
        "overlaps": len(overlaps),
        "least_overlap": min(overlaps, key=lambda r: r["overlap"]) if overlaps else None,
        "stable": bool(overlaps) and all(r["overlap"] >= STABLE_OVERLAP for r in overlaps),
        "top_heads": sorted({r["top_head"] for r in rows if r["top_head"]}),
    }
