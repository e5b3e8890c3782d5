"""Prompt sets as data (tasks/data/*.yaml) and their tokenisation for a given model.

A task spec is plain data (hashable into the cache key); `build(model)` turns it into token
tensors and checks the properties every experiment relies on.

Two formats: `templates` × `groups` with a corruption (the pronoun task: all prompts the same
token length and every answer a single token, or the build fails), and `families` of
hand-written prompts that may differ in length (the exceptions task: no corruption, one
tensor per prompt; an answer pair that is not single-token is marked unusable, answer ids
-1, instead of failing the build).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import yaml

from generator import ReportError
from generator.store import digest

DATA_DIR = Path(__file__).parent / "data"
UNUSABLE = -1  # answer id of a `families` pair that is not single-token for the model


@dataclass(frozen=True)
class Prompt:
    text: str
    corrupted: str
    answers: tuple[str, str]  # (correct, wrong): capital vs lowercase
    template: int
    name: str
    group: str
    from_notebook: bool = False  # one of the seed notebook's own examples, verbatim


@dataclass(frozen=True)
class TaskSpec:
    name: str
    description: str
    prompts: tuple[Prompt, ...]
    example: str = ""
    groups: tuple[str, ...] = ()
    templates: tuple[str, ...] = ()
    same_length: bool = True  # False: prompts differ in length and are tokenised one by one
    info: dict = field(default_factory=dict)  # per-format extras, e.g. each family's expectation

    def digest(self) -> str:
        prompts = [p.__dict__ for p in self.prompts]
        return digest([prompts, self.info] if self.info else prompts)


@dataclass
class TaskBatch:
    """A task tokenised for one model; tensors live on the model's device."""

    spec: TaskSpec
    clean_tokens: object  # torch.LongTensor [batch, pos]; a list of [1, pos] when not same_length
    corrupted_tokens: object
    answer_tokens: object  # [batch, 2]: (correct, wrong)
    position_labels: list[str] = field(default_factory=list)  # from the example prompt's tokens


def available() -> list[str]:
    return sorted(p.stem for p in DATA_DIR.glob("*.yaml"))


def load_task(name: str) -> TaskSpec:
    path = DATA_DIR / f"{name}.yaml"
    if not path.exists():
        raise ReportError(f"unknown task {name!r}: available tasks are {', '.join(available())}")
    data = yaml.safe_load(path.read_text())
    if "families" in data:
        return load_families(name, data)
    old, new = data["corruption"]["replace"], data["corruption"]["with"]
    prompts = []
    # the notebook's order: group by group, name by name, each name with every template
    for group, spec in data["groups"].items():
        for person in spec["names"]:
            for t, template in enumerate(data["templates"]):
                text = template.format(name=person)
                if old not in text:
                    raise ReportError(f"task {name}: template {template!r} has no {old!r} to corrupt")
                corrupted = text.replace(old, new)  # every occurrence, as the notebook does
                prompts.append(Prompt(text, corrupted, tuple(spec["answers"]), t, person, group))
    return TaskSpec(
        name,
        data.get("description", ""),
        tuple(prompts),
        data.get("example", ""),
        tuple(data["groups"]),
        tuple(data["templates"]),
    )


def load_families(name: str, data: dict) -> TaskSpec:
    """`families: {family: {expected, description, prompts: [{text, answers}]}}`; each prompt is
    its own template index within its family, and is never corrupted."""
    prompts, info = [], {}
    for family, spec in data["families"].items():
        if spec.get("expected") not in ("capital", "lowercase"):
            raise ReportError(
                f"task {name}, family {family}: expected must be capital or lowercase, got {spec.get('expected')!r}"
            )
        info[family] = {"expected": spec["expected"], "description": spec.get("description", "")}
        for i, item in enumerate(spec["prompts"]):
            answers = tuple(item["answers"])
            if len(answers) != 2:
                raise ReportError(
                    f"task {name}, family {family}: prompt {item['text']!r} needs two "
                    f"answers (capital, lowercase), got {list(answers)}"
                )
            prompts.append(
                Prompt(item["text"], item["text"], answers, i, item["text"], family, bool(item.get("notebook", False)))
            )
    if data.get("control") not in info:
        raise ReportError(
            f"task {name}: control {data.get('control')!r} is not one of its families ({', '.join(info)})"
        )
    info = {"families": info, "control": data["control"]}
    return TaskSpec(
        name,
        data.get("description", ""),
        tuple(prompts),
        data.get("example", ""),
        tuple(data["families"]),
        same_length=False,
        info=info,
    )


def single_token(model, text: str) -> int:
    ids = model.to_tokens(text, prepend_bos=False)[0]
    if len(ids) != 1:
        pieces = [model.to_string(i) for i in ids]
        raise ReportError(
            f"answer {text!r} is {len(ids)} tokens for this model ({pieces}); answers must be single tokens"
        )
    return int(ids[0])


def build(spec: TaskSpec, model) -> TaskBatch:
    """Tokenise a task for a model; fail loudly if the tokenizer breaks its assumptions."""
    import torch

    if not spec.same_length:
        return build_one_by_one(spec, model)
    texts = [p.text for p in spec.prompts]
    corrupted = [p.corrupted for p in spec.prompts]
    lengths = {len(model.to_str_tokens(t)) for t in texts + corrupted}
    if len(lengths) != 1:
        by_len: dict[int, list[str]] = {}
        for t in texts + corrupted:
            by_len.setdefault(len(model.to_str_tokens(t)), []).append(t)
        detail = "; ".join(f"{n} tokens: {v[0]!r} (+{len(v) - 1} more)" for n, v in sorted(by_len.items()))
        raise ReportError(
            f"task {spec.name}: prompts tokenize to different lengths ({detail}); "
            "every prompt must have the same number of tokens"
        )
    answers = torch.tensor([[single_token(model, a) for a in p.answers] for p in spec.prompts])
    example = spec.example or texts[0]
    labels = position_labels(model.to_str_tokens(example))
    device = model.cfg.device
    return TaskBatch(
        spec, model.to_tokens(texts).to(device), model.to_tokens(corrupted).to(device), answers.to(device), labels
    )


def build_one_by_one(spec: TaskSpec, model) -> TaskBatch:
    """Prompts of different lengths: one [1, pos] tensor each (no padding to get wrong).

    The answer pairs here are a secondary measure (the exceptions experiment's primary one needs
    no pair), so a pair that is not two single tokens for this model does not fail the build:
    its answer ids are (-1, -1) and the experiment leaves it out of every pair statistic."""
    import torch

    answers = []
    for p in spec.prompts:
        try:
            answers.append([single_token(model, a) for a in p.answers])
        except ReportError:
            answers.append([UNUSABLE, UNUSABLE])
    device = model.cfg.device
    tokens = [model.to_tokens(p.text).to(device) for p in spec.prompts]
    labels = position_labels(model.to_str_tokens(spec.example or spec.prompts[0].text))
    return TaskBatch(spec, tokens, tokens, torch.tensor(answers).to(device), labels)


def position_labels(str_tokens: list[str]) -> list[str]:
    """Axis labels like 'John_1', '._7' from a prompt's own tokens (never typed-in indices)."""
    return [f"{t.strip() or repr(t)}_{i}" for i, t in enumerate(str_tokens)]
