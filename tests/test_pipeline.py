"""Incremental, resumable, deterministic builds and their errors, through the real CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest
from click.testing import CliRunner
from conftest import ROOT, save_random_gpt2, write_config

from generator import ReportError
from generator.cli import main


@pytest.fixture(scope="module")
def two_models(tmp_path_factory):
    base = tmp_path_factory.mktemp("models")
    a = save_random_gpt2(base / "a", n_layer=1, n_embd=32, n_head=2, n_positions=32)
    b = save_random_gpt2(base / "b", n_layer=2, n_embd=32, n_head=2, n_positions=32)
    return str(a), str(b)


def cli(*args):
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    return result


def test_build_then_rebuild_reuses_and_loads_no_model(tmp_path, two_models, monkeypatch):
    config = write_config(tmp_path, models=list(two_models))
    first = cli("build", "--config", str(config))
    assert first.exit_code == 0, first.output
    assert first.output.count("ran ") == 2
    from generator.models import slug
    from generator.store import Store

    for model in two_models:  # each model's result is stored, with its key, and rendered
        record = Store(tmp_path / "results").load(slug(model), "baseline")
        assert record["provenance"]["model"] == model and record["key"] and record["metrics"].n_prompts == 100
    assert (tmp_path / "site" / "index.html").exists()
    page = (tmp_path / "site" / "baseline" / "index.html").read_text()
    assert all(model in page for model in two_models)

    import generator.models

    def no_loading(*a, **k):
        raise AssertionError("a fresh build must not load a model")

    monkeypatch.setattr(generator.models, "load_model", no_loading)
    second = cli("build", "--config", str(config))
    assert second.exit_code == 0, second.output
    assert second.output.count("reused ") == 2 and "ran " not in second.output


def test_status_says_why_a_result_is_stale(tmp_path, two_models):
    config = write_config(tmp_path, models=[two_models[0]], experiments={"baseline": {"top_k": 5}})
    assert cli("run", "--config", str(config)).exit_code == 0
    assert "fresh" in cli("status", "--config", str(config)).output
    write_config(tmp_path, models=[two_models[0]], experiments={"baseline": {"top_k": 7}})
    out = cli("status", "--config", str(config)).output
    assert "stale: params changed" in out
    # the other parts of the key did not change
    assert "weights changed" not in out and "code changed" not in out


def test_force_and_only(tmp_path, two_models):
    config = write_config(tmp_path, models=[two_models[0]])
    assert cli("run", "--config", str(config)).exit_code == 0
    out = cli("run", "--config", str(config), "--force", "--only", "baseline").output
    assert "ran " in out
    bad = cli("run", "--config", str(config), "--only", "nonsense")
    assert bad.exit_code != 0 and "not an experiment in the config" in bad.output


def test_same_inputs_give_byte_identical_results(tmp_path, two_models):
    config = write_config(tmp_path, models=[two_models[1]])
    assert cli("run", "--config", str(config)).exit_code == 0
    path = next((tmp_path / "results").glob("*/baseline.json"))
    first = path.read_bytes()
    assert cli("run", "--config", str(config), "--force").exit_code == 0
    assert path.read_bytes() == first


def test_render_never_imports_torch(tmp_path, two_models):
    config = write_config(tmp_path, models=[two_models[0]])
    assert cli("run", "--config", str(config)).exit_code == 0
    # a sitecustomize that makes `import torch` fail, then render + site build in a subprocess
    blocker = tmp_path / "block"
    blocker.mkdir()
    (blocker / "sitecustomize.py").write_text(
        "import sys\nfor name in ('torch', 'transformer_lens', 'transformers'):\n    sys.modules[name] = None\n"
    )
    env = {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{ROOT}"}
    code = "from generator.cli import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", code, "render", "--config", str(config)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "docs" / "baseline.md").exists()
    # and the blocker really blocks
    check = subprocess.run([sys.executable, "-c", "import torch"], env=env, capture_output=True)
    assert check.returncode != 0


def test_killed_build_leaves_no_corrupt_result_and_resumes(tmp_path, two_models):
    config = write_config(tmp_path, models=list(two_models))
    proc = subprocess.Popen(
        [sys.executable, "-m", "generator", "run", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    results = tmp_path / "results"
    deadline = time.time() + 120
    while time.time() < deadline and not list(results.glob("*/baseline.json")):
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)  # mid-run: the second model is loading or running
    proc.wait()
    finished = list(results.glob("*/baseline.json"))
    assert len(finished) == 1
    json.loads(finished[0].read_text())  # complete, valid JSON
    out = cli("run", "--config", str(config)).output
    assert out.count("reused ") == 1 and out.count("ran ") == 1
    assert not list(results.rglob("*.tmp"))


def test_dependency_cycle_is_an_error(monkeypatch, tmp_path):
    import dataclasses

    from generator import experiments
    from generator.config import load_config
    from generator.pipeline import ordered

    config = load_config(write_config(tmp_path, experiments={"baseline": {}, "attribution": {}}))
    for a, b in (("baseline", "attribution"), ("attribution", "baseline")):
        monkeypatch.setitem(experiments.EXPERIMENTS, a, dataclasses.replace(experiments.EXPERIMENTS[a], after=(b,)))
    with pytest.raises(ReportError, match="cycle"):
        ordered(config)


def test_registry_declares_every_page_and_template(tmp_path):
    """Each experiment row names its pages; every page's template (and each overview partial)
    exists; the navigation is derived from the rows, in their order."""
    from generator.config import load_config
    from generator.experiments import EXPERIMENTS
    from generator.render import REPORT_PAGES, nav, pages

    config = load_config(write_config(tmp_path, experiments={name: {} for name in EXPERIMENTS}))
    files = [spec.page.file for spec in pages(config)]
    assert files[0] == "index.md" and len(files) == len(set(files))
    for spec in pages(config):
        assert (ROOT / "templates" / spec.page.template).exists(), spec.page.template
    for name, e in EXPERIMENTS.items():
        assert e.pages and all(p.file in files for p in e.pages), name
        assert (ROOT / "templates" / "partials" / "overview" / f"{name}.md.j2").exists() == e.overview, name
    flat = [
        v
        for entry in nav(config)
        for v in (
            entry.values()
            if isinstance(next(iter(entry.values())), str)
            else [x for item in next(iter(entry.values())) for x in item.values()]
        )
    ]
    # and, for the bundled models configured, their model cards (generator.disclosure)
    cards = [v for entry in nav(config) for item in entry.get("Model cards", []) for v in item.values()]
    assert sorted(flat) == sorted(files + cards)
    assert cards == [f"model-cards/{m}.md" for m in config.models]
    assert [p.file for p in REPORT_PAGES] == ["models.md", "reproducibility.md"]
    only_baseline = load_config(write_config(tmp_path, experiments={"baseline": {}}))
    assert "circuit.md" not in [s.page.file for s in pages(only_baseline)]  # not configured: no page


def test_missing_template_value_is_an_error(tmp_path, two_models):
    import shutil

    templates = tmp_path / "templates"
    shutil.copytree(ROOT / "templates", templates)
    (templates / "baseline.md.j2").write_text("# Baseline\n\n{{ r.baseline.metrics.no_such_number }}\n")
    config = write_config(tmp_path, models=[two_models[0]])
    text = config.read_text().replace(str(ROOT / "templates"), str(templates))
    config.write_text(text)
    result = cli("build", "--config", str(config))
    assert result.exit_code == 1
    assert "baseline.md.j2" in result.output and "no_such_number" in result.output
    assert not list((tmp_path / "docs").glob("*.md"))  # no page written, not even the good ones


def test_nan_result_is_an_error(tmp_path, two_models, monkeypatch):
    import generator.experiments.baseline as baseline
    from generator.experiments import Result

    monkeypatch.setattr(baseline, "run", lambda *a: Result({"mean_logit_diff": float("nan")}))
    config = write_config(tmp_path, models=[two_models[0]])
    result = cli("run", "--config", str(config))
    assert result.exit_code == 1
    assert "baseline produced nan at mean_logit_diff" in result.output
    assert not list((tmp_path / "results").rglob("baseline.json"))
