"""Shared fixtures and helpers. Everything is offline: the bundled organisms, and random-weight
GPT-2-shaped models built from the real GPT-2 tokenizer files in tests/fixtures/gpt2-tokenizer
(MIT). Models are loaded once per session, through the project's own loader."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import shutil
import threading
from pathlib import Path

import pytest

# No test may reach the network: make any accidental hub call fail at once.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TQDM_DISABLE", "1")

ROOT = Path(__file__).resolve().parent.parent
GPT2_TOKENIZER = Path(__file__).parent / "fixtures" / "gpt2-tokenizer"
PROMPTS = [0, 15, 33, 99]  # a few of the notebook's prompts: both genders, several templates and names
# What the code promises (generator/engine: equal to TransformerLens's sweeps to 1e-5 in float32)
TOL = 1e-5
# Comparisons of two different float32 computations of the same number through deep models
# (TransformerLens's hooks vs a hand-written reference, different summation orders)
TOL_REFERENCE = 1e-4


# The slowest test files, slowest first (pytest --durations on two workers). `make test` hands
# whole files to its two xdist workers in collection order (--dist loadfile
# --no-loadscope-reorder), so these go first and the files that start last are short ones:
# neither worker sits idle at the end while the other runs a long file. A file missing here
# only runs later; its tests run all the same.
SLOW_FILES = [
    "test_browser.py",
    "test_executors.py",
    "test_gpt2_report.py",
    "test_errors.py",
    "test_render.py",
    "test_publish_install.py",
    "test_organism_train.py",
    "test_store_keys.py",
    "test_site.py",
    "test_sweep.py",
    "test_contrast.py",
    "test_engine.py",
    "test_pipeline.py",
    "test_findings.py",
    "test_circuit.py",
    "test_hypotheses.py",
    "test_keys.py",
    "test_hostile_text.py",
]


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config, items):
    """SLOW_FILES first (a stable sort: each file's tests keep their order, the other files theirs)."""
    rank = {name: i for i, name in enumerate(SLOW_FILES)}
    items.sort(key=lambda item: rank.get(item.path.name, len(SLOW_FILES)))


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One torch thread: on 2 shared cores, two OpenMP threads spin-wait on each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


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


def save_random_neox(path: Path, parallel: bool = True) -> Path:
    """A tiny random GPT-NeoX (Pythia's family: rotary positions and, by default, a parallel
    residual) with GPT-2's tokenizer, in Hugging Face format."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    torch.manual_seed(0)
    tokenizer = gpt2_tokenizer()
    config = GPTNeoXConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_position_embeddings=64,
        rotary_pct=0.25,
        use_parallel_residual=parallel,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    GPTNeoXForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def save_random_llama(path: Path, kv_heads: int = 2) -> Path:
    """A tiny random Llama (RMSNorm, rotary positions, gated MLP) with grouped-query attention:
    4 query heads sharing `kv_heads` key/value heads; GPT-2's tokenizer."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    tokenizer = gpt2_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=kv_heads,
        intermediate_size=128,
        max_position_embeddings=64,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    LlamaForCausalLM(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


def small_tasks(folder: Path) -> Path:
    """A copy of the task files with few prompts (2 templates x 2 names per group; 2 prompts
    per exception family), for whole builds on tiny models."""
    import yaml

    from generator.tasks import DATA_DIR

    folder.mkdir(parents=True, exist_ok=True)
    pronoun = yaml.safe_load((DATA_DIR / "pronoun.yaml").read_text())
    pronoun["templates"] = pronoun["templates"][:2]
    for group in pronoun["groups"].values():
        group["names"] = group["names"][:2]
    (folder / "pronoun.yaml").write_text(yaml.safe_dump(pronoun))
    exceptions = yaml.safe_load((DATA_DIR / "exceptions.yaml").read_text())
    for family in exceptions["families"].values():
        family["prompts"] = family["prompts"][:2]
    (folder / "exceptions.yaml").write_text(yaml.safe_dump(exceptions))
    return folder


def load(name_or_path, **kwargs):
    """A model through the project's loader (the seed's processing), on the CPU."""
    from generator.models import load_model, resolve

    return load_model(resolve(str(name_or_path)), device="cpu", **kwargs)


@pytest.fixture(scope="session")
def tiny_gpt2_dir(tmp_path_factory) -> Path:
    return save_random_gpt2(tmp_path_factory.mktemp("tiny-gpt2"), n_layer=2, n_embd=64, n_head=4, n_positions=64)


@pytest.fixture(scope="session")
def tiny_gpt2(tiny_gpt2_dir):
    return load(tiny_gpt2_dir)


@pytest.fixture(scope="session")
def organism():
    """The bundled organism. Its files are package data: if they are missing, that is a
    packaging mistake and every test using it fails (never skips)."""
    from generator.models import ORGANISM_DIR

    assert (ORGANISM_DIR / "model.safetensors").exists(), f"the bundled organism is missing from {ORGANISM_DIR}"
    return load("organism")


@pytest.fixture(scope="session")
def pronoun_batch(organism):
    from generator.tasks import build, load_task

    return build(load_task("pronoun"), organism)


def worker() -> str:
    """Which worker of its thread pool runs this: "0", "1", ... ("MainThread" off a pool). Each
    side_by_side call has a pool of its own, whose thread ids may or may not recur."""
    return threading.current_thread().name.rsplit("_", 1)[-1]


def subset(batch, rows=PROMPTS):
    """The same task batch restricted to some prompts."""
    import torch

    idx = torch.tensor(rows)
    spec = dataclasses.replace(batch.spec, prompts=tuple(batch.spec.prompts[i] for i in rows))
    return dataclasses.replace(
        batch,
        spec=spec,
        clean_tokens=batch.clean_tokens[idx],
        corrupted_tokens=batch.corrupted_tokens[idx],
        answer_tokens=batch.answer_tokens[idx],
    )


@pytest.fixture(scope="session")
def few_prompts(pronoun_batch):
    return subset(pronoun_batch)


@pytest.fixture(scope="session")
def circuit_result(organism, few_prompts):
    """The circuit experiment on the organism and a few prompts (shared by the circuit and the
    export tests)."""
    from generator.experiments import circuit, params
    from generator.metrics import check_finite

    out = circuit.run(organism, few_prompts, params.Circuit(bootstrap=200, graph_edges=20, export_edges=1000), {})
    check_finite("circuit", out.metrics)
    return out


def write_config(folder: Path, **fields) -> Path:
    """A report config in `folder` whose results/docs/site live there, using the repo's
    templates and mkdocs.yml."""
    import yaml

    data = {"paths": {"templates": str(ROOT / "templates"), "mkdocs": str(ROOT / "mkdocs.yml")}}
    data.update(fields)
    path = folder / "report.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def repo_config() -> dict:
    """The repository's own report.yaml (what the published site is built from)."""
    import yaml

    return yaml.safe_load((ROOT / "report.yaml").read_text())


def build_report(
    folder: Path, results: Path = ROOT / "results", after_render=None, site_url=None, allow_stale=False, **fields
):
    """Copy a results store into `folder`, render it and build the site (strict), running
    nothing: by default the committed results with the repository's own report.yaml (the site
    the Pages workflow publishes). `after_render(docs)` may add to the rendered pages first."""
    from generator.config import load_config
    from generator.render import render
    from generator.site import build_site

    shutil.copytree(results, folder / "results", dirs_exist_ok=True)
    repo = repo_config()
    fields = {"models": repo["models"], "experiments": repo["experiments"], "device": "cpu", **fields}
    config = load_config(write_config(folder, **fields))
    if after_render:
        render(config, log=lambda message: None, allow_stale=allow_stale)
        after_render(config.path("docs"))
    build_site(
        config, log=lambda message: None, site_url=site_url, allow_stale=allow_stale, render_pages=after_render is None
    )
    return config


def run_folder(tmp_path_factory, request) -> Path:
    """A folder of this test run that every xdist worker sees: under xdist each worker's base
    temp folder is one of the run's; run serially, the base temp folder itself."""
    base = tmp_path_factory.getbasetemp()
    return base.parent if hasattr(request.config, "workerinput") else base


@contextlib.contextmanager
def run_lock(path: Path):
    """Held by one process of the run at a time (the xdist workers): the first to take it builds
    what the others then read."""
    import fcntl

    with open(path, "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def published_site(tmp_path_factory, request):
    """The site the Pages workflow publishes (build_report's default: the committed results, the
    repository's report.yaml), built once per test run and shared, read-only, by the tests that
    read it, across xdist workers: a full build is some 15 s."""
    from generator.config import load_config

    root = run_folder(tmp_path_factory, request)
    folder, done = root / "published-site", root / "published-site.done"
    with run_lock(root / "published-site.lock"):
        if not done.exists():
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir()
            build_report(folder)
            done.touch()
    return load_config(folder / "report.yaml")


@pytest.fixture(scope="session")
def prepare_once(tmp_path_factory, request):
    """generator.organism.train.prepare (fetch and build the organisms' corpus, train the
    tokenizer, tokenise: some 12 s) done once per test run, across xdist workers (pickled in the
    run's folder), and handed out as fresh copies, for tests that train: install it with
    monkeypatch.setattr(generator.organism.train, "prepare", prepare_once). Its result depends
    on hp's max_vocab and n_positions only (checked here on its source), which both organisms
    share."""
    import copy
    import inspect
    import pickle
    import re

    from tokenizers import Tokenizer

    from generator.organism import train

    real = train.prepare
    source = inspect.getsource(real)
    read = set(re.findall(r"\bhp\[[\"'](\w+)[\"']\]", source))
    assert read == {"max_vocab", "n_positions"} and re.findall(r"\bhp\b(?!\[)", source) == ["hp"], (
        f"prepare reads {read} of hp, or hands hp on: prepare_once's key must say all it depends on"
    )
    root, done = run_folder(tmp_path_factory, request), {}

    def prepare(hp: dict, log=lambda *a, **k: None):
        key = (hp["max_vocab"], hp["n_positions"])
        if key not in done:
            path = root / f"organism-prepared-{key[0]}-{key[1]}.pickle"
            with run_lock(path.with_suffix(".lock")):
                if not path.exists():
                    text, tok, rows, info = real(hp, log)
                    path.with_suffix(".tmp").write_bytes(pickle.dumps((text, tok.to_str(), rows, info)))
                    path.with_suffix(".tmp").rename(path)
            done[key] = pickle.loads(path.read_bytes())
        text, tok, rows, info = done[key]
        return copy.deepcopy(text), Tokenizer.from_str(tok), [list(r) for r in rows], copy.deepcopy(info)

    return prepare


def typed(experiment: str, result):
    """An experiment's metrics as the store hands them on (to templates, figures and downstream
    experiments): through JSON and validated against the experiment's schema."""
    from generator import schemas

    return schemas.validate(experiment, json.loads(json.dumps(result.metrics)))


def drawn(experiment: str, result) -> dict:
    """Every figure the pages draw from one result's metrics: {name: spec}."""
    from generator import figures

    return {name: build() for name, build in figures.available(experiment, typed(experiment, result)).items()}


@pytest.fixture(scope="session")
def fresh_results(tmp_path_factory) -> Path:
    """A copy of the committed results/ brought up to date with `run` on the repository's
    report.yaml (it re-runs only what is stale: nothing once the committed store is fresh for
    this code), for tests of publishing that must not depend on when results were last run."""
    from generator.config import load_config
    from generator.pipeline import run

    folder = tmp_path_factory.mktemp("fresh")
    shutil.copytree(ROOT / "results", folder / "results")
    repo = repo_config()
    config = load_config(write_config(folder, models=repo["models"], experiments=repo["experiments"], device="cpu"))
    run(config, log=lambda message: None)
    return folder / "results"
