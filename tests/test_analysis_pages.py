"""The Attribution, Breakdowns, Attention, Exceptions and Models compared pages: rendered from a
real results store, every number from the results, statements that follow the data, and a
strict mkdocs build. Uses a GPT-2-tokenizer model (the exceptions task needs its vocabulary)."""

from __future__ import annotations

import json
import shutil

import pytest

from generator.config import load_config
from generator.pipeline import run
from generator.render import render
from generator.store import Store
from tests.conftest import write_config

EXPERIMENTS = {
    "baseline": {},
    "attribution": {"top_k": 3},
    "attention": {"top_k": 2},
    "exceptions": {},
    "patching": {"head_by_position": False},
}


@pytest.fixture(scope="module")
def results(tmp_path_factory, tiny_gpt2_dir):
    folder = tmp_path_factory.mktemp("analysis")
    config = load_config(write_config(folder, models=[str(tiny_gpt2_dir)], device="cpu", experiments=EXPERIMENTS))
    run(config, log=lambda message: None)
    return config.path("results")


def rendered(tmp_path, results, models, edit=None):
    shutil.copytree(results, tmp_path / "results")
    if edit:
        edit(Store(tmp_path / "results"))
    config = load_config(write_config(tmp_path, models=models, device="cpu", experiments=EXPERIMENTS))
    render(config, log=lambda message: None)
    return config, {
        p: (config.path("docs") / f"{p}.md").read_text()
        for p in ("attribution", "breakdowns", "attention", "exceptions", "models")
    }


def slug(model: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in model)


def test_pages_state_the_stored_numbers(tmp_path, results, tiny_gpt2_dir):
    model = str(tiny_gpt2_dir)
    _, pages = rendered(tmp_path, results, [model])
    store = Store(results)
    a = store.load(slug(model), "attribution")["metrics"]
    e = store.load(slug(model), "exceptions")["metrics"]
    assert f"**{a['total']:.2f}**" in pages["attribution"]
    for head in a["top_positive"] + a["top_negative"]:
        assert f"| {head['head']} | {head['attribution']:.3f} |" in pages["attribution"]
    # a statement that depends on the data appears exactly when the data support it
    assert ("does **not** prefer the capital" in pages["attribution"]) == (a["total"] <= 0)
    assert f"**{a['top_component']['label']}**" in pages["attribution"]
    for f in e["families"]:
        assert f"| {f['family']} | {f['expected']} |" in pages["exceptions"]
        assert f"{f['mean_log_odds']:.2f}" in pages["exceptions"]
    control = next(f for f in e["families"] if f["family"] == e["control"])
    assert ("Even after an ordinary sentence end" in pages["exceptions"]) == (control["mean_log_odds"] <= 0)
    for g in store.load(slug(model), "attention")["metrics"]["groups"]:
        for focus in g["focus"]:
            sentence = f"**{focus['head']}** attends from the final position mostly to **{focus['position']}**"
            assert sentence in pages["attention"]
    assert f"Only **{model}** ran in this build" in pages["models"]
    assert "template 1" in pages["breakdowns"] and "| male |" in pages["breakdowns"]


def test_models_compared_names_the_model_with_the_strongest_effect(tmp_path, results, tiny_gpt2_dir):
    model = str(tiny_gpt2_dir)

    def add_stronger_model(store):
        # a second model: the same results with a larger clean logit difference
        shutil.copytree(store.root / slug(model), store.root / "stronger")
        path = store.path("stronger", "baseline")
        record = json.loads(path.read_text())
        record["metrics"]["mean_logit_diff"] += 5
        record["provenance"]["model"] = "stronger"
        path.write_text(json.dumps(record))

    _, pages = rendered(tmp_path, results, [model, "stronger"], add_stronger_model)
    assert "**stronger** has the strongest period effect" in pages["models"]
    assert "It also has the largest clean logit difference" in pages["models"]
    assert pages["models"].count(f"| {model} |") == 1 and pages["models"].count("| stronger |") == 1


def test_pages_build_with_mkdocs_strict(tmp_path, results, tiny_gpt2_dir):
    from generator.site import build_site

    config, _ = rendered(tmp_path, results, [str(tiny_gpt2_dir)])
    site = build_site(config, log=lambda message: None)
    for page in ("attribution", "breakdowns", "attention", "exceptions", "models"):
        assert (site / page / "index.html").exists()
