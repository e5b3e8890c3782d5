"""The reproduction check against the notebook's GPT-2 small numbers: the logic, and the baseline
page built from a stored GPT-2-style result made from the reference numbers themselves."""

from __future__ import annotations

import copy
import json
import shutil

import pytest
from conftest import ROOT, build_report, gpt2_tokenizer

from generator import reproduction
from generator.schemas import validate
from generator.store import digest
from generator.tasks import load_task

REFERENCE = reproduction.reference()


def test_the_project_keeps_its_own_copy_of_the_notebooks_numbers():
    assert reproduction.REFERENCE.is_relative_to(ROOT / "generator")
    assert "Learning Capital Letters" in REFERENCE["source"]
    assert REFERENCE["mean_logit_diff"] == pytest.approx(sum(REFERENCE["per_prompt_logit_diff"]) / 100, abs=1e-4)


def test_the_pronoun_task_is_the_notebooks_100_prompts_in_its_order():
    spec = load_task("pronoun")
    assert [p.text for p in spec.prompts] == REFERENCE["prompts"]
    assert list(spec.templates) == REFERENCE["templates"]
    assert all(p.corrupted == p.text.replace(".", ";") for p in spec.prompts)
    male = set(REFERENCE["male_names"])
    assert all(p.answers == ((" He", " he") if p.name in male else (" She", " she")) for p in spec.prompts)


def test_gpt2_tokenizer_gives_8_tokens_and_the_notebooks_answer_ids():
    tokenizer = gpt2_tokenizer()
    for p in load_task("pronoun").prompts:
        for text in (p.text, p.corrupted):
            assert len([tokenizer.bos_token_id] + tokenizer(text).input_ids) == 8, text
    assert tokenizer(" He").input_ids == [REFERENCE["answer_token_ids"][" He"]] == [679]
    assert tokenizer(" he").input_ids == [REFERENCE["answer_token_ids"][" he"]] == [339]


def metrics_from_reference() -> tuple[dict, dict]:
    """Baseline and attribution metrics (the organism's, as stored) holding exactly the
    notebook's numbers where the reproduction check reads them."""
    baseline = json.loads((ROOT / "results" / "organism" / "baseline.json").read_text())["metrics"]
    attribution = json.loads((ROOT / "results" / "organism" / "attribution.json").read_text())["metrics"]
    baseline.update(
        mean_logit_diff=REFERENCE["mean_logit_diff"],
        mean_logit_diff_corrupted=REFERENCE["mean_logit_diff_corrupted_rounded"],
        single_prompt={
            "prompt": REFERENCE["single_prompt_checks"][0]["prompt"],
            "answers": [" He", " he"],
            "logit_diff": REFERENCE["single_prompt_checks"][0]["logit_diff"],
        },
    )
    assert [r["prompt"] for r in baseline["per_prompt"]] == REFERENCE["prompts"]
    for row, value in zip(baseline["per_prompt"], REFERENCE["per_prompt_logit_diff"]):
        row["clean"] = value
    assert baseline["probes"][0]["prompt"] == REFERENCE["test_prompt_period"]["prompt"]
    baseline["probes"][0]["top"] = copy.deepcopy(REFERENCE["test_prompt_period"]["top_tokens"])
    total, logit_diff = REFERENCE["direct_logit_attribution_total"], REFERENCE["mean_logit_diff"]
    attribution.update(total=total, mean_logit_diff=logit_diff, unembed_bias=logit_diff - total)
    return baseline, attribution


def compare(baseline: dict, attribution: dict, judge: bool) -> dict:
    """The check as render runs it: on the typed metrics."""
    return reproduction.compare(validate("baseline", baseline), validate("attribution", attribution), judge)


def test_reference_values_reproduce():
    baseline, attribution = metrics_from_reference()
    check = compare(baseline, attribution, judge=True)
    assert check["reproduces"] and not check["failed"]
    dla = next(r for r in check["rows"] if r["what"].startswith("direct logit attribution"))
    assert dla["ok"] is None and dla["note"].startswith("information")  # never a failure
    assert {r["what"].split(" (")[0] for r in check["rows"]} >= {
        "mean logit difference",
        "every per-prompt logit difference",
    }


def test_the_organisms_own_values_do_not_reproduce_the_notebook():
    baseline, attribution = (
        json.loads((ROOT / "results" / "organism" / f"{e}.json").read_text())["metrics"]
        for e in ("baseline", "attribution")
    )
    check = compare(baseline, attribution, judge=True)
    assert not check["reproduces"] and "mean logit difference" in check["failed"]


def test_one_prompt_moved_by_a_tenth_differs_and_is_named():
    baseline, attribution = metrics_from_reference()
    baseline["per_prompt"][42]["clean"] += 0.1
    check = compare(baseline, attribution, judge=True)
    assert not check["reproduces"]
    assert check["failed"] == [
        f"every per-prompt logit difference (largest difference: prompt 43, “{REFERENCE['prompts'][42]}”)"
    ]


def test_a_swapped_top_token_differs():
    baseline, attribution = metrics_from_reference()
    top = baseline["probes"][0]["top"]
    top[0], top[1] = top[1], top[0]
    check = compare(baseline, attribution, judge=True)
    assert check["failed"] == ["top-10 next tokens after “.” alone (test_prompt)"]


def test_other_models_are_compared_not_judged():
    baseline, attribution = metrics_from_reference()
    baseline["mean_logit_diff"] = 3.0
    check = compare(baseline, attribution, judge=False)
    assert not check["judged"] and all(r["ok"] is None for r in check["rows"])


def test_baseline_page_renders_the_table_from_a_gpt2_style_result(tmp_path):
    """A stored result for `gpt2` whose numbers are the notebook's: the page says it reproduces
    and shows every row; the overview says so in one sentence."""
    results = tmp_path / "store"
    shutil.copytree(ROOT / "results" / "organism", results / "gpt2")
    for experiment in ("baseline", "attribution"):
        path = results / "gpt2" / f"{experiment}.json"
        record = json.loads(path.read_text())
        record["key_parts"]["model"].update(name="gpt2", source="hub", location="gpt2")
        record["provenance"]["model"] = "gpt2"
        baseline, attribution = metrics_from_reference()
        if experiment == "baseline":
            record["metrics"] = baseline
        else:
            record["metrics"]["total"] = attribution["total"]
        record["key"] = digest(record["key_parts"])
        path.write_text(json.dumps(record))
    config = build_report(
        tmp_path, results=results, models=["gpt2"], experiments={"baseline": {}, "attribution": {}}, allow_stale=True
    )
    page = (config.path("docs") / "baseline.md").read_text()
    assert "**This build reproduces the notebook**" in page
    assert page.count("✓ reproduces") >= 5 and "information" in page and "✗" not in page
    assert (
        "This build **reproduces the notebook's numbers** for GPT-2 small"
        in (config.path("docs") / "index.md").read_text()
    )
    assert (config.path("site") / "baseline" / "index.html").exists()


def test_baseline_page_on_the_organism_labels_the_notebooks_values(tmp_path):
    config = build_report(tmp_path, models=["organism"], experiments={"baseline": {}, "attribution": {}})
    page = (config.path("docs") / "baseline.md").read_text()
    assert "are shown beside its own for comparison, not as a check" in page
    assert "✓" not in page and "Notebook (gpt2-small)" in page
