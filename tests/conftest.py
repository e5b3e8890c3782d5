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
