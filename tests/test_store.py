"""The store: records validated against their experiment's metrics schema when saved and read;
a record of an older result schema is stale (re-run by `run`, refused by publishing), not
corrupt. (The probe of broken stores through the CLI is in test_errors.py.)"""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import ROOT, build_report, write_config

from generator import ReportError
from generator.schemas import SCHEMA_VERSION
from generator.store import Store, record_problem


@pytest.fixture
def results(tmp_path):
    folder = tmp_path / "results"
    shutil.copytree(ROOT / "results", folder)
    return folder


def test_committed_records_validate_and_read_typed(results):
    store = Store(results)
    record = store.load("organism", "baseline")
    assert record["key_parts"]["schema"] == SCHEMA_VERSION
    assert (
        record["metrics"].mean_logit_diff
        == json.loads(store.path("organism", "baseline").read_text())["metrics"]["mean_logit_diff"]
    )


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda m: m.pop("mean_logit_diff"), "metrics.mean_logit_diff: Field required"),
        (lambda m: m.update(extra_number=1.0), "metrics.extra_number: unknown field"),
        (lambda m: m["per_prompt"][3].update(clean="high"), "metrics.per_prompt[3].clean: Input should be"),
    ],
)
def test_a_record_off_its_schema_names_the_field(results, edit, problem):
    path = Store(results).path("organism", "baseline")
    record = json.loads(path.read_text())
    edit(record["metrics"])
    assert problem in record_problem(record, "baseline")
    path.write_text(json.dumps(record))
    with pytest.raises(ReportError, match=problem.replace("[", r"\[").replace("]", r"\]")):
        Store(results).load("organism", "baseline")


def test_an_older_schema_is_stale_not_corrupt(tmp_path, results):
    from generator.config import load_config
    from generator.pipeline import plan

    path = Store(results).path("organism", "attribution")
    record = json.loads(path.read_text())
    record["key_parts"].pop("schema")  # as schema 1 wrote it (and with its figures)
    record["figures"] = {"heads": {"kind": "plotly", "figure": {}}}
    path.write_text(json.dumps(record))
    config = load_config(write_config(tmp_path, models=["organism"], experiments={"baseline": {}, "attribution": {}}))
    states = {p.experiment: p for p in plan(config)}
    assert not states["attribution"].corrupt
    assert states["attribution"].reasons == ["schema changed"]
    assert states["baseline"].fresh
    with pytest.raises(ReportError, match="written under result schema 1"):
        Store(results).load("organism", "attribution")
    with pytest.raises(ReportError, match="attribution.json .*schema changed"):
        build_report(tmp_path / "site", results=results, models=["organism"])
