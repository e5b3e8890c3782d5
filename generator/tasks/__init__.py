"""Prompt sets as data (tasks/data/*.yaml) and their tokenisation for a given model.

A task spec is plain data (hashable into the cache key); `build(model)` turns it into token
tensors and checks the properties every experiment relies on: all prompts the same token
length, and every answer a single token.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from generator import ReportError

DATA_DIR = Path(__file__).parent / "data"


@dataclass(frozen=True)
class Prompt:
    text: str
    corrupted: str
    answers: tuple[str, str]  # (correct, wrong): capital vs lowercase
    template: int
    name: str
    group: str


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    prompts: tuple[Prompt, ...]
    example: str = ""
    groups: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()

    def digest(self) -> str:
        data = json.dumps([p.__dict__ for p in self.prompts], sort_keys=True)
        return hashlib.sha256(data.encode()).hexdigest()[:16]


@dataclass
class TaskBatch:
    """A task tokenised for one model; tensors live on the model's device."""

    spec: TaskSpec
    clean_tokens: "object"  # torch.LongTensor [batch, pos]
    corrupted_tokens: "object"
    answer_tokens: "object"  # [batch, 2]: (correct, wrong)
    position_labels: list[str] = field(default_factory=list)  # from the example prompt's tokens


def available() -> list[str]:
    return sorted(p.stem for p in DATA_DIR.glob("*.yaml"))


def load_task(name: str) -> TaskSpec:
    path = DATA_DIR / f"{name}.yaml"
    if not path.exists():
        raise ReportError(f"unknown task {name!r}: available tasks are {', '.join(available())}")
    data = yaml.safe_load(path.read_text())
    old, new = data["corruption"]["replace"], data["corruption"]["with"]
    prompts = []
    for t, template in enumerate(data["templates"]):
        for group, spec in data["groups"].items():
            for person in spec["names"]:
                text = template.format(name=person)
                if old not in text:
                    raise ReportError(f"task {name}: template {template!r} has no {old!r} to corrupt")
                corrupted = new.join(text.rsplit(old, 1))  # only the last occurrence
                prompts.append(Prompt(text, corrupted, tuple(spec["answers"]), t, person, group))
    return TaskSpec(name, data.get("description", ""), tuple(prompts), data.get("example", ""),
                    tuple(data["groups"]), tuple(data["templates"]))


def single_token(model, text: str) -> int:
    ids = model.to_tokens(text, prepend_bos=False)[0]
    if len(ids) != 1:
        pieces = [model.to_string(i) for i in ids]
        raise ReportError(f"answer {text!r} is {len(ids)} tokens for this model ({pieces}); answers must be single tokens")
    return int(ids[0])


def build(spec: TaskSpec, model) -> TaskBatch:
    """Tokenise a task for a model; fail loudly if the tokenizer breaks its assumptions."""
    import torch

    texts = [p.text for p in spec.prompts]
    corrupted = [p.corrupted for p in spec.prompts]
    lengths = {len(model.to_str_tokens(t)) for t in texts + corrupted}
    if len(lengths) != 1:
        by_len: dict[int, list[str]] = {}
        for t in texts + corrupted:
            by_len.setdefault(len(model.to_str_tokens(t)), []).append(t)
        detail = "; ".join(f"{n} tokens: {v[0]!r} (+{len(v) - 1} more)" for n, v in sorted(by_len.items()))
        raise ReportError(f"task {spec.name}: prompts tokenize to different lengths ({detail}); "
                          "every prompt must have the same number of tokens")
    answers = torch.tensor([[single_token(model, a) for a in p.answers] for p in spec.prompts])
    example = spec.example or texts[0]
    labels = position_labels(model.to_str_tokens(example))
    device = model.cfg.device
    return TaskBatch(spec, model.to_tokens(texts).to(device), model.to_tokens(corrupted).to(device),
                     answers.to(device), labels)


def position_labels(str_tokens: list[str]) -> list[str]:
    """Axis labels like 'John_1', '._7' from a prompt's own tokens (never typed-in indices)."""
    return [f"{t.strip() or repr(t)}_{i}" for i, t in enumerate(str_tokens)]
