"""The findings: how one model gets from "." to " He", stated from its stored results.

Torch-free (render side). `findings(records)` reads one model's typed metrics — baseline,
attribution, patching and circuit, each optional — and returns a `Findings` record: which
components write the logit difference and their shares (direct logit attribution), which ones
restore it when patched alone (activation patching), which ones the smallest faithful circuit
keeps, where the three agree, the circuit's route from the embedding to the logits, how
faithful that circuit is and how sure, and what stays unexplained. Every value is computed
here; templates/partials/findings.md.j2 only words it, so a sentence can never name a head
the numbers do not.

The three methods measure different things, and the record keeps them apart: DLA is a
component's *direct* write on the clean run as a share of what all components write; patching
is a component's *total* effect (direct and through later components) as a share of the clean −
corrupted gap; the circuit is a set of edges that together reproduce the gap.
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from generator.heads import head_name, node_name

METHODS = ("dla", "patching", "circuit")
VIA = {"q": "query", "k": "key", "v": "value", "mlp": "input"}


class Thresholds(BaseModel):
    """When a sentence of the findings calls a component this or that (documented defaults)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    carries: float = Field(
        0.10,
        gt=0,
        le=1,
        description="a component carries the behaviour when its direct logit attribution is at least this "
        "share of the clean logit difference all components write (DLA total)",
    )
    restores: float = Field(
        0.10,
        gt=0,
        le=1,
        description="patching names a component when its clean output, patched alone into the corrupted run, "
        "restores at least this share of the clean − corrupted gap",
    )
    most: float = Field(0.5, ge=0.5, le=1, description="a share above which one component writes 'more than half'")
    behaviour: float = Field(
        1.0, gt=0, description="mean logit difference (nats) below which there is no capital preference to explain"
    )
    gap: float = Field(
        1.0,
        gt=0,
        description="clean − corrupted difference (nats) below which shares of it (patching, faithfulness) go unread",
    )
    negligible: float = Field(
        0.01,
        gt=0,
        le=1,
        description="a share of the logit difference below which the unembedding bias is not mentioned",
    )
    paths: int = Field(4, ge=1, description="routes from the embedding to the logits listed")


class Part(BaseModel):
    """A component and what one method measured for it."""

    name: str  # "L0H2", "MLP3", "embed", "pos_embed", "L1 attention bias"
    kind: str  # "head" | "mlp" | "embed" | "pos_embed" | "attn_bias" | "attn" (a whole attention layer)
    value: float  # nats (DLA) or the normalised patching effect
    share: float  # of the DLA total, or of the clean − corrupted gap


class Dla(BaseModel):
    total: float  # what the components write together (nats)
    carriers: list[Part]  # share ≥ carries, largest first
    opposers: list[Part]  # share ≤ −carries, most negative first
    largest: Part
    most: Part | None  # the one carrier with share > most, if any
    n_components: int
    by_kind: dict[str, float]  # "heads" | "mlps" | "embeddings" | "attn_bias" -> share of the total
    attn_only: bool


class Patching(BaseModel):
    named: list[Part]  # heads and MLPs restoring ≥ restores, largest first
    largest_head: Part | None
    largest_mlp: Part | None
    spread_layers: list[Part]  # attention layers restoring ≥ restores while none of their heads does
    changed_positions: list[int]
    changed_is_final: bool
    resid_positions: list[str]  # positions where patching the residual stream (any layer) restores ≥ restores


class Edge(BaseModel):
    writer: str
    reader: str  # the reader's component ("L0H2", "MLP1", "logits")
    via: str  # "query" | "key" | "value" | "input" | "logits"
    effect: float | None  # exact effect (nats) of patching this edge alone, where stored


class Route(BaseModel):
    reads_embedding: list[Edge]
    writes_logits: list[Edge]
    between: list[Edge]  # from one component to another
    paths: list[list[str]]  # embed → … → logits, strongest (largest weakest edge) first
    n_paths: int
    negligible: list[Edge]  # circuit edges whose exact effect is below the negligible share of the gap
    final_token: str | None  # the token at the only position the corruption changes, if only one


class Faithful(BaseModel):
    required: float
    edges: int
    n_edges: int
    fraction: float
    value: float
    confidence: float
    interval_edges: int | None  # the evaluated size whose bootstrap interval is given
    interval_value: float | None  # faithfulness at that size
    low: float | None
    high: float | None
    listed_edges: int  # the circuit's edges the record lists (fewer when it is larger than drawn)
    nodes: list[str]  # its writers' components (embed, heads, MLPs)
    cpr: float
    cpr_low: float
    cpr_high: float
    random_cpr: float | None


class Agreement(BaseModel):
    methods: list[str]  # the methods that could be read
    named: dict[str, list[str]]  # method -> components it names
    all_methods: list[str]  # named by every method read
    union: list[str]
    groups: list[tuple[list[str], list[str]]]  # (methods naming them, components), most methods first


class Unexplained(BaseModel):
    outside_circuit: float | None  # 1 − faithfulness of the smallest circuit
    unembed_bias: float | None  # the model's logit difference − what the components write (nats)
    unembed_bias_share: float | None  # ... as a share of the logit difference
    unembed_bias_negligible: bool  # |share| < thresholds.negligible
    restored_not_in_circuit: list[Part]
    carriers_not_in_circuit: list[Part]


class Findings(BaseModel):
    model: str
    thresholds: Thresholds
    missing: list[str]  # experiments with no result for this model
    clean: float | None
    corrupted: float | None
    behaviour: bool  # a capital preference to explain (clean ≥ thresholds.behaviour)
    gap_ok: bool  # clean − corrupted ≥ thresholds.gap: shares of the gap are read
    dla: Dla | None
    dla_total: float | None  # what the components write directly (nats), when attribution ran
    patching: Patching | None
    circuit: Faithful | None
    no_faithful_circuit: bool  # the circuit ran, and no size it evaluated reached the faithfulness asked
    route: Route | None
    agreement: Agreement | None
    unexplained: Unexplained


def findings(model: str, records: dict, thresholds: Thresholds | None = None) -> Findings:
    """The findings for one model from its records ({experiment: record}, metrics typed)."""
    t = thresholds or Thresholds()
    m = {e: records[e]["metrics"] for e in ("baseline", "attribution", "patching", "circuit") if e in records}
    clean = next((getattr(m[e], k) for e, k in CLEAN if e in m), None)
    corrupted = next((getattr(m[e], k) for e, k in CORRUPTED if e in m), None)
    behaviour = clean is not None and clean >= t.behaviour
    gap_ok = behaviour and corrupted is not None and clean - corrupted >= t.gap
    attn_only = bool(m["baseline"].model_shape.attn_only) if "baseline" in m else False
    # shares of a total that is not positive do not say who writes the preference
    dla = (
        _dla(m["attribution"], t, attn_only)
        if "attribution" in m and behaviour and m["attribution"].total > 0
        else None
    )
    patching = _patching(m["patching"], t, attn_only) if "patching" in m and gap_ok else None
    circuit = _faithful(m["circuit"]) if "circuit" in m and gap_ok else None
    route = _route(m["circuit"], m.get("baseline"), t) if circuit else None
    named = {}
    if dla:
        named["dla"] = [p.name for p in dla.carriers]
    if patching:
        named["patching"] = [p.name for p in patching.named]
    if circuit:
        named["circuit"] = [n for n in circuit.nodes if n != "embed"]
    return Findings(
        model=model,
        thresholds=t,
        missing=[e for e in ("baseline", "attribution", "patching", "circuit") if e not in m],
        clean=clean,
        corrupted=corrupted,
        behaviour=behaviour,
        gap_ok=gap_ok,
        dla=dla,
        dla_total=m["attribution"].total if "attribution" in m else None,
        patching=patching,
        circuit=circuit,
        no_faithful_circuit="circuit" in m and gap_ok and circuit is None,
        route=route,
        agreement=_agreement(named) if named else None,
        unexplained=_unexplained(m, dla, patching, circuit, t),
    )


CLEAN = (("baseline", "mean_logit_diff"), ("attribution", "mean_logit_diff"), ("patching", "clean_logit_diff"))
CLEAN += (("circuit", "clean_logit_diff"),)
CORRUPTED = (("baseline", "mean_logit_diff_corrupted"), ("patching", "corrupted_logit_diff"))
CORRUPTED += (("circuit", "corrupted_logit_diff"),)


def dla_parts(a) -> list[Part]:
    """Every component's direct logit attribution: embeddings, each head, each layer's
    attention bias, each MLP (shares of a.total)."""
    parts = []
    for label, value in zip(a.components.labels, a.components.values):
        layer = re.fullmatch(r"L(\d+) (attn|MLP)", label)
        if not layer:
            parts.append(_part(label, label, value, a.total))
        elif layer[2] == "MLP":
            parts.append(_part(f"MLP{layer[1]}", "mlp", value, a.total))
        else:
            n = int(layer[1])
            for h, v in enumerate(a.heads.values[n]):
                parts.append(_part(head_name((n, h)), "head", v, a.total))
            parts.append(_part(f"L{n} attention bias", "attn_bias", a.attn_bias[n], a.total))
    return parts


def _part(name: str, kind: str, value: float, total: float) -> Part:
    return Part(name=name, kind=kind, value=value, share=value / total if total else 0.0)


def _dla(a, t: Thresholds, attn_only: bool) -> Dla:
    parts = [p for p in dla_parts(a) if not (attn_only and p.kind == "mlp")]
    carriers = sorted((p for p in parts if p.share >= t.carries), key=lambda p: -p.share)
    opposers = sorted((p for p in parts if p.share <= -t.carries), key=lambda p: p.share)
    kinds = {"heads": ("head",), "mlps": ("mlp",), "embeddings": ("embed", "pos_embed"), "attn_bias": ("attn_bias",)}
    largest = max(parts, key=lambda p: p.share)
    return Dla(
        total=a.total,
        carriers=carriers,
        opposers=opposers,
        largest=largest,
        most=largest if largest.share > t.most else None,
        n_components=len(parts),
        by_kind={k: sum(p.share for p in parts if p.kind in v) for k, v in kinds.items()},
        attn_only=attn_only,
    )


def _patching(p, t: Thresholds, attn_only: bool) -> Patching:
    final = p.resid_flow.final_position
    heads = [
        Part(name=head_name((layer, h)), kind="head", value=v, share=v)
        for layer, row in enumerate(p.sweeps["head_out"])
        for h, v in enumerate(row)
    ]
    mlps = [
        Part(name=f"MLP{layer}", kind="mlp", value=row[final], share=row[final])
        for layer, row in enumerate(p.sweeps["mlp_out"])
    ]
    # an attention-only model has no MLP to name (its zero MLP's patching leaves float rounding)
    if attn_only or all(abs(m.value) < 1e-6 for m in mlps):
        mlps = []
    named = sorted((x for x in heads + mlps if x.share >= t.restores), key=lambda x: -x.share)
    spread = [
        Part(name=f"L{layer} attention", kind="attn", value=row[final], share=row[final])
        for layer, row in enumerate(p.sweeps["attn_out"])
        if row[final] >= t.restores and all(h.share < t.restores for h in heads if h.name.startswith(f"L{layer}H"))
    ]
    return Patching(
        named=named,
        largest_head=max(heads, key=lambda x: x.share) if heads else None,
        largest_mlp=max(mlps, key=lambda x: x.share) if mlps else None,
        spread_layers=spread,
        changed_positions=p.resid_flow.changed_positions,
        resid_positions=[
            label
            for pos, label in enumerate(p.positions)
            if max(row[pos] for row in p.sweeps["resid_pre"]) >= t.restores
        ],
        changed_is_final=p.resid_flow.changed_is_final,
    )


def _faithful(c) -> Faithful | None:
    s = c.circuit.smallest_faithful
    if s is None:
        return None
    curve = c.methods["eap_ig"].cmd  # the circuit's ranking (by |score|) and its bootstrap intervals
    at = next((i for i, n in enumerate(curve.sizes) if n >= s.edges), None)
    cpr, rnd = c.methods["eap_ig"].cpr, c.methods.get("random")
    return Faithful(
        required=c.faithful,
        edges=s.edges,
        n_edges=c.n_edges,
        fraction=s.fraction,
        value=s.faithfulness,
        confidence=c.confidence,
        interval_edges=None if at is None else curve.sizes[at],
        interval_value=None if at is None else curve.faithfulness[at],
        low=None if at is None else curve.low[at],
        high=None if at is None else curve.high[at],
        listed_edges=c.circuit.n_edges,
        nodes=[node_name(w) for w in c.circuit.writers],
        cpr=cpr.area,
        cpr_low=cpr.area_ci[0],
        cpr_high=cpr.area_ci[1],
        random_cpr=rnd.cpr.area if rnd else None,
    )


def _component(node) -> str:
    """The component an edge's reader belongs to ("L0H2.q" -> "L0H2")."""
    return head_name(node) if node.kind in VIA and node.kind != "mlp" else node_name(node)


def _route(c, baseline, t: Thresholds) -> Route:
    gap = c.clean_logit_diff - c.corrupted_logit_diff
    edges, negligible = [], []
    for e in c.circuit.edges:
        edge = Edge(
            writer=node_name(e.writer),
            reader=_component(e.reader),
            via=VIA.get(e.reader.kind, "logits"),
            effect=e.exact_effect,
        )
        small = e.exact_effect is not None and abs(e.exact_effect) < c.negligible * gap
        (negligible if small else edges).append(edge)
    paths, n_paths = _paths(edges)
    tokens = baseline.position_str_tokens if baseline else None
    final_token = tokens[c.shared_prefix] if tokens and c.shared_prefix == len(tokens) - 1 else None
    return Route(
        reads_embedding=[e for e in edges if e.writer == "embed" and e.reader != "logits"],
        writes_logits=sorted((e for e in edges if e.reader == "logits"), key=lambda e: -(e.effect or 0)),
        between=[e for e in edges if e.writer != "embed" and e.reader != "logits"],
        paths=paths[: t.paths],
        n_paths=n_paths,
        negligible=negligible,
        final_token=final_token,
    )


def _paths(edges: list[Edge], budget: int = 2000) -> tuple[list[list[str]], int]:
    """Paths embed → … → logits along the edges, the strongest first (by the exact effect of a
    path's weakest edge; an edge with no stored effect counts as the weakest), and how many
    there are. The edges only run forward (later layers), so paths are counted exactly; they
    are listed when there are at most `budget`, else only the widest one is (a large circuit
    can have exponentially many)."""
    strength: dict[str, dict[str, float]] = {}
    for e in edges:
        out = strength.setdefault(e.writer, {})
        out[e.reader] = max(out.get(e.reader, float("-inf")), e.effect if e.effect is not None else float("-inf"))

    counts: dict[str, int] = {"logits": 1}

    def count(node: str) -> int:
        if node not in counts:
            counts[node] = 0  # a cycle (none in a forward graph) counts nothing
            counts[node] = sum(count(r) for r in strength.get(node, {}))
        return counts[node]

    total = count("embed")
    if total > budget:
        widest: dict[str, tuple[float, list[str]]] = {"logits": (float("inf"), ["logits"])}

        def best(node: str) -> tuple[float, list[str]]:
            if node not in widest:
                widest[node] = (float("-inf"), [])
                options = [(min(s, best(r)[0]), [node, *best(r)[1]]) for r, s in strength.get(node, {}).items()]
                options = [o for o in options if o[1][-1] == "logits"]
                widest[node] = max(options, key=lambda o: o[0]) if options else (float("-inf"), [])
            return widest[node]

        return [best("embed")[1]], total
    found: dict[tuple, float] = {}

    def walk(path: list[str], weakest: float):
        for r, s in strength.get(path[-1], {}).items():
            if r == "logits":
                found[(*path, r)] = min(weakest, s)
            elif r not in path:
                walk([*path, r], min(weakest, s))

    walk(["embed"], float("inf"))
    return [list(p) for p in sorted(found, key=lambda p: -found[p])], total


def _agreement(named: dict[str, list[str]]) -> Agreement:
    union = list(dict.fromkeys(n for names in named.values() for n in names))
    signature = {n: tuple(m for m in named if n in named[m]) for n in union}
    groups = {}
    for n in union:
        groups.setdefault(signature[n], []).append(n)
    return Agreement(
        methods=list(named),
        named=named,
        all_methods=[n for n in union if len(signature[n]) == len(named)],
        union=union,
        groups=sorted(((list(k), v) for k, v in groups.items()), key=lambda g: -len(g[0])),
    )


def _unexplained(m: dict, dla, patching, circuit, t: Thresholds) -> Unexplained:
    nodes = set(circuit.nodes) if circuit else set()
    a = m.get("attribution")
    share = a.unembed_bias / a.mean_logit_diff if a and a.mean_logit_diff else None
    return Unexplained(
        outside_circuit=1 - circuit.value if circuit else None,
        unembed_bias=a.unembed_bias if a else None,
        unembed_bias_share=share,
        unembed_bias_negligible=share is None or abs(share) < t.negligible,
        restored_not_in_circuit=[p for p in patching.named if p.name not in nodes] if patching and circuit else [],
        carriers_not_in_circuit=[p for p in dla.carriers if p.name not in nodes] if dla and circuit else [],
    )
