"""The pipeline's key functions (generator/pipeline.py: input_key, model_part, comparable) on
parts built here: no model, no task, in well under a second, so `make mutation` runs them per
mutant. That every field of a real key changes it is tested in test_keys.py."""

from __future__ import annotations

import copy

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
