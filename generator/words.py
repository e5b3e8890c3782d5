"""How the report words what the experiments stored: display names and the models
comparison. Torch-free; the templates reach these as Jinja filters and globals, so a template
prints and never decides a threshold or spells a head name itself."""

from __future__ import annotations

from generator import reproduction
from generator.contrast_findings import contrast_findings
from generator.disclosure import disclosure
from generator.findings import findings
from generator.heads import GROUPS, group_layers, head_name, node_name
from generator.patch_targets import TARGETS

COMPONENTS = {"q": "query", "k": "key", "v": "value"}
COMPONENTS_PLURAL = {"q": "queries", "k": "keys", "v": "values"}


def target_title(target: str) -> str:
    """A patching target's display title ("head_out" -> "Head output (all positions)")."""
    return TARGETS[target].title


def join_words(items, last: str = "and") -> str:
    """'a', 'a and b', 'a, b and c'."""
    items = [str(i) for i in items]
    if len(items) <= 1:
        return "".join(items)
    return f"{', '.join(items[:-1])} {last} {items[-1]}"


def compare_models(results: dict[str, dict]) -> dict:
    """The models page's comparison: per model its period effect (clean minus corrupted mean
    logit difference), and which model has the strongest effect and the largest clean logit
    difference. `results`: {model: {experiment: record}}, each record's metrics typed
    (generator.schemas)."""
    rows = []
    for model, records in results.items():
        if "baseline" not in records:
            continue
        b = records["baseline"]["metrics"]
        rows.append(
            {
                "model": model,
                "clean": b.mean_logit_diff,
                "corrupted": b.mean_logit_diff_corrupted,
                "effect": b.mean_logit_diff - b.mean_logit_diff_corrupted,
            }
        )
    if not rows:
        return {"rows": [], "strongest": None, "largest_clean": None}
    return {
        "rows": rows,
        "strongest": max(rows, key=lambda r: r["effect"]),
        "largest_clean": max(rows, key=lambda r: r["clean"]),
    }


def cell_name(index: dict, positions: list[str]) -> str:
    """A sweep cell by its stored index: 'L3 · ._7', 'L2H1', 'L2H1 · John_1'."""
    where = head_name(index) if "head" in index else f"L{index['layer']}"
    return f"{where} · {positions[index['pos']]}" if "pos" in index else where


READER_KINDS = {
    "q": ("query input", "query inputs"),
    "k": ("key input", "key inputs"),
    "v": ("value input", "value inputs"),
    "mlp": ("MLP input", "MLP inputs"),
    "logits": ("edge into the logits", "edges into the logits"),
}


def reader_counts(kinds: dict[str, int]) -> str:
    """{"q": 3, "logits": 1} -> '3 query inputs and 1 edge into the logits'."""
    return join_words(f"{kinds[k]} {READER_KINDS[k][kinds[k] != 1]}" for k in READER_KINDS if kinds.get(k))


def receiver_name(node) -> str:
    """A path's receiver in words: "L2H1's value input", "MLP0", "the logits"."""
    kind = node["kind"] if isinstance(node, dict) else node.kind
    if kind == "logits":
        return "the logits"
    if kind == "mlp":
        return node_name(node)
    return f"{head_name(node)}'s {COMPONENTS[kind]} input"


RECEIVER_KINDS = {"mlp": "the MLPs' inputs", "logits": "the logits directly"}


def receiver_kinds(components) -> str:
    """Path patching's receiver kinds in words: "later heads' query, key and value inputs,
    the MLPs' inputs and the logits directly"."""
    inputs = [COMPONENTS[c] for c in components if c in COMPONENTS]
    parts = [f"later heads' {join_words(inputs)} inputs"] if inputs else []
    return join_words(parts + [RECEIVER_KINDS[c] for c in components if c in RECEIVER_KINDS])


def route_phrase(route) -> str:
    """Where a sender's effect runs, from its route (path-patching steps, strongest first):
    'through MLP0 (0.347, 68% of it) and straight to the logits (0.0253, 5%)'."""
    parts = []
    for i, step in enumerate(route):
        node = step["receiver"] if isinstance(step, dict) else step.receiver
        effect = step["effect"] if isinstance(step, dict) else step.effect
        share = step["share"] if isinstance(step, dict) else step.share
        kind = node["kind"] if isinstance(node, dict) else node.kind
        where = "straight to the logits" if kind == "logits" else f"through {receiver_name(node)}"
        parts.append(f"{where} ({effect:.3g}, {100 * share:.0f}%{' of it' if i == 0 else ''})")
    return join_words(parts)


def layer_range(layers: list[int]) -> str:
    """'L0–L6', 'L7', or 'none'."""
    if not layers:
        return "none"
    return f"L{layers[0]}" if len(layers) == 1 else f"L{layers[0]}–L{layers[-1]}"


ROLE_TITLES = {
    "BOS": "BOS",
    "name": "the name",
    "verb": "the verb “is”",
    "modifiers": "the modifiers",
    "noun": "the noun",
    "period": "the “.”",
    "mixed": "a position whose role differs between prompts",
}


def role_title(role: str) -> str:
    """A token role of generator.experiments.hypotheses.roles in words ("period" -> 'the “.”')."""
    return ROLE_TITLES.get(role, role)


def layer_list(layers: list[int]) -> str:
    """[0, 1, 3] -> 'L0, L1 and L3'."""
    return join_words(f"L{layer}" for layer in layers)


FILTERS = {
    "role": role_title,
    "layers": layer_list,
    "head": head_name,
    "cell": cell_name,
    "node": node_name,
    "target": target_title,
    "join_words": join_words,
    "reader_counts": reader_counts,
    "layer_range": layer_range,
    "receiver": receiver_name,
    "path_route": route_phrase,
    "receiver_kinds": receiver_kinds,
}
GLOBALS = {
    "COMPONENTS": COMPONENTS,
    "COMPONENTS_PLURAL": COMPONENTS_PLURAL,
    "GROUPS": GROUPS,
    "group_layers": group_layers,
    "compare_models": compare_models,
    "reproduction": reproduction.for_model,
    "notebook": reproduction.reference,
}


# The findings' wording (templates/partials/findings.md.j2)


def share(x: float) -> str:
    """A share as a percentage with the digits it needs: '46%', '0.9%', '-0.1%'."""
    value = 100 * float(x)
    return f"{value:.0f}%" if abs(value) >= 9.5 else f"{value:.1f}%" if abs(value) >= 0.05 else f"{value:.2f}%"


def parts(items) -> str:
    """Components with their shares (generator.findings.Part): 'MLP2 (46%) and MLP1 (27%)'."""
    return join_words(f"{p.name} ({share(p.share)})" for p in items)


def route(path: list[str]) -> str:
    """A path of components: 'embed → MLP0 → logits'."""
    return " → ".join(path)


FILTERS.update(
    {
        "capitalize_first": lambda text: text[:1].upper() + text[1:],
        "share": share,
        "parts": parts,
        "route": route,
    }
)
GLOBALS.update({"findings": findings, "disclosure": disclosure, "contrast_findings": contrast_findings})
