"""generator/findings.py and its wording (templates/partials/findings.md.j2), and the overview's
disclosure (generator/disclosure.py), on three mechanisms: the two bundled models' committed
results (MLPs; attention only; their numbers are not pinned: the relations are, since the
bundled models are retrained), a tiny GPT-2 with a planted head and MLP neuron that the test
builds and runs the real experiments on, and edited records for the cases no model shows (no
behaviour, missing results)."""

from __future__ import annotations

import re

import pytest
import torch
from conftest import ROOT, build_report, gpt2_tokenizer, save_random_gpt2, write_config

from generator.findings import Thresholds, dla_parts, findings
from generator.heads import head_name, node_name

EXPERIMENTS = ("baseline", "attribution", "patching", "circuit")
BUNDLED = ("organism", "organism-attn-only-1l")
COMPONENT = re.compile(r"\b(L\d+H\d+|MLP\d+)\b")


def committed(model: str) -> dict:
    from generator.store import Store

    store = Store(ROOT / "results")
    return {e: store.load(model, e) for e in EXPERIMENTS}


def environment():
    from generator.config import Config
    from generator.render import environment as env

    return env(Config(paths={"templates": str(ROOT / "templates")}))


def worded(f, which: str = "full") -> str:
    """The findings' paragraphs as the overview words them (markdown)."""
    template = environment().from_string('{% import "partials/findings.md.j2" as fw %}{{ fw.' + which + "(f) }}")
    return template.render(f=f)


def names_in(f) -> set[str]:
    """Every component name anywhere in a findings record."""
    return set(COMPONENT.findall(f.model_dump_json()))


# --- relations on the bundled models (whatever their retrained numbers) ---------------------


@pytest.mark.parametrize("model", BUNDLED)
def test_components_named_are_exactly_those_above_the_thresholds(model):
    records = committed(model)
    t = Thresholds()
    f = findings(model, records, t)
    a, p, c = (records[e]["metrics"] for e in ("attribution", "patching", "circuit"))
    assert f.behaviour and f.gap_ok

    # DLA, naively: every head from the grid, every MLP and embedding from the components
    naive = {}
    for label, value in zip(a.components.labels, a.components.values):
        mlp = re.fullmatch(r"L(\d+) MLP", label)
        if mlp:
            naive[f"MLP{mlp[1]}"] = value
        elif "attn" not in label:
            naive[label] = value
    for layer, row in enumerate(a.heads.values):
        for h, value in enumerate(row):
            naive[f"L{layer}H{h}"] = value
    for layer, value in enumerate(a.attn_bias):
        naive[f"L{layer} attention bias"] = value
    if records["baseline"]["metrics"].model_shape.attn_only:
        naive = {k: v for k, v in naive.items() if not k.startswith("MLP")}
    assert {x.name: x.value for x in dla_parts(a) if x.name in naive} == naive
    assert {x.name for x in f.dla.carriers} == {k for k, v in naive.items() if v / a.total >= t.carries}
    assert [x.share for x in f.dla.carriers] == sorted((x.share for x in f.dla.carriers), reverse=True)
    # the parts add up to what the components write, to the stored decomposition errors
    assert sum(naive.values()) == pytest.approx(a.total, abs=10 * (a.decomposition_error + a.head_error) + 1e-4)

    # patching, naively: heads over all positions, MLPs at the final position
    final = p.resid_flow.final_position
    restoring = {
        f"L{l}H{h}" for l, row in enumerate(p.sweeps["head_out"]) for h, v in enumerate(row) if v >= t.restores
    }
    restoring |= {f"MLP{l}" for l, row in enumerate(p.sweeps["mlp_out"]) if row[final] >= t.restores}
    assert {x.name for x in f.patching.named} == restoring
    resid = p.sweeps["resid_pre"]
    at = {p.positions[i] for i in range(len(p.positions)) if max(r[i] for r in resid) >= t.restores}
    assert set(f.patching.resid_positions) == at

    # the circuit: the writers of its edges
    writers = {node_name(e.writer) for e in c.circuit.edges}
    assert set(f.circuit.nodes) == writers
    assert f.circuit.edges == c.circuit.smallest_faithful.edges
    assert f.circuit.value == c.circuit.smallest_faithful.faithfulness

    # agreement: the intersection and union of the three sets
    sets = {"dla": {x.name for x in f.dla.carriers}, "patching": restoring, "circuit": writers - {"embed"}}
    assert set(f.agreement.all_methods) == sets["dla"] & sets["patching"] & sets["circuit"]
    assert set(f.agreement.union) == sets["dla"] | sets["patching"] | sets["circuit"]
    for methods, names in f.agreement.groups:
        for n in names:
            assert {m for m in sets if n in sets[m]} == set(methods)

    # what remains
    assert f.unexplained.outside_circuit == pytest.approx(1 - c.circuit.smallest_faithful.faithfulness)
    assert f.unexplained.unembed_bias == a.unembed_bias
    assert {x.name for x in f.unexplained.restored_not_in_circuit} == restoring - writers


@pytest.mark.parametrize("model", BUNDLED)
def test_route_follows_the_circuits_edges(model):
    records = committed(model)
    f = findings(model, records)
    c = records["circuit"]["metrics"]
    gap = c.clean_logit_diff - c.corrupted_logit_diff
    edges = {
        (node_name(e.writer), head_name(e.reader) if e.reader.kind in "qkv" else node_name(e.reader))
        for e in c.circuit.edges
        if e.exact_effect is None or abs(e.exact_effect) >= c.negligible * gap
    }
    assert f.route.paths, "a faithful circuit has a path from the embedding to the logits"
    for path in f.route.paths:
        assert path[0] == "embed" and path[-1] == "logits"
        assert all((a, b) in edges for a, b in zip(path, path[1:])), path
    assert {(e.writer, e.reader) for e in f.route.writes_logits} == {e for e in edges if e[1] == "logits"}
    assert {e.reader for e in f.route.reads_embedding} == {b for a, b in edges if a == "embed" and b != "logits"}
    # the corruption changes only the last token: the route says so, as the design, and names it
    assert f.route.final_token == records["baseline"]["metrics"].position_str_tokens[-1]


@pytest.mark.parametrize("model", BUNDLED)
def test_words_name_only_what_the_findings_name(model):
    f = findings(model, committed(model))
    text = worded(f)
    mentioned = set(COMPONENT.findall(text))
    assert mentioned <= names_in(f)
    for x in f.dla.carriers + f.patching.named:
        assert f"{x.name} (" in text
    assert "mostly" not in text
    assert "&lt;" not in text, "markup printed as text"
    assert ("more than half" in text) == (f.dla.largest.share > 0.5)
    short = worded(f, "short")
    assert set(COMPONENT.findall(short)) <= names_in(f)
    assert f"{f.circuit.edges} of {f.circuit.n_edges} edges" in short


def test_the_two_bundled_mechanisms_differ_and_the_words_follow():
    mlp, attn = (findings(m, committed(m)) for m in BUNDLED)
    assert mlp.dla.by_kind["mlps"] > mlp.dla.by_kind["heads"]
    assert attn.dla.attn_only and all(x.kind == "head" for x in attn.dla.carriers)
    assert "(the model has no MLPs)" in worded(attn)
    assert "(the model has no MLPs)" not in worded(mlp)
    assert attn.patching.largest_mlp is None and "no MLP does" not in worded(attn)
    # also when its zero MLP's patching leaves float rounding (as float32 does)
    records = committed(BUNDLED[1])
    p = records["patching"]["metrics"]
    noisy = {**p.sweeps, "mlp_out": [[1.2e-7] * len(row) for row in p.sweeps["mlp_out"]]}
    assert findings("a", edited(records, "patching", sweeps=noisy)).patching.largest_mlp is None


# --- cases no committed model shows ---------------------------------------------------------


def edited(records: dict, experiment: str, **update) -> dict:
    out = {e: dict(r) for e, r in records.items()}
    out[experiment]["metrics"] = records[experiment]["metrics"].model_copy(update=update)
    return out


def test_a_model_with_no_behaviour_gets_no_mechanism():
    records = committed("organism")
    none = edited(records, "baseline", mean_logit_diff=0.2)
    f = findings("flat", none)
    assert not f.behaviour and f.dla is None and f.patching is None and f.circuit is None and f.agreement is None
    text = worded(f)
    assert "shows no capital preference to explain" in text and "0.20" in text
    assert not COMPONENT.findall(text)


def test_a_behaviour_without_a_period_effect_reads_no_gap_shares():
    records = committed("organism")
    f = findings("no-gap", edited(records, "baseline", mean_logit_diff_corrupted=6.0))
    assert f.behaviour and not f.gap_ok and f.dla and f.patching is None and f.circuit is None
    assert "are not read" in worded(f)


def test_missing_results_are_said_and_the_rest_still_read():
    records = committed("organism")
    f = findings("organism", {e: records[e] for e in ("baseline", "attribution")})
    assert f.missing == ["patching", "circuit"]
    assert f.dla and f.patching is None and f.circuit is None and f.route is None
    assert f.agreement.methods == ["dla"]
    text = worded(f)
    assert "No patching result" in text and text.count("Not run for this model: patching and circuit") == 1
    assert "Without a circuit result, how much of the gap the components leave unexplained is not measured" in text
    assert "Only DLA could be read" in text


def test_threshold_decides_what_carries():
    records = committed("organism")
    a = records["attribution"]["metrics"]
    shares = sorted((x.share for x in dla_parts(a)), reverse=True)
    # a threshold just above the second-largest share leaves one carrier, just below two
    between = (shares[0] + shares[1]) / 2
    assert len(findings("o", records, Thresholds(carries=between)).dla.carriers) == 1
    assert len(findings("o", records, Thresholds(carries=shares[1] * 0.999)).dla.carriers) == 2


# --- a planted circuit ------------------------------------------------------------------------

PLANTED_HEAD, PLANTED_MLP = (0, 2), (0, 5)  # (layer, head) and (layer, neuron)


def plant(path):
    """A tiny random GPT-2 (real GPT-2 tokenizer) with one head and one MLP neuron wired from
    the "." token's embedding to the capitalisation direction W_U[" He"] − W_U[" he"] (and
    She/she), scaled so that they write the answer and nothing else does. The embedding of "."
    (and of ";") is large and orthogonal to the answers' directions: the final LayerNorm then
    scales the two planted writes about linearly (each alone is about half of the whole), and the
    corrupted run's final residual holds no capitalisation."""
    from transformers import GPT2LMHeadModel

    save_random_gpt2(path, n_layer=2, n_embd=64, n_head=4, n_positions=64)
    model = GPT2LMHeadModel.from_pretrained(path)
    tokenizer = gpt2_tokenizer()
    ids = {t: tokenizer.encode(t)[0] for t in (".", ";", " He", " he", " She", " she")}
    d, n_head = model.config.n_embd, model.config.n_head
    d_head = d // n_head
    g = torch.Generator().manual_seed(1)
    # orthonormal directions free of the all-ones direction (which LayerNorm removes)
    basis = torch.linalg.qr(torch.cat([torch.ones(d, 1), torch.randn(d, 4, generator=g)], 1)).Q[:, 1:]
    cap, gender, dot, semi = basis.T
    with torch.no_grad():
        w_e = model.transformer.wte.weight  # tied: also the unembedding
        for token, sign_cap, sign_gender in ((" He", 1, 1), (" he", -1, 1), (" She", 1, -1), (" she", -1, -1)):
            w_e[ids[token]] = 0.1 * w_e[ids[token]] + 2.0 * (sign_cap * cap + sign_gender * gender)
        w_e[ids["."]], w_e[ids[";"]] = 20.0 * dot, 20.0 * semi
        layer, h = PLANTED_HEAD
        attn = model.transformer.h[layer].attn
        for part in range(3):  # q, k, v of head h read only the "." direction
            cols = slice(part * d + h * d_head, part * d + (h + 1) * d_head)
            attn.c_attn.weight[:, cols] = 0
            attn.c_attn.bias[cols] = 0
            attn.c_attn.weight[:, part * d + h * d_head] = (3.0 if part < 2 else 1.0) * dot
        attn.c_proj.weight[h * d_head : (h + 1) * d_head] = 0
        attn.c_proj.weight[h * d_head] = 0.4 * cap  # OV: "." -> the capital direction
        layer, n = PLANTED_MLP
        mlp = model.transformer.h[layer].mlp
        mlp.c_fc.weight[:, n] = dot  # the neuron reads "."
        mlp.c_fc.bias[n] = -1.0
        mlp.c_proj.weight[n] = 0.45 * cap  # and writes the capital direction
    model.save_pretrained(path)
    return path


PLANTED_EXPERIMENTS = {
    "baseline": {},
    "attribution": {},
    "patching": {"targets": ["resid_pre", "attn_out", "mlp_out", "head_out", "head_v", "head_pattern"]},
    "circuit": {"bootstrap": 100, "random_seeds": 1, "position_aware": False, "held_out": False, "graph_edges": 20},
}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    """The planted model's results, through the pipeline (`capcircuit run` on a config naming its folder)."""
    from generator.config import load_config
    from generator.pipeline import run
    from generator.render import load_results

    folder = tmp_path_factory.mktemp("planted")
    model = str(plant(folder / "planted-model"))
    config = load_config(write_config(folder, models=[model], device="cpu", experiments=PLANTED_EXPERIMENTS))
    run(config, log=lambda message: None)
    return model, folder, load_results(config, log=lambda message: None)[model]


def test_findings_name_the_planted_head_and_mlp_and_nothing_else(planted):
    model, _, records = planted
    f = findings(model, records)
    want = {head_name(PLANTED_HEAD), f"MLP{PLANTED_MLP[0]}"}
    assert f.behaviour and f.gap_ok
    assert {x.name for x in f.dla.carriers} == want
    assert {x.name for x in f.patching.named} == want
    assert set(f.agreement.all_methods) == set(f.agreement.union) == want
    # the smallest faithful circuit recovers exactly the planted components
    writers = {node_name(w) for w in records["circuit"]["metrics"].circuit.writers}
    assert writers == want | {"embed"}
    assert set(f.circuit.nodes) == want | {"embed"}
    assert f.circuit.value >= f.circuit.required
    # the route: the "." embedding is read by the planted head (query or value) and the MLP,
    # both of which write to the logits
    assert f.route.final_token == "."
    assert {e.reader for e in f.route.reads_embedding} == want
    assert {e.writer for e in f.route.writes_logits} == want
    assert {e.via for e in f.route.reads_embedding if e.reader == head_name(PLANTED_HEAD)} & {"query", "value"}
    text = worded(f)
    assert set(COMPONENT.findall(text)) == want


def test_overview_of_the_planted_model_names_only_the_planted_components(planted, tmp_path):
    model, folder, _ = planted
    config = build_report(tmp_path, results=folder / "results", models=[model], experiments=PLANTED_EXPERIMENTS)
    index = (config.path("docs") / "index.md").read_text()
    section = index.split("## Findings", 1)[1].split("\n## ", 1)[0]
    assert set(COMPONENT.findall(section)) == {head_name(PLANTED_HEAD), f"MLP{PLANTED_MLP[0]}"}
    # not a bundled model: no disclosure paragraph or card for it, and GPT-2 small's absence said
    assert "is bundled with this project" not in index
    assert "No GPT-2 small result is in this build" in index
    assert not list(config.path("docs").glob("model-cards/*.md"))


# --- the overview on the committed results: findings and disclosure --------------------------


@pytest.fixture(scope="module")
def committed_site(published_site):
    return published_site


def test_overview_opens_with_the_findings_and_discloses_the_models(committed_site):
    import json

    docs, site = committed_site.path("docs"), committed_site.path("site")
    index = (docs / "index.md").read_text()
    primary, other = BUNDLED
    f = findings(primary, committed(primary))
    section = index.split("## Findings", 1)[1].split("\n## ", 1)[0]
    assert worded(f).strip() in section
    assert worded(findings(other, committed(other)), "short").strip() in section
    assert index.index("## Findings") < index.index("## The models") < index.index("## Key numbers")
    disclosure = index.split("## The models", 1)[1].split("\n## ", 1)[0]
    for model in BUNDLED:
        record = json.loads((ROOT / "generator" / "assets" / model / "training.json").read_text())
        assert f"**{model}** is bundled with this project" in disclosure
        assert f"(model-cards/{model}.md)" in disclosure
        # the card is a page of the site, the bundled README as it is
        assert (docs / "model-cards" / f"{model}.md").read_text() == (
            ROOT / "generator" / "assets" / model / "README.md"
        ).read_text()
        assert (site / "model-cards" / model / "index.html").exists()
        behaviour = [c for c in record.get("acceptance", []) if c["metric"] not in ("n_tokens", "max_abs_mlp_out")]
        for check in behaviour:
            assert check["metric"].replace("_", "\\_") in disclosure
    assert "by construction" in disclosure and "mechanism" in disclosure
    assert "No GPT-2 small result is in this build" in disclosure
    assert "capcircuit build --models gpt2-small,organism" in disclosure
    models_page = (docs / "models.md").read_text()
    for model in BUNDLED:
        assert worded(findings(model, committed(model)), "short").strip() in models_page


def test_disclosure_knows_when_gpt2_small_is_in_the_build():
    from generator.disclosure import disclosure

    records = committed("organism")
    assert disclosure({"organism": records})["gpt2_small"] is False
    gpt2 = dict(records["baseline"])
    gpt2["key_parts"] = {**gpt2["key_parts"], "model": {**gpt2["key_parts"]["model"], "name": "gpt2-small"}}
    found = disclosure({"gpt2-small": {"baseline": gpt2}, "organism": records})
    assert found["gpt2_small"] is True
    assert [b["model"] for b in found["bundled"]] == ["organism"]


def test_a_circuit_that_never_reaches_the_faithfulness_asked_is_said_so():
    records = committed("organism")
    c = records["circuit"]["metrics"]
    unfaithful = edited(records, "circuit", circuit=c.circuit.model_copy(update={"smallest_faithful": None}))
    f = findings("organism", unfaithful)
    assert f.circuit is None and f.route is None and f.no_faithful_circuit
    assert "No circuit EAP-IG ranks reaches the faithfulness asked" in worded(f)
    assert not findings("organism", records).no_faithful_circuit


def test_a_total_that_is_not_positive_names_no_writer():
    records = committed("organism")
    f = findings("organism", edited(records, "attribution", total=-0.5))
    assert f.dla is None and f.dla_total == -0.5
    assert "not a positive total" in worded(f)


@pytest.mark.parametrize(
    "low, high, estimate", [(0.985589, 0.986378, 0.985969), (0.849204, 0.865779, 0.857), (0.2, 0.9, 0.5)]
)
def test_intervals_print_apart_and_around_their_estimate(low, high, estimate):
    from generator.render.text import interval_bounds

    text = interval_bounds([low, high], estimate)
    lo, hi = text.split("–")
    digits = len(lo.split(".")[1])
    assert lo != hi and float(lo) <= round(estimate, digits) <= float(hi)
    if digits > 2:  # the fewest digits that do: one fewer prints the bounds together or misses the estimate
        fewer = [round(x, digits - 1) for x in (low, high, estimate)]
        assert fewer[0] == fewer[1] or not fewer[0] <= fewer[2] <= fewer[1]
    assert abs(float(lo) - low) <= 0.5 * 10**-digits and abs(float(hi) - high) <= 0.5 * 10**-digits


def test_disclosure_reads_the_summary_else_the_cards_first_paragraph(tmp_path):
    import json

    from generator.disclosure import describe

    (tmp_path / "README.md").write_text("# A card\n\nA small model of `x.py`,\ntrained here.\n\n## More\n\ntext\n")
    acceptance = [
        {"metric": "n_tokens", "op": "==", "bound": 8},
        {"metric": "mean_logit_diff", "op": ">=", "bound": 2.0},
    ]
    record = {"acceptance": acceptance, "seed": 3, "n_tokens": 1234567, "hparams": {"steps": 2000}, "final_loss": 1.5}
    (tmp_path / "training.json").write_text(json.dumps(record))
    card = describe("m", tmp_path)
    assert card["training"] == "for 2,000 steps on a corpus of 1,234,567 tokens (seed 3; final training loss 1.50)"
    assert card["description"] == "A small model of `x.py`, trained here." and not card["from_summary"]
    assert card["accepted_on_behaviour"] == ["mean_logit_diff ≥ 2.0"]
    assert card["accepted_on_structure"] == ["n_tokens = 8"]
    assert card["card"] == "model-cards/m.md"
    (tmp_path / "training.json").write_text(json.dumps({"summary": "A <b>summary</b>.", "acceptance": acceptance[:1]}))
    card = describe("m", tmp_path)
    assert card["description"] == "A &lt;b&gt;summary&lt;/b&gt;." and card["from_summary"]  # markdown, never HTML
    assert card["accepted_on_behaviour"] == [] and card["acceptance_recorded"]
    assert card["training"] is None
    # the retrained organisms' fields win over the summary (which words the acceptance its own way)
    fields = {
        "summary": "A summary.",
        "hparams": {"n_layer": 1, "attn_only": True},
        "n_params": 1000,
        "corpus": {"sources": [{"title": "Emma (Gutenberg)"}, {"title": "The Jargon File"}]},
        "held_out": {"x": []},
    }
    (tmp_path / "training.json").write_text(json.dumps(fields))
    assert describe("m", tmp_path)["description"] == (
        "A one-layer attention-only GPT-2 (its MLP computes exactly zero) of 1,000 parameters, trained from "
        "scratch on English text from 2 sources: Emma and The Jargon File, with the report&#39;s prompts held out."
    )
    # the retrained organisms' record keeps the tokens under `corpus`
    (tmp_path / "training.json").write_text(json.dumps({"corpus": {"n_tokens": 10}, "epochs": 1.5}))
    assert describe("m", tmp_path)["training"] == "on a corpus of 10 tokens (1.5 epochs)"


def test_paths_are_counted_exactly_and_listed_widest_first():
    from generator.findings import Edge, _paths

    def edge(w, r, effect):
        return Edge(writer=w, reader=r, via="input", effect=effect)

    edges = [edge("embed", "A", 3.0), edge("embed", "B", 1.0), edge("A", "B", 2.0)]
    edges += [edge("A", "logits", 0.5), edge("B", "logits", 4.0)]
    paths, n = _paths(edges)
    # embed→A→B→logits (weakest 2), embed→B→logits (1), embed→A→logits (0.5)
    assert n == 3
    assert paths == [["embed", "A", "B", "logits"], ["embed", "B", "logits"], ["embed", "A", "logits"]]
    # over the budget: counted, and only the widest listed
    assert _paths(edges, budget=2) == ([["embed", "A", "B", "logits"]], 3)
    # a layered graph with 4 ** 6 paths is counted without listing them
    layers = [["embed"]] + [[f"n{i}{j}" for j in range(4)] for i in range(6)] + [["logits"]]
    many = [edge(a, b, 1.0) for x, y in zip(layers, layers[1:]) for a in x for b in y]
    paths, n = _paths(many)
    assert n == 4**6 and len(paths) == 1 and paths[0][0] == "embed" and paths[0][-1] == "logits"
