"""Shared fixtures. Everything is offline: the bundled organism, and random-weight GPT-2-shaped
models built from the real GPT-2 tokenizer files in tests/fixtures/gpt2-tokenizer (MIT)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# No test may reach the network: make any accidental hub call fail at once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"

ROOT = Path(__file__).resolve().parent.parent
GPT2_TOKENIZER = Path(__file__).parent / "fixtures" / "gpt2-tokenizer"


def gpt2_tokenizer():
    from transformers import GPT2TokenizerFast

    return GPT2TokenizerFast.from_pretrained(str(GPT2_TOKENIZER))


def save_random_gpt2(path: Path, **config) -> Path:
    """A random-weight GPT-2 (any shape; GPT2Config() is GPT-2 small) in Hugging Face format."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    tokenizer = gpt2_tokenizer()
    GPT2LMHeadModel(GPT2Config(vocab_size=len(tokenizer), **config)).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    return save_random_gpt2(tmp_path_factory.mktemp("tiny-gpt2"), n_layer=2, n_embd=64, n_head=4, n_positions=64)


@pytest.fixture(scope="session")
def organism():
    """The bundled organism, loaded through the project's own loader."""
    from generator.models import load_model, resolve

    return load_model(resolve("organism"), device="cpu")


@pytest.fixture(scope="session")
def pronoun_batch(organism):
    from generator.tasks import build, load_task

    return build(load_task("pronoun"), organism)


def write_config(folder: Path, **fields) -> Path:
    """A report config in `folder` whose results/docs/site live there, using the repo's
    templates and mkdocs.yml."""
    import yaml

    data = {"paths": {"templates": str(ROOT / "templates"), "mkdocs": str(ROOT / "mkdocs.yml")}}
    data.update(fields)
    path = folder / "report.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture(scope="session")
def site_model(request) -> str:
    """The model the site tests build their report for: the bundled organism once it is
    trained, else a tiny random GPT-2. Switch the site and browser tests here."""
    from generator.models import ORGANISM_DIR

    if (ORGANISM_DIR / "config.json").exists():
        return "organism"
    return str(request.getfixturevalue("tiny_gpt2_dir"))


# The experiments the site and browser tests run: all but path patching and circuit discovery,
# whose TransformerLens loops take minutes on the CPU (their pages are browsed as "not run").
SITE_EXPERIMENTS = ("baseline", "attribution", "attention", "exceptions", "patching")


def site_experiments() -> dict:
    """SITE_EXPERIMENTS that are registered, with the repo's report.yaml parameters."""
    import yaml

    from generator.experiments import EXPERIMENTS

    configured = yaml.safe_load((ROOT / "report.yaml").read_text()).get("experiments") or {}
    return {e: configured.get(e) or {} for e in SITE_EXPERIMENTS if e in EXPERIMENTS}


@pytest.fixture(scope="session")
def report_results(tmp_path_factory, site_model) -> Path:
    """A results store for `site_model` with SITE_EXPERIMENTS (run once a session, on the
    CPU); copy it to build sites from."""
    from generator.config import load_config
    from generator.pipeline import run

    folder = tmp_path_factory.mktemp("report-results")
    config = load_config(write_config(folder, models=[site_model], device="cpu", experiments=site_experiments()))
    run(config, log=lambda message: None)
    return config.path("results")


def build_report(folder: Path, results: Path, model: str, after_render=None, site_url=None):
    """Copy a results store into `folder`, render it and build the site (strict), running
    nothing; `after_render(docs)` may add to the rendered pages first. Returns the config."""
    import shutil

    from generator.config import load_config
    from generator.render import render
    from generator.site import build_site

    shutil.copytree(results, folder / "results", dirs_exist_ok=True)
    config = load_config(write_config(folder, models=[model], device="cpu", experiments=site_experiments()))
    render(config, log=lambda message: None)
    if after_render:
        after_render(config.path("docs"))
    build_site(config, log=lambda message: None, site_url=site_url)
    return config


@pytest.fixture(scope="session")
def site_model_loaded(site_model):
    """`site_model` loaded once a session, for the experiment tests."""
    from generator.models import load_model, resolve

    return load_model(resolve(site_model), device="cpu")
