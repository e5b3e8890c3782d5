"""The pipeline's key functions (generator/pipeline.py: input_key, model_part, comparable) on
parts built here: no model, no task, in well under a second, so `make mutation` runs them per
mutant. That every field of a real key changes it is tested in test_keys.py."""

from __future__ import annotations

import copy
from types import SimpleNamespace

from generator import pipeline
from generator.models import ModelRef
from generator.store import digest

PARTS = {
    "inputs": {"patching": "abc"},
    "model": {"name": "gpt2", "source": "hub", "location": "gpt2", "weights": "w1"},
    "task": "t1",
    "params": {"k": 1},
    "code": "c1",
    "versions": {"torch": "2.0"},
    "seed": 0,
    "dtype": "float32",
    "schema": 2,
}


def test_input_key_is_every_part_but_the_versions():
    key = pipeline.input_key(PARTS)
    assert key == digest({k: v for k, v in PARTS.items() if k != "versions"})
    assert pipeline.input_key({**PARTS, "versions": {"torch": "9.9"}}) == key
    for field in PARTS:
        if field != "versions":
            assert pipeline.input_key({**PARTS, field: "other"}) != key, field


def test_model_part_names_the_model_where_it_lives_and_its_weights(monkeypatch):
    from generator import models

    monkeypatch.setattr(models, "fingerprint", lambda ref: f"weights of {ref.name}")
    hub = ModelRef(name="gpt2", source="hub", location="openai-community/gpt2")
    assert pipeline.model_part(hub) == {
        "name": "gpt2",
        "source": "hub",
        "location": "openai-community/gpt2",
        "weights": "weights of gpt2",
    }
    local = ModelRef(name="mine", source="local", location="/home/me/model")
    assert pipeline.model_part(local) == {
        "name": "mine",
        "source": "local",
        "location": "local",  # not its folder: its weights identify it
        "weights": "weights of mine",
    }
    # a named revision joins the part (and so the key); without one the part is as it was
    pinned = ModelRef(name="pythia@step1", source="hub", location="EleutherAI/pythia-70m", revision="step1")
    assert pipeline.model_part(pinned)["revision"] == "step1"
    assert "revision" not in pipeline.model_part(hub)


def test_comparable_takes_the_stored_revision_only_for_an_uncached_hub_model():
    stored = {"key_parts": {**PARTS, "model": {**PARTS["model"], "weights": "rev-7"}}}
    assert pipeline.comparable(PARTS, stored) is PARTS  # known weights: compared as they are
    uncached = {**PARTS, "model": {**PARTS["model"], "weights": "uncached"}}
    before = copy.deepcopy(uncached)
    assert pipeline.comparable(uncached, None) is uncached
    out = pipeline.comparable(uncached, stored)
    assert out == {**PARTS, "model": {**PARTS["model"], "weights": "rev-7"}}
    assert uncached == before  # the caller's parts are not changed
    for odd in ({"key_parts": {"model": "gpt2"}}, {"key_parts": {"model": {"name": "gpt2"}}}):
        assert pipeline.comparable(uncached, odd) == uncached


def test_key_parts_holds_everything_that_determines_a_result(monkeypatch):
    """key_parts on a stand-in experiment (a task, an extra task, one result it reads), its code,
    versions and tasks replaced by labelled stand-ins: each part is what it stands for, each task
    is read once and its digest kept, and the seed, the dtype and an upstream key change the key."""
    from generator import experiments, tasks

    specs = {
        "probe": SimpleNamespace(task="t1", extra_tasks=("t2",), after=("patching",), module="mod.probe"),
        "plain": SimpleNamespace(task="t1", extra_tasks=(), after=(), module="mod.plain"),
    }
    read = []

    def load_task(name):
        read.append(name)
        return SimpleNamespace(digest=lambda: f"d-{name}")

    monkeypatch.setattr(experiments, "get", lambda name: specs[name])
    monkeypatch.setattr(tasks, "load_task", load_task)
    monkeypatch.setattr(pipeline, "source_fingerprint", lambda module: f"code of {module}")
    monkeypatch.setattr(pipeline, "current_versions", lambda: {"torch": "9"})
    config = SimpleNamespace(experiments={"probe": {"k": 1}, "plain": {}}, seed=7, dtype="float64")
    upstream = {"patching": "up-1", "other": "up-2"}
    digests = {"t0": "kept"}

    def parts(experiment="probe", config=config, upstream=upstream):
        return pipeline.key_parts(config, {"name": "m"}, experiment, upstream, digests)

    probe = parts()
    assert probe == {
        "inputs": {"patching": "up-1"},  # only what it reads
        "model": {"name": "m"},
        "task": "d-t1",
        "extra_tasks": {"t2": "d-t2"},
        "params": {"k": 1},
        "code": "code of mod.probe",
        "versions": {"torch": "9"},
        "seed": 7,
        "dtype": "float64",
        "schema": pipeline.SCHEMA_VERSION,
    }
    assert read == ["t1", "t2"] and digests == {"t0": "kept", "t1": "d-t1", "t2": "d-t2"}
    plain = parts("plain")
    assert read == ["t1", "t2"]  # each task file is read once, then its digest reused
    assert plain == {
        **{k: v for k, v in probe.items() if k != "extra_tasks"},
        "inputs": {},
        "params": {},
        "code": "code of mod.plain",
    }
    digests["t2"] = "edited"
    assert parts()["extra_tasks"] == {"t2": "edited"}
    key = digest(parts())
    for changed in (
        parts(upstream={**upstream, "patching": "up-3"}),
        parts(config=SimpleNamespace(**{**vars(config), "seed": 8})),
        parts(config=SimpleNamespace(**{**vars(config), "dtype": "float32"})),
    ):
        assert digest(changed) != key
