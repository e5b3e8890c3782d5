"""The circuit's exports (generator/exports.py), read back from the files render writes and
checked against each format's published requirements and against the circuit itself, computed
again here: every edge's EAP-IG score, and the selected circuit re-run exactly."""

from __future__ import annotations

import json

import pytest
import torch
from conftest import typed

from generator.engine.graph import CircuitRunner
from generator.experiments import circuit
from generator.render import download_path, downloads

MODEL = "organism"


@pytest.fixture(scope="module")
def files(circuit_result) -> dict:
    """The downloads render writes for this result, parsed back from their text."""
    texts = downloads(None, {MODEL: {"circuit": {"metrics": typed("circuit", circuit_result)}}})
    return {kind: json.loads(texts[download_path(MODEL, "circuit", kind)]) for kind in ("mib", "neuronpedia")}


@pytest.fixture(scope="module")
def truth(organism, few_prompts, circuit_result):
    """Independently: every edge's EAP-IG score by MIB's names, and the circuit's size."""
    m = circuit_result.metrics
    runner = CircuitRunner(organism, few_prompts.clean_tokens, few_prompts.corrupted_tokens, few_prompts.answer_tokens)
    scores = runner.scores(m["ig_steps"]).sum(-1)  # [W, R], summed over positions
    g = runner.graph
    by_name, index = {}, {}
    for w, r in g.upstream().nonzero().tolist():
        reader = g.readers[r]
        edge = f"{mib(g.writers[w])}->{mib(reader)}" + (f"<{reader[0]}>" if reader[0] in "qkv" else "")
        by_name[edge], index[edge] = float(scores[w, r]), (w, r)
    smallest = m["circuit"]["smallest_faithful"]
    size = smallest["edges"] if smallest else m["circuit"]["n_edges"]
    return {"scores": by_name, "index": index, "runner": runner, "size": size}


def mib(node: tuple) -> str:
    """An engine node (("embed",), ("head" | "q" | "k" | "v", layer, head), ("mlp", layer),
    ("logits",)) by MIB's name (eap/graph.py: input, a0.h1, m0, logits)."""
    kind = node[0]
    if kind in ("embed", "logits"):
        return {"embed": "input", "logits": "logits"}[kind]
    return f"m{node[1]}" if kind == "mlp" else f"a{node[1]}.h{node[2]}"


def mib_edge_names(n_layers: int, n_heads: int) -> set[str]:
    """MIB's edges of a sequential GPT-2 graph, as eap/graph.py Graph.from_model adds them
    (hannamw/EAP-IG): every earlier node into each head's q, k and v, earlier nodes and this
    layer's heads into the MLP, everything into the logits."""
    stream, names = ["input"], set()
    for layer in range(n_layers):
        heads = [f"a{layer}.h{h}" for h in range(n_heads)]
        names |= {f"{s}->{h}<{x}>" for s in stream for h in heads for x in "qkv"}
        stream += heads
        names |= {f"{s}->m{layer}" for s in stream}
        stream.append(f"m{layer}")
    return names | {f"{s}->logits" for s in stream}


def test_mib_file_has_the_format_its_loader_reads(files, circuit_result):
    """eap/graph.py Graph.from_json asserts the keys cfg, nodes, edges; builds the graph from cfg
    (n_layers, n_heads, parallel_attn_mlp, d_model: Graph.from_model) and sets each named
    node's in_graph and each named edge's score and in_graph, by names that must exist."""
    d, m = files["mib"], circuit_result.metrics
    assert set(d) >= {"cfg", "nodes", "edges"}
    shape = m["graph_shape"]
    assert d["cfg"] == {
        "n_layers": shape["n_layers"],
        "n_heads": shape["n_heads"],
        "parallel_attn_mlp": False,
        "d_model": shape["d_model"],
    }
    names = mib_edge_names(shape["n_layers"], shape["n_heads"])
    assert len(names) == m["n_edges"]  # MIB's graph is ours: same edge count
    assert set(d["edges"]) == names  # the fixture exports every edge
    assert all(set(v) == {"score", "in_graph"} and isinstance(v["in_graph"], bool) for v in d["edges"].values())
    nodes = {"input", "logits"} | {f"a{l}.h{h}" for l in range(shape["n_layers"]) for h in range(shape["n_heads"])}
    assert set(d["nodes"]) == nodes | {f"m{l}" for l in range(shape["n_layers"])}


def test_mib_file_holds_every_score_and_the_circuit(files, truth, circuit_result):
    d, m = files["mib"], circuit_result.metrics
    for name, expected in truth["scores"].items():
        got = d["edges"][name]["score"]
        assert abs(got - expected) <= 1e-5 * max(1.0, abs(expected)), (name, got, expected)
    # the selected circuit: the top edges by |EAP-IG| (MIB's apply_topn with absolute=True)
    ranked = sorted(truth["scores"], key=lambda e: -abs(truth["scores"][e]))
    chosen = {e for e, v in d["edges"].items() if v["in_graph"]}
    assert len(chosen) == truth["size"]
    top = set(ranked[: truth["size"]])
    cut = abs(truth["scores"][ranked[truth["size"] - 1]])
    # ties at the cut could go either way; nothing else may differ
    assert all(abs(abs(truth["scores"][e]) - cut) < 1e-5 for e in chosen ^ top), chosen ^ top
    # and that circuit, re-run exactly, is as faithful as the page says
    runner = truth["runner"]
    keep = torch.zeros_like(runner.graph.upstream())
    for name, (w, r) in truth["index"].items():
        keep[w, r] = d["edges"][name]["in_graph"]
    f = circuit.faithfulness(runner.evaluate(keep)[None], runner.clean_metric, runner.corrupted_metric)
    smallest = m["circuit"]["smallest_faithful"]
    if smallest:
        assert abs(float(f[0]) - smallest["faithfulness"]) < 1e-4
    # nodes: in the graph when a circuit edge leaves them and one enters them (MIB's apply_topn)
    out = {e.split("->")[0] for e in chosen}
    into = {e.split("->")[1].split("<")[0] for e in chosen}
    for node, v in d["nodes"].items():
        expected = node in out and (node == "input" or node in into) if node != "logits" else node in into
        assert v["in_graph"] == expected, node


# Neuronpedia's graph JSON: the required fields of its published schema (hijohnnylin/neuronpedia,
# apps/webapp/app/api/graph/graph-schema.json), with their types
NEURONPEDIA_REQUIRED = {"metadata": dict, "qParams": dict, "nodes": list, "links": list}
NEURONPEDIA_METADATA = {"slug": str, "scan": str, "prompt_tokens": list, "prompt": str}
NEURONPEDIA_NODE = {
    "node_id": (str,),
    "feature": (int, type(None)),
    "layer": (str, int),
    "ctx_idx": (int,),
    "feature_type": (str,),
    "jsNodeId": (str,),
    "clerp": (str,),
}
NEURONPEDIA_LINK = {"source": (str,), "target": (str,), "weight": (int, float)}


def test_neuronpedia_file_has_the_schemas_required_fields(files):
    d = files["neuronpedia"]
    for key, kind in NEURONPEDIA_REQUIRED.items():
        assert isinstance(d[key], kind), key
    for key, kind in NEURONPEDIA_METADATA.items():
        assert isinstance(d["metadata"][key], kind), key
    assert all(isinstance(t, str) for t in d["metadata"]["prompt_tokens"])
    for node in d["nodes"]:
        for key, kinds in NEURONPEDIA_NODE.items():
            assert isinstance(node[key], kinds) and not isinstance(node[key], bool), (node, key)
    for link in d["links"]:
        for key, kinds in NEURONPEDIA_LINK.items():
            assert isinstance(link[key], kinds) and not isinstance(link[key], bool), (link, key)
    ids = [n["node_id"] for n in d["nodes"]]
    assert len(ids) == len(set(ids))
    assert {x for link in d["links"] for x in (link["source"], link["target"])} <= set(ids)
    # the viewer (apps/webapp/app/[modelId]/graph/utils.ts) parses "(p=…)" from a logit's label
    assert all("(p=" in n["clerp"] for n in d["nodes"] if n["feature_type"] == "logit")


def test_neuronpedia_file_is_the_circuit_on_the_first_prompt(files, truth, organism, few_prompts):
    d = files["neuronpedia"]
    assert d["metadata"]["prompt"] == few_prompts.spec.prompts[0].text
    assert d["metadata"]["prompt_tokens"] == organism.to_str_tokens(few_prompts.clean_tokens[0])
    chosen = [e for e, v in files["mib"]["edges"].items() if v["in_graph"]]
    links: dict = {}
    for e in chosen:  # a head's q, k and v edges join into one link
        source, target = e.split("->")
        key = (source, target.split("<")[0])
        links[key] = links.get(key, 0.0) + truth["scores"][e]
    got = {(link["source"], link["target"]): link["weight"] for link in d["links"]}
    assert set(got) == set(links)
    for key, expected in links.items():
        assert abs(got[key] - expected) <= 1e-4 * max(1.0, abs(expected)), (key, got[key], expected)
    labels = {n["node_id"]: n["clerp"] for n in d["nodes"]}
    for node, label in labels.items():  # labelled with the report's names
        if node.startswith("a"):
            layer, head = node[1:].split(".h")
            assert label == f"L{layer}H{head}", (node, label)
        elif node.startswith("m"):
            assert label == f"MLP{node[1:]}"
