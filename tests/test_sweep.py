"""Sweeps (generator/sweep.py, templates/sweep.md.j2, generator/figures/sweep.py), revisions in
the config and the key, and the organism's training checkpoints (generator/organism/train.py).

The page is checked on a real sweep: a short training run of the organism that keeps three
checkpoints, each run through baseline, attribution and a small circuit experiment; its numbers
are compared with the stored JSON read directly, and its prose with a naive reading of it."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest
import yaml
from conftest import small_tasks, write_config

from generator import ReportError
from generator.config import load_config
from generator.organism.train import (
    checkpoint_keeper,
    checkpoint_steps,
    fit,
    hparams,
    params_digest,
    train,
    train_tokenizer,
)
from generator.pipeline import plan, run
from generator.render.jinja import tab_anchor
from generator.store import Store, digest
from generator.sweep import first_from, overlap

SMALL_CIRCUIT = {
    "bootstrap": 100,
    "random_seeds": 1,
    "position_aware": False,
    "held_out": False,
    "node_ranking": False,
    "ig_steps": 1,
    "sizes": [0.1, 1.0],
    "refine": 1,
}


# ---- the config ---------------------------------------------------------------------------


def sweep_of(*orders, **extra) -> dict:
    return {"models": [{"model": f"organism@step-{o}", "order": o} for o in orders], **extra}


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"models": ["gpt2@"]}, r"models\.0: .*MODEL@REVISION.*\(got 'gpt2@'\)"),
        ({"models": ["@main"]}, r"models\.0: .*MODEL@REVISION.*\(got '@main'\)"),
        ({"sweep": sweep_of(2, 1)}, r"sweep\.models: each model needs its own order, listed from the smallest"),
        ({"sweep": sweep_of(1, 1)}, r"sweep\.models: each model needs its own order"),
        ({"sweep": sweep_of(1)}, r"sweep\.models: .*at least 2"),
        ({"sweep": {**sweep_of(1, 2), "axis": "size"}}, r"sweep\.axis: .*'parameters' or 'step' \(got 'size'\)"),
        ({"sweep": sweep_of(0, 2)}, r"sweep: on a log axis every order must be above 0 \(got 0\).*log_axis: false"),
        ({"sweep": {**sweep_of(1, 2), "colour": "red"}}, r"sweep\.colour: unknown field \(allowed: title, axis"),
    ],
)
def test_bad_revisions_and_sweeps_name_the_field_the_value_and_what_is_allowed(tmp_path, fields, message):
    write_config(tmp_path, experiments={"baseline": {}}, **fields)
    with pytest.raises(ReportError, match=message) as e:
        load_config(tmp_path / "report.yaml")
    assert len(str(e.value).splitlines()) == 2  # the file, then the field


def test_a_sweep_adds_its_models_after_those_listed(tmp_path):
    sweep = {"models": [{"model": "gpt2", "order": 124e6}, {"model": "gpt2-medium", "label": "M", "order": 355e6}]}
    write_config(tmp_path, experiments={"baseline": {}}, sweep=sweep)
    config = load_config(tmp_path / "report.yaml")
    assert config.models == ["gpt2", "gpt2-medium"]  # no models: the sweep's alone
    assert [config.sweep.label(m) for m in config.models] == ["gpt2", "M"]
    write_config(tmp_path, experiments={"baseline": {}}, sweep=sweep, models=["organism", "gpt2"])
    assert load_config(tmp_path / "report.yaml").models == ["organism", "gpt2", "gpt2-medium"]


def test_the_revision_is_part_of_the_key(tmp_path):
    """A hub model's revision is in its key: a stored result of another revision is stale
    ("model changed"), and a model named without one keeps the key it had."""
    write_config(tmp_path, models=["gpt2@step1000", "gpt2"], experiments={"baseline": {}}, device="cpu")
    config = load_config(tmp_path / "report.yaml")
    with_revision, without = plan(config)
    assert with_revision.key_parts["model"]["revision"] == "step1000"
    assert with_revision.key_parts["model"]["location"] == "gpt2"  # the same hub model
    assert "revision" not in without.key_parts["model"]
    # a result stored for this folder under another revision (metrics from the committed store)
    metrics = json.loads((Path(__file__).parents[1] / "results/organism/baseline.json").read_text())["metrics"]
    for revision, state in (("step2000", "stale: model changed"), ("step1000", "fresh")):
        parts = {**with_revision.key_parts, "model": {**with_revision.key_parts["model"], "revision": revision}}
        record = {"metrics": metrics, "key": digest(parts), "key_parts": parts}
        record["provenance"] = {k: "" for k in ("generator", "config", "device", "seed", "dtype", "model", "versions")}
        Store(config.path("results")).save(with_revision.slug, "baseline", record, {"wall_s": 1.0})
        assert plan(config)[0].state == state


def test_a_local_revision_is_a_checkpoint_sub_folder(tmp_path):
    from generator.models import resolve

    with pytest.raises(ReportError, match=r"has no checkpoint folder 'step-9' \(its checkpoints: none\)"):
        resolve(f"{tmp_path}@step-9")
    with pytest.raises(ReportError, match=r"has no checkpoint folder '\.\./x'"):
        resolve(f"{tmp_path}@../x")


# ---- checkpoints of a training run --------------------------------------------------------


def test_checkpoint_steps_are_log_spaced():
    steps = checkpoint_steps(1200, 8)
    assert len(steps) == 8 and steps[0] == 1 and steps[-1] == 1200
    ideal = 1200 ** (1 / 7)  # the constant ratio of exactly log-spaced steps
    for a, b in zip(steps, steps[1:]):
        assert b > a and abs(b / a - ideal) < 0.5 * ideal
    assert checkpoint_steps(6, 3) == [1, 2, 6]
    assert checkpoint_steps(3, 8) == [1, 2, 3]  # fewer where steps round together
    assert checkpoint_steps(1200, 0) == [] and checkpoint_steps(1200, 1) == [1200]


def test_keeping_checkpoints_leaves_the_run_unchanged(tmp_path):
    """The same tiny training with and without checkpoints ends in the same parameters; each
    checkpoint holds the weights of its step (the last: the final ones)."""
    import torch
    from safetensors.torch import load_file
    from transformers import GPT2Config, GPT2LMHeadModel

    tok = train_tokenizer(["He said so. she said no; they ran to the house."] * 20, 300)
    hp = hparams("organism", {"steps": 5, "batch_size": 4, "warmup_steps": 2, "n_positions": 16})
    rng = random.Random(0)
    rows = [[0] + [rng.randrange(1, tok.get_vocab_size()) for _ in range(rng.randrange(3, 15))] for _ in range(40)]

    def tiny():  # seeded when built, right before its training (which draws no random numbers: no dropout)
        torch.manual_seed(0)
        config = GPT2Config(
            vocab_size=tok.get_vocab_size(),
            n_positions=16,
            n_embd=16,
            n_layer=1,
            n_head=2,
            resid_pdrop=0.0,
            embd_pdrop=0.0,
            attn_pdrop=0.0,
            bos_token_id=0,
            eos_token_id=0,
        )
        return GPT2LMHeadModel(config)

    plain = tiny()
    fit(plain, rows, hp, 0, False, "plain")
    folder = tmp_path / "ck"
    kept = tiny()
    fit(kept, rows, hp, 0, False, "kept", on_step=checkpoint_keeper(folder, [1, 3, 5], tok, hp, "organism"))
    assert params_digest(plain) == params_digest(kept)
    assert sorted(p.name for p in folder.iterdir()) == ["step-000001", "step-000003", "step-000005", "sweep.yaml"]
    last = load_file(folder / "step-000005" / "model.safetensors")
    first = load_file(folder / "step-000001" / "model.safetensors")
    final = kept.state_dict()
    assert all(torch.equal(last[k], final[k]) for k in last)
    assert not all(torch.equal(first[k], final[k]) for k in first)
    sweep = yaml.safe_load((folder / "sweep.yaml").read_text())
    assert [(m["model"], m["order"]) for m in sweep["models"]] == [(f"{folder}@step-{s:06d}", s) for s in (1, 3, 5)]


# ---- what the page says, on planted sequences -----------------------------------------------


def test_first_from_is_where_a_property_appears_and_stays():
    rows = lambda *values: [{"x": v, "i": i} for i, v in enumerate(values)]  # noqa: E731
    assert first_from(rows(False, False, True, True), "x")["i"] == 2
    assert first_from(rows(True, False, True), "x")["i"] == 2  # lost and found again: from its return
    assert first_from(rows(True, True), "x")["i"] == 0
    assert first_from(rows(True, False), "x") is None  # gone by the end
    assert overlap({"a", "b"}, {"b", "c"}) == 1 / 3 and overlap(set(), set()) == 1.0


# ---- a real sweep: the organism's checkpoints ------------------------------------------------


@pytest.fixture(scope="module")
def sweep_report(tmp_path_factory, prepare_once):
    """A 6-step training run of the organism keeping 3 checkpoints, and a report over them on
    few prompts (conftest.small_tasks: 8 of the pronoun task's), so that it runs in seconds."""
    import generator.organism.train
    import generator.tasks
    from generator.render import render

    root = tmp_path_factory.mktemp("sweep")
    ck = root / "ck"
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(generator.organism.train, "prepare", prepare_once)  # the corpus, built once per run
        train(root / "final", model="organism", steps=6, progress=False, check=False, checkpoints=3, checkpoint_dir=ck)
    sweep = yaml.safe_load((root / "ck" / "sweep.yaml").read_text())
    experiments = {"baseline": {}, "attribution": {}, "circuit": SMALL_CIRCUIT}
    config = load_config(write_config(root, experiments=experiments, sweep=sweep, device="cpu"))
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(generator.tasks, "DATA_DIR", small_tasks(root / "tasks"))
        run(config, log=lambda message: None)
        render(config, log=lambda message: None)
        yield root, config, patch


def test_the_last_checkpoint_is_the_trained_model(sweep_report):
    root, config, _ = sweep_report
    assert config.models == [f"{root / 'ck'}@step-{s:06d}" for s in (1, 2, 6)]
    last = root / "ck" / "step-000006" / "model.safetensors"
    assert last.read_bytes() == (root / "final" / "model.safetensors").read_bytes()


def cells(page: str) -> list[list[str]]:
    """The key-numbers table's rows, as cells."""
    table = page.split("## Key numbers", 1)[1]
    return [[c.strip() for c in line.strip("|").split("|")] for line in table.splitlines() if line.startswith("| <a")]


def test_the_sweep_page_states_the_stored_numbers(sweep_report):
    root, config, _ = sweep_report
    page = (root / "docs" / "sweep.md").read_text()
    raw = {
        m: {e: json.loads((root / "results" / slug / f"{e}.json").read_text())["metrics"] for e in config.experiments}
        for m, slug in ((m, re.sub(r"[^A-Za-z0-9._-]", "_", m)) for m in config.models)
    }
    rows = cells(page)
    assert [r[0] for r in rows] == [
        f'<a href="../baseline/#{tab_anchor(m)}">step {s}</a>' for s, m in zip((1, 2, 6), config.models)
    ]
    edges = {}
    for row, m in zip(rows, config.models):
        b, c = raw[m]["baseline"], raw[m]["circuit"]
        assert row[2] == f"{b['mean_logit_diff']:.2f}" and row[3] == f"{b['mean_logit_diff_corrupted']:.2f}"
        smallest = c["circuit"]["smallest_faithful"]
        if smallest:
            assert row[4].endswith(f">{smallest['edges']} edges, f = {smallest['faithfulness']:.2f}</a>")
        else:
            assert row[4] == "none"
        assert row[5] == f"{c['methods']['eap']['cpr']['area']:.3f}"
        assert row[-4] == f"{len(c['circuit']['heads'])} / {len(c['circuit']['mlps'])}"
        edges[m] = {json.dumps([e["writer"], e["reader"]], sort_keys=True) for e in c["circuit"]["edges"]}
    # the overlap with the previous model's circuit, computed here from the stored edges
    for prev, row, m in zip(config.models, rows[1:], config.models[1:]):
        both, either = edges[prev] & edges[m], edges[prev] | edges[m]
        assert row[-1] == f"{100 * len(both) / len(either):.0f}%"
    assert rows[0][-1] == "–"
    # when the behaviour appears, read naively: the first model from which every later one performs
    performs = [raw[m]["baseline"]["performs_task"] for m in config.models]
    if not performs[-1]:
        assert "The behaviour has not appeared by the end of the sweep" in page
    elif all(performs):
        assert "Every model of the sweep performs the task" in page
    else:
        first = max(i for i, p in enumerate(performs) if not p) + 1
        assert f"The behaviour appears at **step {(1, 2, 6)[first]}**" in page
    # a circuit counts only with the behaviour: so is its appearance and its stability
    explained = [
        p and raw[m]["circuit"]["circuit"]["smallest_faithful"] is not None for p, m in zip(performs, config.models)
    ]
    if not explained[-1]:
        assert "No faithful circuit of the behaviour by the end of the sweep" in page
    if not any(a and b for a, b in zip(explained, explained[1:])):
        assert "so the circuit's stability is not measured" in page
    assert "```report-figure" in page


def test_the_sweep_site_builds_and_its_links_open_each_models_tab(sweep_report):
    from generator.site import build_site

    root, config, _ = sweep_report
    build_site(config, log=lambda message: None)
    sweep_html = (root / "site" / "sweep" / "index.html").read_text()
    assert "organism during training" in sweep_html
    # every link of the page's table (raw HTML: mkdocs does not see the tabs' ids) lands on a
    # built page, in the tab whose id it names
    links = re.findall(r'<a href="(\.\./(?:baseline|circuit)/)#([^"]+)">', sweep_html)
    assert {a for _, a in links} == {tab_anchor(m) for m in config.models}
    for folder, anchor in links:
        html = (root / "site" / "sweep" / folder / "index.html").resolve().read_text()
        assert f'id="{anchor}"' in html


def test_the_example_configs_are_valid_sweeps():
    """examples/ (the README's worked examples) load, and the organism's lists the steps that
    `organism train --checkpoints 8` keeps."""
    root = Path(__file__).parents[1] / "examples"
    configs = {p.parent.name: load_config(p) for p in sorted(root.glob("*/report.yaml"))}
    assert set(configs) == {"gpt2-family", "organism-checkpoints", "pythia-checkpoints"}
    assert [m.order for m in configs["organism-checkpoints"].sweep.models] == checkpoint_steps(1200, 8)
    assert all(m.model.endswith(f"@step-{int(m.order):06d}") for m in configs["organism-checkpoints"].sweep.models)
    assert configs["gpt2-family"].sweep.axis == "parameters"
    assert all("@step" in m for m in configs["pythia-checkpoints"].models)


def test_a_hub_revision_reaches_the_loader_and_the_cache_lookup(monkeypatch):
    """Offline, with TransformerLens's loader and the hub cache stood in for: the revision is
    what boot_transformers is asked for and what the weights fingerprint looks up."""
    import huggingface_hub
    from transformer_lens.model_bridge import TransformerBridge

    from generator import models

    class Asked(Exception):
        pass

    def boot(name, **kwargs):
        raise Asked(name, kwargs.get("revision"))

    monkeypatch.setattr(TransformerBridge, "boot_transformers", staticmethod(boot))
    ref = models.resolve("EleutherAI/pythia-160m@step1000")
    assert (ref.source, ref.location, ref.revision) == ("hub", "EleutherAI/pythia-160m", "step1000")
    with pytest.raises(Asked) as e:
        models.load_model(ref, device="cpu")
    assert e.value.args == ("EleutherAI/pythia-160m", "step1000")
    with pytest.raises(Asked) as e:
        models.load_model(models.resolve("EleutherAI/pythia-160m"), device="cpu")
    assert e.value.args == ("EleutherAI/pythia-160m", None)

    snapshots = {"step1000": "/cache/snapshots/aaaaaaaaaaaaaaaaaaaa/config.json", None: None}
    monkeypatch.setattr(huggingface_hub, "try_to_load_from_cache", lambda repo, f, revision=None: snapshots[revision])
    assert models.fingerprint(ref) == "aaaaaaaaaaaaaaaa"
    assert models.fingerprint(models.resolve("EleutherAI/pythia-160m")) == "uncached"


def test_train_refuses_a_checkpoint_folder_it_cannot_write_before_training(tmp_path):
    from click.testing import CliRunner

    from generator.cli import main

    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    args = ["organism", "train", "--model", "organism", "--out", str(tmp_path / "out"), "--checkpoints", "8"]
    result = CliRunner().invoke(main, [*args, "--checkpoint-dir", str(blocker / "ck")])
    assert result.exit_code == 1
    assert "cannot save checkpoints in" in result.output and "--checkpoint-dir" in result.output
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())  # nothing trained
    assert CliRunner().invoke(main, [*args[:-1], "-1"]).exit_code == 2  # a usage error
