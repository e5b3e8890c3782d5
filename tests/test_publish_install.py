"""A publishing install (issue 22): the base package renders and builds the site from stored
results without torch, TransformerLens or transformers (the `run` extra), and says in one line
how to install that extra when asked to compute. Fast form: the CLI and plain `mkdocs build` run
in a subprocess where importing the `run` extra's packages fails (a sitecustomize puts None in
sys.modules, so `import torch` raises and find_spec says "not installed"). The real thing, a
venv with `pip install .` only, was checked by hand (README "Install")."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import ROOT, repo_config, write_config

# the run extra and what it pulls in; none is in the base install's dependency tree
BLOCKED = (
    "torch",
    "transformer_lens",
    "transformers",
    "tokenizers",
    "safetensors",
    "huggingface_hub",
    "circuitsvis",
    "numpy",
    "einops",
    "tqdm",
    "rich",
)
RUN_EXTRA = "pip install 'capcircuit[run]'"

try:
    import tomllib
except ImportError:  # Python 3.10: pip vendors the same parser
    from pip._vendor import tomli as tomllib


@pytest.fixture(scope="module")
def blocked_env(tmp_path_factory) -> dict:
    blocker = tmp_path_factory.mktemp("block")
    (blocker / "sitecustomize.py").write_text(f"import sys\nfor name in {BLOCKED!r}:\n    sys.modules[name] = None\n")
    return {**os.environ, "PYTHONPATH": f"{blocker}{os.pathsep}{ROOT}"}


def capcircuit(env, folder: Path, *args) -> subprocess.CompletedProcess:
    code = "from generator.cli import main; main()"
    return subprocess.run([sys.executable, "-c", code, *args], env=env, cwd=folder, capture_output=True, text=True)


def project(folder: Path, results: Path, **fields) -> Path:
    """A project folder as a clone has it: report.yaml, mkdocs.yml (its hook found at
    generator/mkdocs_hooks.py beside it), templates and a results store."""
    shutil.copytree(results, folder / "results")
    repo = repo_config()
    write_config(folder, **{"models": repo["models"], "experiments": repo["experiments"], **fields})
    (folder / "generator").symlink_to(ROOT / "generator")
    return folder / "report.yaml"


def test_the_blocker_blocks(blocked_env, tmp_path):
    for name in BLOCKED:
        done = subprocess.run([sys.executable, "-c", f"import {name}"], env=blocked_env, capture_output=True)
        assert done.returncode != 0, name


def test_site_status_and_plain_mkdocs_build_without_the_run_extra(blocked_env, tmp_path, fresh_results):
    config = project(tmp_path, fresh_results)
    done = capcircuit(blocked_env, tmp_path, "site", "--config", str(config))
    assert done.returncode == 0, done.stderr
    site = tmp_path / "site"
    assert (site / "circuit" / "index.html").exists()
    assert 'class="report-circuitsvis"' in (site / "attention" / "index.html").read_text()
    bundle = ROOT / "generator" / "assets" / "circuitsvis" / "circuitsvis.js"
    assert (site / "assets" / "vendor" / "circuitsvis.js").read_bytes() == bundle.read_bytes()
    status = capcircuit(blocked_env, tmp_path, "status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    assert len(status.stdout.splitlines()) == len(repo_config()["models"]) * len(repo_config()["experiments"])
    # plain `mkdocs build`: the hook renders the pages from results/ with report.yaml beside it
    for page in (tmp_path / "docs").glob("*.md"):
        page.unlink()  # so that the hook must render them again
    (tmp_path / "mkdocs.yml").write_text((ROOT / "mkdocs.yml").read_text())
    mkdocs = "from mkdocs.__main__ import cli; cli()"
    done = subprocess.run(
        [sys.executable, "-c", mkdocs, "build", "--strict", "-d", str(tmp_path / "plain")],
        env=blocked_env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert (tmp_path / "plain" / "attention" / "index.html").read_text() == (
        site / "attention" / "index.html"
    ).read_text()


def test_computing_without_the_run_extra_says_which_extra_in_one_line(blocked_env, tmp_path, fresh_results):
    config = project(tmp_path, fresh_results)
    before = (tmp_path / "results" / "organism" / "baseline.json").read_bytes()
    for args in (("run", "--force", "--only", "baseline"), ("build", "--force"), ("organism", "train")):
        extra = ("--config", str(config)) if args[0] != "organism" else ("--out", str(tmp_path / "o"))
        done = capcircuit(blocked_env, tmp_path, *args, *extra)
        assert done.returncode == 1, (args, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and lines[0].endswith(RUN_EXTRA), (args, lines)
        assert "torch, transformer_lens, transformers" in lines[0]
    assert (tmp_path / "results" / "organism" / "baseline.json").read_bytes() == before
    assert not (tmp_path / "o").exists()


def fake_hub_results(folder: Path, results: Path, name: str, location: str) -> None:
    """The organism's baseline result stored as if it were a hub model's (re-keyed by hand)."""
    record = json.loads((results / "organism" / "baseline.json").read_text())
    record["key_parts"]["model"] = {"name": name, "source": "hub", "location": location, "weights": "0123abcd"}
    record["provenance"]["model"] = name
    record["key"] = hashlib.sha256(json.dumps(record["key_parts"], sort_keys=True).encode()).hexdigest()[:16]
    (folder / name).mkdir(parents=True)
    (folder / name / "baseline.json").write_text(json.dumps(record))
    shutil.copy(results / "organism" / "baseline.timing.json", folder / name / "baseline.timing.json")


def test_a_hub_model_publishes_from_its_stored_results_without_transformer_lens(blocked_env, tmp_path, fresh_results):
    """Resolving `gpt2-small` needs TransformerLens's alias table; a publishing install takes
    what the stored results say instead (and no hub cache: weights as stored)."""
    store = tmp_path / "store"
    fake_hub_results(store, fresh_results, "pythia-hub-test", "EleutherAI/pythia-hub-test")
    config = project(tmp_path, store, models=["pythia-hub-test"], experiments={"baseline": {"top_k": 10}})
    status = capcircuit(blocked_env, tmp_path, "status", "--config", str(config))
    assert status.returncode == 0, status.stderr
    assert status.stdout.split() == ["pythia-hub-test", "baseline", "fresh"]
    done = capcircuit(blocked_env, tmp_path, "render", "--config", str(config))
    assert done.returncode == 0, done.stderr
    assert "pythia-hub-test" in (tmp_path / "docs" / "baseline.md").read_text()
    # a hub model with no stored result: one line, naming the extra
    write_config(tmp_path, models=["EleutherAI/other-model"], experiments={"baseline": {}})
    done = capcircuit(blocked_env, tmp_path, "status", "--config", str(config))
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "'EleutherAI/other-model'" in done.stderr and done.stderr.strip().endswith(RUN_EXTRA)


def test_base_install_leaves_torch_to_the_run_extra():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    names = lambda deps: {d.split(">")[0].split("<")[0].split("=")[0].strip() for d in deps}  # noqa: E731
    base, run = names(project["dependencies"]), names(project["optional-dependencies"]["run"])
    assert {"torch", "transformer-lens", "transformers"} <= run
    assert not base & {name.replace("_", "-") for name in BLOCKED}
    assert '".[run,dev,ray]"' in (ROOT / "Makefile").read_text()  # make install: all extras
    # the Pages workflow installs the base package only
    workflow = yaml.safe_load((ROOT / ".github" / "workflows" / "pages.yml").read_text())
    installs = [
        line.strip()
        for job in workflow["jobs"].values()
        for step in job["steps"]
        for line in step.get("run", "").splitlines()
        if "pip install" in line
    ]
    assert installs and not [line for line in installs if "torch" in line or "[run" in line], installs


def test_circuitsvis_bundle_is_the_pinned_packages_own():
    """The site's circuitsvis bundle ships with capcircuit (the Python package needs torch):
    byte for byte the installed circuitsvis's, which the dev extra pins to the same version."""
    from importlib.metadata import version
    from importlib.util import find_spec

    folder = ROOT / "generator" / "assets" / "circuitsvis"
    assert (folder / "VERSION").read_text().strip() == version("circuitsvis")
    installed = Path(find_spec("circuitsvis").origin).parent / "dist" / "cdn" / "iife.js"
    assert (folder / "circuitsvis.js").read_bytes() == installed.read_bytes()
    dev = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["optional-dependencies"]["dev"]
    assert f"circuitsvis=={version('circuitsvis')}" in dev
