"""scripts/gpt2-report.sh, what .github/workflows/gpt2.yml runs on a GitHub CPU runner, end to
end on a local GPT-2-shaped model folder (random weights, the real GPT-2 tokenizer; no network):
it writes the models into report.yaml, builds, checks every result is fresh and commits
results/ and report.yaml; a second run computes and commits nothing. Only the workflow's YAML
(checkout, install, the hub cache, push and deploy) is not run here."""

from __future__ import annotations

import os
import subprocess
import sys

import yaml
from conftest import ROOT, save_random_gpt2, write_config

from generator.models import slug

SCRIPT = ROOT / "scripts" / "gpt2-report.sh"
# the experiments that run on the model, kept small: the baseline, and the circuit with its exports
EXPERIMENTS = {
    "baseline": {},
    "circuit": {"bootstrap": 100, "random_seeds": 1, "position_aware": False, "held_out": False, "node_ranking": False},
}


def git(folder, *args) -> str:
    return subprocess.run(["git", *args], cwd=folder, check=True, capture_output=True, text=True).stdout


def report(folder, *args):
    env = {
        **os.environ,
        "CAPCIRCUIT": f"{sys.executable} -m generator",
        "PYTHONPATH": str(ROOT),
        "OMP_NUM_THREADS": "1",
        "GIT_AUTHOR_NAME": "test",
        "GIT_AUTHOR_EMAIL": "test@example.com",
        "GIT_COMMITTER_NAME": "test",
        "GIT_COMMITTER_EMAIL": "test@example.com",
    }
    return subprocess.run(["bash", str(SCRIPT), *args], cwd=folder, env=env, capture_output=True, text=True)


def test_the_runner_script_builds_checks_and_commits(tmp_path):
    model = save_random_gpt2(tmp_path / "gpt2-shaped", n_layer=2, n_embd=64, n_head=4, n_positions=64)
    folder = tmp_path / "repo"
    folder.mkdir()
    config = write_config(folder, models=["organism"], device="auto", experiments=EXPERIMENTS)
    config.write_text("# the report's config\n" + config.read_text())
    git(folder, "init", "-q")
    git(folder, "add", "report.yaml")
    git(folder, "-c", "user.name=t", "-c", "user.email=t@e", "commit", "-q", "-m", "start")

    first = report(folder, str(model), "--commit")
    assert first.returncode == 0, first.stdout + first.stderr
    data = yaml.safe_load(config.read_text())
    assert data["models"] == [str(model)] and config.read_text().startswith("# the report's config")
    stored = folder / "results" / slug(str(model))
    assert (stored / "baseline.json").exists() and (stored / "circuit.json").exists()
    assert (folder / "site" / "index.html").exists()
    assert (folder / "site" / "downloads" / f"{slug(str(model))}-circuit-mib.json").exists()
    assert "committed" in first.stdout
    committed = git(folder, "show", "--name-only", "--format=%s", "HEAD").split("\n")
    assert committed[0].startswith(f"Results for {model}")
    assert "report.yaml" in committed and f"results/{slug(str(model))}/circuit.json" in committed
    assert not git(folder, "status", "--porcelain", "results", "report.yaml")

    again = report(folder, str(model), "--commit")  # unchanged: nothing runs, nothing to commit
    assert again.returncode == 0, again.stdout + again.stderr
    assert "ran " not in again.stdout + again.stderr and "nothing to commit" in again.stdout
    assert len(git(folder, "log", "--format=%h").split()) == 2

    wrong = report(folder, str(model), "--push")
    assert wrong.returncode == 2 and "--push" in wrong.stderr
