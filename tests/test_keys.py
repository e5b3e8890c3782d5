"""Every part of a result's cache key changes the key: each field of key_parts, driven from
what it stands for (the config's seed and dtype, each parameter of each experiment, each field
of the model's part, each upstream result, each task file's content, the code, the package
versions, the schema), changes both the key and what `status` says is stale."""

from __future__ import annotations

import copy
import shutil

import pytest
from conftest import repo_config, write_config

from generator import experiments, pipeline, tasks
from generator.config import load_config
from generator.store import digest, stale_reasons

MODEL = {"name": "organism", "source": "local", "location": "local", "weights": "w0"}
FIELDS = {"inputs", "model", "task", "params", "code", "versions", "seed", "dtype", "schema"}


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    folder = tmp_path_factory.mktemp("keys")
    return load_config(write_config(folder, experiments=repo_config()["experiments"]))


def parts(config, experiment, upstream=None, digests=None, model=MODEL):
    upstream = upstream or {e: f"upstream-{e}" for e in config.experiments}
    return pipeline.key_parts(config, model, experiment, upstream, {} if digests is None else digests)


def changed(value):
    """A different value of the same kind."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, (int, float)):
        return value + 1 if value < 1 else value / 2
    if isinstance(value, str):
        return value + "x"
    if isinstance(value, list):
        return value[:-1] if len(value) > 1 else [*value, value[0] if value else 1]
    if value is None:
        return 1
    raise AssertionError(f"no change for {value!r}")


def assert_changes(before: dict, after: dict, field: str):
    assert digest(before) != digest(after), f"{field} does not change the key"
    record = {"key_parts": before}
    assert stale_reasons(record, after), f"{field} changed but the result is fresh"
    assert stale_reasons(record, before) == []


def experiment_names():
    return list(repo_config()["experiments"])


def test_key_parts_has_every_field(config):
    for experiment in config.experiments:
        spec = experiments.get(experiment)
        got = set(parts(config, experiment))
        assert got == FIELDS | ({"extra_tasks"} if spec.extra_tasks else set()), experiment


@pytest.mark.parametrize("experiment", experiment_names())
@pytest.mark.parametrize("field", ["seed", "dtype"])
def test_seed_and_dtype_change_every_key(config, experiment, field):
    other = config.model_copy(update={field: changed(config.seed) if field == "seed" else "float64"})
    assert_changes(parts(config, experiment), parts(other, experiment), field)


def params_cases():
    from generator.config import validate_params

    checked = validate_params(repo_config()["experiments"])
    return [(e, name) for e, p in checked.items() for name in p]


@pytest.mark.parametrize(("experiment", "name"), params_cases())
def test_every_parameter_changes_its_key(config, experiment, name):
    params = copy.deepcopy(config.experiments)
    params[experiment][name] = changed(params[experiment][name])
    other = config.model_copy(update={"experiments": params})
    assert_changes(parts(config, experiment), parts(other, experiment), f"{experiment}.{name}")


@pytest.mark.parametrize("name", sorted(MODEL))
def test_every_model_field_changes_the_key(config, name):
    other = {**MODEL, name: MODEL[name] + "-other"}
    for experiment in config.experiments:
        assert_changes(parts(config, experiment), parts(config, experiment, model=other), f"model.{name}")


def test_every_upstream_result_changes_the_key(config):
    base = {e: f"upstream-{e}" for e in config.experiments}
    checked = 0
    for experiment in config.experiments:
        for upstream in experiments.get(experiment).after:
            other = {**base, upstream: "another"}
            assert_changes(parts(config, experiment, base), parts(config, experiment, other), f"inputs.{upstream}")
            checked += 1
    assert checked >= 2  # attention reads attribution, path_patching reads patching


def test_every_task_digest_changes_the_key(config):
    for experiment in config.experiments:
        spec = experiments.get(experiment)
        for task in (spec.task, *spec.extra_tasks):
            digests = {t: f"digest-{t}" for t in tasks.available()}
            before = parts(config, experiment, digests=dict(digests))
            after = parts(config, experiment, digests={**digests, task: "edited"})
            assert_changes(before, after, f"task {task}")


@pytest.mark.parametrize(("where", "value"), [("code", "other code"), ("versions", {"torch": "0"}), ("schema", 999)])
def test_code_versions_and_schema_change_the_key(config, monkeypatch, where, value):
    before = parts(config, "baseline")
    name = {"code": "source_fingerprint", "versions": "current_versions", "schema": "SCHEMA_VERSION"}[where]
    monkeypatch.setattr(pipeline, name, value if where == "schema" else lambda *a: value)
    assert_changes(before, parts(config, "baseline"), where)


@pytest.mark.parametrize(
    ("task", "old", "new"),
    [
        ("pronoun", "John", "Jon"),  # a name
        ("pronoun", "corruption:\n  replace:", "corruption:\n  replace:"),  # unchanged: same digest
        ("exceptions", "expected: capital", "expected: lowercase"),  # a family's expectation
    ],
)
def test_editing_a_task_file_changes_its_digest(tmp_path, monkeypatch, task, old, new):
    data = tmp_path / "data"
    shutil.copytree(tasks.DATA_DIR, data)
    before = tasks.load_task(task).digest()
    path = data / f"{task}.yaml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    monkeypatch.setattr(tasks, "DATA_DIR", data)
    after = tasks.load_task(task).digest()
    assert (after != before) == (old != new)


def test_input_key_holds_every_part_but_the_versions(config):
    base = parts(config, "attention")
    key = pipeline.input_key(base)
    assert key == pipeline.input_key({**base, "versions": {"torch": "0"}})  # versions: not an input change
    for field in sorted(set(base) - {"versions"}):
        assert pipeline.input_key({**base, field: "changed"}) != key, field


def test_an_uncached_hub_model_takes_the_stored_weights_and_nothing_else(config):
    base = parts(config, "baseline")
    uncached = {**base, "model": {**MODEL, "source": "hub", "weights": "uncached"}}
    stored = {"key_parts": {**base, "model": {**MODEL, "source": "hub", "weights": "rev-1"}, "seed": 99}}
    got = pipeline.comparable(uncached, stored)
    assert got == {**uncached, "model": {**uncached["model"], "weights": "rev-1"}}  # not the stored seed
    assert uncached["model"]["weights"] == "uncached"  # the caller's parts are not changed
    assert pipeline.comparable(uncached, None) is uncached  # nothing stored: nothing to compare
    assert pipeline.comparable(base, stored) is base  # weights known here: they are what counts
    assert pipeline.comparable(uncached, {"key_parts": {"model": "old"}}) is uncached
    assert pipeline.comparable(uncached, {"key_parts": {"model": {"name": "x"}}}) is uncached
