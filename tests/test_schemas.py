"""The typed metrics (generator.schemas): every stored result matches its experiment's schema
exactly; a missing, renamed or mistyped field is one line naming its path; and the schemas
import no torch (the render side reads them)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from generator.experiments import EXPERIMENTS
from generator.heads import head_name, node_name
from generator.schemas import SCHEMAS, validate
from generator.words import compare_models

RESULTS = sorted(p for p in (ROOT / "results").glob("*/*.json") if not p.name.endswith(".timing.json"))


def stored(model: str, experiment: str) -> dict:
    record = json.loads((ROOT / "results" / model / f"{experiment}.json").read_text())
    return record["metrics"]


def test_every_experiment_has_a_schema():
    assert set(SCHEMAS) == set(EXPERIMENTS)


@pytest.mark.parametrize("path", RESULTS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_every_stored_result_matches_its_schema_exactly(path):
    metrics = stored(path.parent.name, path.stem)
    typed = validate(path.stem, metrics)
    # nothing dropped, renamed or added: the typed form dumps back to the stored JSON
    assert typed.model_dump(mode="json", exclude_unset=True) == metrics


def test_the_results_cover_every_experiment_and_their_null_cases():
    """The stored results exercise the optional branches the schemas allow."""
    assert {p.stem for p in RESULTS} == set(SCHEMAS)
    one_layer = {p.stem: stored("organism-attn-only-1l", p.stem) for p in RESULTS}
    # one layer: no later head reads a head (no q/k/v grids), only its MLP and the logits
    assert all(not s["grids"] for s in one_layer["path_patching"]["senders"])
    assert one_layer["patching"]["agreement"]["mlp_out"]["pearson"] is None
    assert any(not g["heads"] for g in one_layer["attention"]["groups"])  # an empty group: heads only
    assert validate("attention", one_layer["attention"]).groups[-1].final_mean is None


def test_metrics_read_by_attribute_hold_the_stored_values():
    raw = stored("organism", "baseline")
    typed = validate("baseline", raw)
    assert typed.mean_logit_diff == raw["mean_logit_diff"]
    assert typed.per_prompt[3].clean == raw["per_prompt"][3]["clean"]
    assert typed.probes[0].top[0].token == raw["probes"][0]["top"][0]["token"]
    with pytest.raises(ValueError):  # frozen: a template or a later experiment cannot change them
        typed.mean_logit_diff = 0.0


def failure(experiment: str, metrics: dict) -> str:
    with pytest.raises(ValueError) as e:
        validate(experiment, metrics)
    message = str(e.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize(
    "experiment, container, key, where",
    [
        ("baseline", lambda m: m["per_prompt"][3], "clean", "metrics.per_prompt[3].clean"),
        ("circuit", lambda m: m["methods"]["eap"]["cpr"], "area", "metrics.methods.eap.cpr.area"),
    ],
)
def test_a_missing_field_is_one_line_naming_its_path(experiment, container, key, where):
    metrics = stored("organism", experiment)
    del container(metrics)[key]
    assert failure(experiment, metrics) == f"{where}: Field required"


@pytest.mark.parametrize(
    "experiment, container, key, where",
    [
        ("baseline", lambda m: m["probes"][1], "answer_rank", "metrics.probes[1]"),
        ("circuit", lambda m: m["drawn"]["edges"][0], "score", "metrics.drawn.edges[0]"),
    ],
)
def test_a_renamed_field_is_named_missing_and_unknown(experiment, container, key, where):
    metrics = stored("organism", experiment)
    record = container(metrics)
    record[key + "_renamed"] = record.pop(key)
    message = failure(experiment, metrics)
    assert message.startswith(f"{where}.{key}: Field required; {where}.{key}_renamed: unknown field (allowed: ")
    assert f" {key}," in message or f" {key})" in message  # the allowed list names the right key


@pytest.mark.parametrize(
    "experiment, container, key, bad, where",
    [
        ("baseline", lambda m: m["model_shape"], "n_layers", 4.0, "metrics.model_shape.n_layers"),
        ("baseline", lambda m: m, "performs_task", "yes", "metrics.performs_task"),
        ("circuit", lambda m: m["held_out"], "n_scoring", "50", "metrics.held_out.n_scoring"),
        ("circuit", lambda m: m["methods"]["eap"]["cpr"]["low"], 2, "0.5", "metrics.methods.eap.cpr.low[2]"),
    ],
)
def test_a_wrong_type_is_one_line_naming_its_path_and_value(experiment, container, key, bad, where):
    metrics = stored("organism", experiment)
    container(metrics)[key] = bad
    message = failure(experiment, metrics)
    assert message.startswith(f"{where}: ") and message.endswith(f"(got {bad!r})")


def test_an_int_is_a_float_but_no_other_type_is():
    metrics = stored("organism", "baseline")
    metrics["mean_logit_diff"] = 7  # JSON writes 7.0 as 7
    assert validate("baseline", metrics).mean_logit_diff == 7.0
    metrics["mean_logit_diff"] = True
    assert failure("baseline", metrics).startswith("metrics.mean_logit_diff: Input should be a valid number")


def test_a_wrong_circuit_node_names_the_field_not_the_union_tag():
    metrics = stored("organism", "circuit")
    edge = next(e for e in metrics["drawn"]["edges"] if e["writer"]["kind"] == "mlp")
    i = metrics["drawn"]["edges"].index(edge)
    del edge["writer"]["layer"]
    assert failure("circuit", metrics) == f"metrics.drawn.edges[{i}].writer.layer: Field required"


def test_a_sweep_of_the_wrong_shape_names_the_cell():
    metrics = stored("organism", "patching")
    metrics["sweeps"]["head_out_by_pos"][1][2][0] = None
    assert failure("patching", metrics) == (
        "metrics.sweeps.head_out_by_pos[1][2][0]: Input should be a valid number (got None)"
    )


def test_many_problems_stay_one_line():
    metrics = stored("organism", "baseline")
    for row in metrics["per_prompt"]:
        del row["clean"]
    message = failure("baseline", metrics)
    assert message.count("Field required") == 3 and message.endswith("; and 97 more")


def test_an_unknown_experiment_is_named():
    with pytest.raises(ValueError, match="no metrics schema for experiment 'nope' \\(known: baseline, "):
        validate("nope", {})


def test_the_schemas_import_no_torch():
    """In a fresh interpreter where importing torch fails, the schemas import and validate."""
    path = ROOT / "results" / "organism" / "baseline.json"
    code = (
        "import sys, json\n"
        "for name in ('torch', 'transformer_lens', 'transformers'):\n"
        "    sys.modules[name] = None\n"
        "from generator.schemas import validate\n"
        f"validate('baseline', json.loads(open({str(path)!r}).read())['metrics'])\n"
        "print('ok')\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, cwd=ROOT)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_the_words_read_typed_metrics():
    """The models comparison and the head / node filters on typed metrics give what they give
    on the stored dicts."""
    raw = {m: stored(m, "baseline") for m in ("organism", "organism-attn-only-1l")}
    results = {m: {"baseline": {"metrics": validate("baseline", b)}} for m, b in raw.items()}
    cmp = compare_models(results)
    effects = {m: b["mean_logit_diff"] - b["mean_logit_diff_corrupted"] for m, b in raw.items()}
    assert {r["model"]: r["effect"] for r in cmp["rows"]} == effects
    assert cmp["strongest"]["model"] == max(effects, key=effects.get)

    circuit = stored("organism", "circuit")
    typed = validate("circuit", circuit)
    for node, raw_node in zip(
        typed.download.writers + typed.download.readers, circuit["download"]["writers"] + circuit["download"]["readers"]
    ):
        assert node_name(node) == node_name(raw_node)
    assert [head_name(h) for h in typed.drawn.heads] == [
        f"L{h['layer']}H{h['head']}" for h in circuit["drawn"]["heads"]
    ]
