"""The circuit in the field's own formats, from a circuit result's typed metrics (torch-free):

* this project's graph JSON (project_graph): the logit differences, every method's curves and
  the top edges with every method's score;

* MIB's circuit track: the JSON that `eap.graph.Graph.to_json` writes and `Graph.from_json`
  (hannamw/EAP-IG, src/eap/graph.py) and MIB's `load_graph_from_json`
  (hannamw/MIB-circuit-track, MIB_circuit_track/circuit_loading.py) read: {"cfg": {n_layers,
  n_heads, parallel_attn_mlp, d_model}, "nodes": {name: {"in_graph"}}, "edges": {name: {"score",
  "in_graph"}}}, nodes named "input", "a{layer}.h{head}", "m{layer}", "logits" and edges
  "parent->child", with "<q>", "<k>" or "<v>" after a head child. `run_evaluation.py` then
  ranks the scores itself (apply_topn), so CPR and CMD come from the scores; `in_graph` marks
  the circuit the page reports.
* Neuronpedia's attribution-graph JSON, as its schema requires
  (hijohnnylin/neuronpedia, apps/webapp/app/api/graph/graph-schema.json: metadata {slug, scan,
  prompt, prompt_tokens}, qParams, nodes {node_id, feature, layer, ctx_idx, feature_type,
  jsNodeId, clerp}, links {source, target, weight}), drawing the circuit's components as nodes.
"""

from __future__ import annotations

from generator.heads import node_name


def mib_name(node) -> str:
    """A node of the circuit graph by MIB's name (eap/graph.py: InputNode, AttentionNode,
    MLPNode, LogitNode); a head's q, k and v inputs are the head's node."""
    if node.kind == "embed":
        return "input"
    if node.kind == "logits":
        return "logits"
    if node.kind == "mlp":
        return f"m{node.layer}"
    return f"a{node.layer}.h{node.head}"


def mib_edge_name(writer, reader) -> str:
    """eap/graph.py Edge: 'parent->child', and '<q>' etc. when the child is an attention head."""
    name = f"{mib_name(writer)}->{mib_name(reader)}"
    return name + f"<{reader.kind}>" if reader.kind in ("q", "k", "v") else name


def circuit_size(m) -> int:
    """The edges of the circuit the page reports: the smallest faithful circuit by |EAP-IG|, or
    (none reaches it) the circuit drawn."""
    faithful = m.circuit.smallest_faithful
    return faithful.edges if faithful else m.circuit.n_edges


def scored_edges(m, method: str = "eap_ig") -> list[tuple]:
    """(writer, reader, score, in the circuit) for each edge of the download, in its order (by
    |EAP-IG|, best first: the circuit is its first `circuit_size` edges)."""
    column = m.download.columns.index(method)
    n = circuit_size(m)
    return [
        (m.download.writers[int(row[0])], m.download.readers[int(row[1])], float(row[column]), rank < n)
        for rank, row in enumerate(m.download.edges)
    ]


def mib_circuit(m) -> dict:
    """The circuit in MIB's circuit-track JSON. Every edge of the download with its EAP-IG score
    (those not in it, when export_edges < the graph's edges, read as score 0 and out of the
    circuit in MIB's loader). Scores are the mean over prompts; MIB's `get_scores_eap_ig` adds up
    per-batch means and divides by the prompts, a constant factor that no ranking sees. A node
    is in the graph as MIB's `apply_topn` puts it there: it has a circuit edge out and one in
    (the input always counts as fed)."""
    shape = m.graph_shape
    edges = scored_edges(m)
    fed = {mib_name(r) for _, r, _, kept in edges if kept}
    feeds = {mib_name(w) for w, _, _, kept in edges if kept}
    names = ["input"]
    for layer in range(shape.n_layers):
        names += [f"a{layer}.h{h}" for h in range(shape.n_heads)] + [f"m{layer}"]
    return {
        "cfg": {
            "n_layers": shape.n_layers,
            "n_heads": shape.n_heads,
            "parallel_attn_mlp": False,
            "d_model": shape.d_model,
        },
        "nodes": {
            **{name: {"in_graph": name in feeds and (name == "input" or name in fed)} for name in names},
            "logits": {"in_graph": "logits" in fed},
        },
        "edges": {mib_edge_name(w, r): {"score": score, "in_graph": kept} for w, r, score, kept in edges},
    }


def neuronpedia_graph(m, model: str) -> dict:
    """The circuit as Neuronpedia's attribution graph: its components as nodes (labelled by
    name), its edges as links weighted by EAP-IG score, the q, k and v edges into one head
    joined into one link (first-order scores add), on the example prompt, every node at the
    final position (the graph is position-agnostic: each edge sums over positions)."""
    shape = m.graph_shape
    last = len(m.example_tokens) - 1
    links: dict[tuple[str, str], float] = {}
    for writer, reader, score, kept in scored_edges(m):
        if kept:
            key = (mib_name(writer), mib_name(reader))
            links[key] = links.get(key, 0.0) + score
    used = {name for pair in links for name in pair}
    nodes = []
    for name in (
        ["input"]
        + [
            n
            for layer in range(shape.n_layers)
            for n in [f"a{layer}.h{h}" for h in range(shape.n_heads)] + [f"m{layer}"]
        ]
        + ["logits"]
    ):
        if name in used:
            nodes.append(neuronpedia_node(name, shape.n_layers, last, m))
    return {
        "metadata": {
            "slug": f"capcircuit-{model}-circuit".lower().replace("/", "-"),
            "scan": model,
            "prompt": m.example_prompt,
            "prompt_tokens": list(m.example_tokens),
            "info": {
                "description": (
                    f"The capital-letter circuit: the {circuit_size(m)} edges of the residual-stream graph "
                    f"with the largest |EAP-IG| score ({m.ig_steps} steps), scored over {m.n_prompts} prompts "
                    'corrupted "." -> ";", metric: mean logit difference of the capital against the '
                    f'lowercase answer (e.g. "{m.answers[0]}" against "{m.answers[1]}"; clean '
                    f"{m.clean_logit_diff:.4g}, corrupted {m.corrupted_logit_diff:.4g}). Nodes are model "
                    "components (embedding, attention heads, MLPs, logits), not features; a link's "
                    "weight is its EAP-IG score in logits."
                ),
                "generator": {"name": "capcircuit"},
            },
        },
        "qParams": {"pinnedIds": [n["node_id"] for n in nodes], "linkType": "both"},
        "nodes": nodes,
        "links": [{"source": s, "target": t, "weight": w} for (s, t), w in links.items()],
    }


def neuronpedia_node(name: str, n_layers: int, position: int, m) -> dict:
    """One component. Neuronpedia's viewer (apps/webapp/app/[modelId]/graph/utils.ts,
    formatCLTGraphData) reads a logit node's label for "(p=…)", its share of the output: this
    graph's only output node is the metric, so it takes all of it."""
    if name == "input":
        layer, kind, label = "E", "embedding", "token embedding"
    elif name == "logits":
        layer, kind = str(n_layers), "logit"
        label = f'logit difference "{m.answers[0]}" − "{m.answers[1]}" (p=1)'
    elif name.startswith("m"):
        layer, kind, label = name[1:], "unknown", f"MLP{name[1:]}"  # "unknown": a component, no feature page
    else:
        l, h = name[1:].split(".h")
        layer, kind, label = l, "unknown", node_name({"kind": "head", "layer": int(l), "head": int(h)})
    head = int(name.split(".h")[1]) if ".h" in name else None
    return {
        "node_id": name,
        "feature": head,
        "layer": layer,
        "ctx_idx": position,
        "feature_type": kind,
        "jsNodeId": name,
        "clerp": label,
    }


def project_graph(metrics) -> dict:
    """A circuit result's downloadable graph: its logit differences, every method's curves and
    the top edges with every method's score."""
    return {
        "model_clean_logit_diff": metrics.clean_logit_diff,
        "model_corrupted_logit_diff": metrics.corrupted_logit_diff,
        "methods": {name: row.model_dump(mode="json", exclude_unset=True) for name, row in metrics.methods.items()},
        **metrics.download.model_dump(mode="json", exclude_unset=True),
    }
