"""What the contrast page says, computed from the contrast experiment's stored metrics.

Torch-free (render side). `contrast_findings(metrics)` turns the numbers into the page's claims:
per family whether there is a contrast to explain, its circuit's size and faithfulness, the
heads that move the deciding context to the final "." (with where they read and whether their
attention tells the two members apart, interval against interval), and for the transfer matrix
which circuits carry over to which tasks. The template only words these records, so a sentence
never names a head or a family the numbers do not.
"""

from __future__ import annotations

from generator.heads import head_name, node_name

# a head "reads the deciding words" where most pairs' differing words sit at the position the
# circuit keeps its key / value input
DECIDING = 0.5


def offset_name(offset: int) -> str:
    """A position counted back from the final token: -1 -> 'the token before the final period'."""
    return "the token before the final period" if offset == -1 else f"{-offset} tokens before the final period"


def mover(m) -> dict:
    """One head's record: where the circuit keeps its key / value input, and its attention."""
    exc, end = m.attention["exception"], m.attention["end"]
    read = m.reads[0] if m.reads else None
    return {
        "name": head_name(m),
        "reads": offset_name(read.offset) if read else None,
        "deciding": read.deciding if read else None,
        "reads_deciding": bool(read and read.deciding >= DECIDING),
        "exception": exc,
        "end": end,
        # the attention to the differing words differs between the members beyond both intervals
        "attends_more": exc.low > end.high,
        "attends_less": exc.high < end.low,
    }


def family(f, faithful: float) -> dict:
    out = {"family": f.family, "has_contrast": f.has_contrast, "circuit": None, "movers": [], "context": []}
    if f.circuit is None:
        return out
    c = f.circuit
    position = c.by_position
    out["circuit"] = {
        "smallest": c.smallest_faithful,
        "n_edges": c.n_edges,
        "cpr": c.methods["eap_ig"].cpr,
        "cmd": c.methods["eap_ig"].cmd,
        "random_cpr": c.methods["random"].cpr,
        "beats_random": c.methods["eap_ig"].cpr.area_ci[0] > c.methods["random"].cpr.area_ci[1],
        "position_smallest": position.smallest_faithful if position else None,
        "position_n_edges": position.n_edges if position else None,
        "position_edges": len(position.circuit.edges) if position else None,
    }
    out["movers"] = [mover(m) for m in f.movers or []]
    # the context movers: heads whose output at the final position is in the circuit, whose key /
    # value input is kept at the deciding words in most pairs, AND whose attention to them differs
    # between the members. One piece of evidence alone makes a candidate, not a mover: a head that
    # reads no earlier position cannot carry the words, and one whose attention is the same in both
    # members carries them in both.
    out["context"] = [m for m in out["movers"] if m["reads_deciding"] and (m["attends_more"] or m["attends_less"])]
    return out


def transfer(t, faithful: float) -> dict | None:
    """Per circuit: its own faithfulness at the shared size, and the tasks where the lower
    bound of its faithfulness reaches `faithful` (it carries over) or the upper bound stays
    below half of it (it does not)."""
    if t is None:
        return None
    rows = []
    for row in t.rows:
        own = row.on[row.circuit]
        others = {k: v for k, v in row.on.items() if k != row.circuit}
        rows.append(
            {
                "circuit": row.circuit,
                "own": own,
                "carries": [k for k, v in others.items() if v.low >= faithful],
                "fails": [k for k, v in others.items() if v.high < faithful / 2],
                "pronoun": row.on["pronoun"],
            }
        )
    return {"rows": rows, "edges": t.edges, "fraction": t.fraction}


def shared(s) -> dict | None:
    if s is None:
        return None
    everyone = [e for e in s.edges if len(e.families) == len(s.families)]
    return {
        "families": s.families,
        "n_union": len(s.edges),
        "shared": [f"{node_name(e.writer)} → {node_name(e.reader)}" for e in everyone],
        "specific": dict(s.specific),
    }


def contrast_findings(m) -> dict:
    families = [family(f, m.faithful) for f in m.families]
    return {
        "families": families,
        "explained": [f["family"] for f in families if f["circuit"] is not None],
        "unexplained": [f["family"] for f in families if f["circuit"] is None],
        "context_heads": sorted({h["name"] for f in families for h in f["context"]}),
        "transfer": transfer(m.transfer, m.faithful),
        "shared": shared(m.edge_sets),
    }
