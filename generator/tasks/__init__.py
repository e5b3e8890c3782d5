"""Prompt sets as data (tasks/data/*.yaml) and their tokenisation for a given model.

A task spec is plain data (hashable into the cache key); `build(model)` turns it into token
tensors and checks the properties every experiment relies on.

Three formats: `templates` × `groups` with a corruption (the pronoun task: all prompts the same
token length and every answer a single token, or the build fails), `families` of
hand-written prompts that may differ in length (the exceptions task: no corruption, one
tensor per prompt; an answer pair that is not single-token is marked unusable, answer ids
-1, instead of failing the build), and `contrasts`: families of minimal pairs (the contrast
task: an `exception` member and an `end` member of equal token length that differ only at
the positions their differing words take; a pair is one prompt whose clean text is the
exception and whose corrupted text is the sentence end; pairs may differ in length).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from generator import ReportError
from generator.files import read_yaml, shown
from generator.store import digest

DATA_DIR = Path(__file__).parent / "data"
UNUSABLE = -1  # answer id of a `families` pair that is not single-token for the model


@dataclass(frozen=True)
class Unbuildable:
    """An extra prompt set that cannot be built for a model (its tokenizer breaks a check): the
    experiment that asked for it reports the reason instead of a number."""

    name: str
    reason: str


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
    # for maps averaged over prompts: what each position holds in every prompt (position_roles)
    position_roles: list[str] = field(default_factory=list)
    # contrast pairs: per prompt, the positions (BOS counted) where its two members' tokens differ
    differing: list[list[int]] = field(default_factory=list)


def available() -> list[str]:
    return sorted(p.stem for p in DATA_DIR.glob("*.yaml"))


class TaskFileError(ReportError):
    pass


def _fail(path: Path, where: str, problem: str) -> TaskFileError:
    return TaskFileError(f"task file {shown(path)}: {where + ': ' if where else ''}{problem}")


def _mapping(path: Path, where: str, value, allowed: tuple[str, ...], required: tuple[str, ...]) -> dict:
    """`value` as a mapping with only `allowed` keys and every `required` one."""
    if not isinstance(value, dict):
        raise _fail(path, where, f"must be a mapping ({', '.join(required)}), got {_kind(value)}")
    unknown = [k for k in value if k not in allowed]
    if unknown:
        raise _fail(path, where, f"unknown key {unknown[0]!r} (allowed: {', '.join(allowed)})")
    missing = [k for k in required if k not in value]
    if missing:
        raise _fail(path, where, f"{missing[0]} is missing")
    return value


def _text(path: Path, where: str, value, empty_ok: bool = False) -> str:
    if not isinstance(value, str) or (not value and not empty_ok):
        raise _fail(path, where, f"must be {'a' if empty_ok else 'a non-empty'} string, got {value!r}")
    return value


def _texts(path: Path, where: str, value, what: str) -> list[str]:
    """A non-empty list of distinct non-empty strings."""
    if not isinstance(value, list) or not value:
        raise _fail(path, where, f"must be a non-empty list of {what}, got {value!r}")
    for i, item in enumerate(value):
        _text(path, f"{where}[{i}]", item)
    repeated = sorted({v for v in value if value.count(v) > 1})
    if repeated:
        raise _fail(path, where, f"{repeated[0]!r} is listed twice")
    return value


def _answers(path: Path, where: str, value) -> tuple[str, str]:
    if not isinstance(value, list) or len(value) != 2:
        raise _fail(path, where, f"needs two answers [capital, lowercase], got {value!r}")
    a, b = (_text(path, f"{where}[{i}]", v) for i, v in enumerate(value))
    if a == b:
        raise _fail(path, where, f"the two answers are the same ({a!r}): give the capital and the lowercase form")
    return a, b


def _kind(value) -> str:
    return type(value).__name__ if value is not None else "nothing"


TEMPLATES_KEYS = ("name", "description", "templates", "groups", "corruption", "example", "same_length")
FAMILIES_KEYS = ("name", "description", "families", "control", "example")
CONTRASTS_KEYS = ("name", "description", "contrasts", "example")


def load_task(name: str) -> TaskSpec:
    """Read and check a task file: its structure (each problem names the key and the fix), and
    the properties that need no tokenizer (names and prompts non-empty, a corruption that
    changes every prompt). `build` checks the rest against a model's tokenizer."""
    path = DATA_DIR / f"{name}.yaml"
    if not path.exists():
        raise ReportError(f"unknown task {name!r}: available tasks are {', '.join(available())}")
    data = read_yaml(path, "task file")
    if isinstance(data, dict) and "families" in data:
        return load_families(name, _mapping(path, "", data, FAMILIES_KEYS, ("families", "control")), path)
    if isinstance(data, dict) and "contrasts" in data:
        return load_contrasts(name, _mapping(path, "", data, CONTRASTS_KEYS, ("contrasts",)), path)
    data = _mapping(path, "", data, TEMPLATES_KEYS, ("templates", "groups", "corruption"))
    for key in ("description", "example"):
        _text(path, key, data.get(key, ""), empty_ok=True)
    templates = _texts(path, "templates", data["templates"], "prompt templates with {name}")
    corrupt = corruption_of(path, data["corruption"])
    same_length = data.get("same_length", True)
    if not isinstance(same_length, bool):
        raise _fail(path, "same_length", f"must be true or false, got {same_length!r}")
    groups = data["groups"]
    if not isinstance(groups, dict) or not groups:
        raise _fail(path, "groups", f"must be a non-empty mapping of groups (names, answers), got {groups!r}")
    prompts = []
    seen: dict[str, str] = {}
    # the notebook's order: group by group, name by name, each name with every template
    for group, spec in groups.items():
        where = f"groups.{group}"
        spec = _mapping(path, where, spec, ("names", "answers"), ("names", "answers"))
        names = _texts(path, f"{where}.names", spec["names"], "names")
        answers = _answers(path, f"{where}.answers", spec["answers"])
        for person in names:
            for t, template in enumerate(templates):
                try:
                    text = template.format(name=person)
                except (KeyError, IndexError, ValueError) as e:
                    raise _fail(
                        path,
                        f"templates[{t}]",
                        f"{template!r} cannot be filled in ({type(e).__name__}: {e}): "
                        "use {name} for the name and {{ }} for a literal brace",
                    ) from None
                if "{name}" not in template:
                    raise _fail(
                        path, f"templates[{t}]", f"{template!r} has no {{name}}: every prompt would be the same"
                    )
                corrupted = corrupt(template, person)
                if corrupted == text:
                    raise _fail(
                        path,
                        "corruption",
                        f"leaves the prompt {text!r} unchanged: the corruption must change every prompt",
                    )
                if text in seen:
                    raise _fail(path, where, f"the prompt {text!r} is also made by {seen[text]}")
                seen[text] = where
                prompts.append(Prompt(text, corrupted, answers, t, person, group))
    return TaskSpec(
        name,
        data.get("description", ""),
        tuple(prompts),
        data.get("example", ""),
        tuple(groups),
        tuple(templates),
        same_length=same_length,
    )


def corruption_of(path: Path, spec):
    """The corruption as a function (template, name) -> corrupted prompt: either
    `{replace: X, with: Y}` (every occurrence of X in the prompt, as the notebook replaces '.'
    by ';') or `{names: {John: Mary, ...}}` (the name swapped for another, every name listed)."""
    if isinstance(spec, dict) and "names" in spec:
        spec = _mapping(path, "corruption", spec, ("names",), ("names",))
        names = spec["names"]
        if not isinstance(names, dict) or not names:
            raise _fail(path, "corruption.names", f"must map each name to its replacement, got {names!r}")
        for old, new in names.items():
            _text(path, f"corruption.names.{old}", new)

        def swap(template: str, person: str) -> str:
            if person not in names:
                raise _fail(path, "corruption.names", f"has no replacement for the name {person!r}")
            return template.format(name=names[person])

        return swap
    spec = _mapping(path, "corruption", spec, ("replace", "with"), ("replace", "with"))
    old = _text(path, "corruption.replace", spec["replace"])
    new = _text(path, "corruption.with", spec["with"], empty_ok=True)
    if old == new:
        raise _fail(path, "corruption", f"replaces {old!r} with itself, which corrupts nothing")
    # every occurrence, as the notebook does
    return lambda template, person: template.format(name=person).replace(old, new)


def load_families(name: str, data: dict, path: Path | None = None) -> TaskSpec:
    """`families: {family: {expected, description, prompts: [{text, answers}]}}`; each prompt is
    its own template index within its family, and is never corrupted."""
    path = path or DATA_DIR / f"{name}.yaml"
    for key in ("description", "example"):
        _text(path, key, data.get(key, ""), empty_ok=True)
    families = data["families"]
    if not isinstance(families, dict) or not families:
        raise _fail(path, "families", f"must be a non-empty mapping of families, got {families!r}")
    prompts, info = [], {}
    for family, spec in families.items():
        where = f"families.{family}"
        spec = _mapping(path, where, spec, ("description", "expected", "prompts"), ("expected", "prompts"))
        if spec["expected"] not in ("capital", "lowercase"):
            raise _fail(path, f"{where}.expected", f"must be capital or lowercase, got {spec['expected']!r}")
        description = _text(path, f"{where}.description", spec.get("description", ""), empty_ok=True)
        info[family] = {"expected": spec["expected"], "description": description}
        items = spec["prompts"]
        if not isinstance(items, list) or not items:
            raise _fail(path, f"{where}.prompts", f"must be a non-empty list of {{text, answers}}, got {items!r}")
        for i, item in enumerate(items):
            item = _mapping(path, f"{where}.prompts[{i}]", item, ("text", "answers", "notebook"), ("text", "answers"))
            text = _text(path, f"{where}.prompts[{i}].text", item["text"])
            answers = _answers(path, f"{where}.prompts[{i}].answers", item["answers"])
            notebook = item.get("notebook", False)
            if not isinstance(notebook, bool):
                raise _fail(path, f"{where}.prompts[{i}].notebook", f"must be true or false, got {notebook!r}")
            prompts.append(Prompt(text, text, answers, i, text, family, notebook))
    texts = [p.text for p in prompts]
    repeated = sorted({t for t in texts if texts.count(t) > 1})
    if repeated:
        raise _fail(path, "families", f"the prompt {repeated[0]!r} is listed twice")
    if data["control"] not in info:
        raise _fail(path, "control", f"{data['control']!r} is not one of its families ({', '.join(info)})")
    info = {"families": info, "control": data["control"]}
    return TaskSpec(
        name,
        data.get("description", ""),
        tuple(prompts),
        data.get("example", ""),
        tuple(families),
        same_length=False,
        info=info,
    )


def load_contrasts(name: str, data: dict, path: Path | None = None) -> TaskSpec:
    """`contrasts: {family: {description, after_exception, answers, pairs: [{exception, end}]}}`.
    A pair becomes one Prompt: text = the exception member (the circuit's clean run), corrupted
    = the sentence-end member; its name `family[i]` names it in every message and is its own
    cluster in the bootstrap. Checked here: both members end in the same "." and differ."""
    path = path or DATA_DIR / f"{name}.yaml"
    for key in ("description", "example"):
        _text(path, key, data.get(key, ""), empty_ok=True)
    families = data["contrasts"]
    if not isinstance(families, dict) or not families:
        raise _fail(path, "contrasts", f"must be a non-empty mapping of families, got {families!r}")
    prompts, info, seen = [], {}, {}
    for family, spec in families.items():
        where = f"contrasts.{family}"
        keys = ("description", "after_exception", "answers", "pairs")
        spec = _mapping(path, where, spec, keys, ("after_exception", "answers", "pairs"))
        if spec["after_exception"] not in ("capital", "lowercase"):
            raise _fail(
                path, f"{where}.after_exception", f"must be capital or lowercase, got {spec['after_exception']!r}"
            )
        description = _text(path, f"{where}.description", spec.get("description", ""), empty_ok=True)
        answers = _answers(path, f"{where}.answers", spec["answers"])
        info[family] = {"after_exception": spec["after_exception"], "description": description}
        pairs = spec["pairs"]
        if not isinstance(pairs, list) or not pairs:
            raise _fail(path, f"{where}.pairs", f"must be a non-empty list of {{exception, end}}, got {pairs!r}")
        for i, pair in enumerate(pairs):
            at = f"{where}.pairs[{i}]"
            pair = _mapping(path, at, pair, ("exception", "end"), ("exception", "end"))
            exception, end = _text(path, f"{at}.exception", pair["exception"]), _text(path, f"{at}.end", pair["end"])
            if not (exception.endswith(".") and end.endswith(".")):
                raise _fail(path, at, f"{exception!r} / {end!r}: both members must end in '.'")
            if exception == end:
                raise _fail(path, at, f"the two members are the same ({exception!r}): they must differ")
            for text in (exception, end):
                if text in seen:
                    raise _fail(path, at, f"the prompt {text!r} is also in {seen[text]}")
                seen[text] = at
            prompts.append(Prompt(exception, end, answers, i, f"{family}[{i}]", family))
    return TaskSpec(
        name,
        data.get("description", ""),
        tuple(prompts),
        data.get("example", ""),
        tuple(families),
        same_length=False,
        info={"kind": "contrasts", "families": info},
    )


def pair_positions(model, prompt: Prompt, task: str = "contrast") -> list[int]:
    """The positions (BOS counted) at which a pair's members differ, after checking, for this
    model's tokenizer, that they have the same token length, end in the same "." token, and
    that every token lying wholly within the words both share (the text before the first
    differing character, after the last) is the same token at the same position: the members
    differ only where their words do. A pair that breaks it is a one-line error naming it."""
    a, b = prompt.text, prompt.corrupted

    def fail(problem: str) -> ReportError:
        return ReportError(f"task {task}: pair {prompt.name} ({a!r} / {b!r}): {problem}")

    ids_a, ids_b = (model.to_tokens(t)[0].tolist() for t in (a, b))
    if len(ids_a) != len(ids_b):
        raise fail(f"{len(ids_a)} against {len(ids_b)} tokens; the two members must have the same token length")
    if ids_a[-1] != ids_b[-1] or model.to_string(ids_a[-1:]) != ".":
        raise fail("the members must end in the same '.' token")
    prefix = len(_common_prefix(a, b))
    suffix = min(len(_common_prefix(a[::-1], b[::-1])), min(len(a), len(b)) - prefix)
    touched = set()  # positions whose token, in either member, holds a differing character
    for text, ids in ((a, ids_a), (b, ids_b)):
        pieces = model.to_str_tokens(text, prepend_bos=False)
        if "".join(pieces) != text:
            raise fail(f"its tokens {pieces} do not spell {text!r}, so their positions cannot be checked")
        start, first = 0, len(ids) - len(pieces)  # first: after the BOS token, if any
        for i, piece in enumerate(pieces):
            if start + len(piece) > prefix and start < len(text) - suffix:
                touched.add(first + i)
            start += len(piece)
    moved = [i for i in range(len(ids_a)) if i not in touched and ids_a[i] != ids_b[i]]
    if moved:
        raise fail(
            f"a word both members share is a different token at position {moved[0]}: "
            "the members must differ only where their words do"
        )
    if not any(x != y for x, y in zip(ids_a, ids_b)):
        raise fail("the members tokenize to the same tokens")
    return sorted(touched)


def _common_prefix(a: str, b: str) -> str:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    return a[:n]


def build_contrasts(spec: TaskSpec, model) -> TaskBatch:
    """Contrast pairs for one model: each pair checked (pair_positions), then one [1, pos]
    tensor per member; answer pairs that are not single tokens are marked unusable (-1) as in
    build_one_by_one."""
    import torch

    differing = [pair_positions(model, p, spec.name) for p in spec.prompts]
    device = model.cfg.device
    clean = [model.to_tokens(p.text).to(device) for p in spec.prompts]
    corrupted = [model.to_tokens(p.corrupted).to(device) for p in spec.prompts]
    answers = []
    for p in spec.prompts:
        try:
            answers.append([single_token(model, a) for a in p.answers])
        except ReportError:
            answers.append([UNUSABLE, UNUSABLE])
    labels = position_labels(model.to_str_tokens(spec.example or spec.prompts[0].text))
    return TaskBatch(spec, clean, corrupted, torch.tensor(answers).to(device), labels, differing=differing)


def single_token(model, text: str) -> int:
    ids = model.to_tokens(text, prepend_bos=False)[0]
    if len(ids) != 1:
        pieces = [model.to_string(i) for i in ids]
        raise ReportError(
            f"answer {text!r} is {len(ids)} tokens for this model ({pieces}); answers must be single tokens"
        )
    return int(ids[0])


def check_context(spec: TaskSpec, model, model_name: str = "") -> None:
    """Every prompt (clean and corrupted) fits the model's context, counted without truncation:
    the tokenizer would otherwise cut a long prompt to its first n_ctx tokens without a word,
    and clean and corrupted prompts could become the same text."""
    limit = model.cfg.n_ctx
    texts = dict.fromkeys(t for p in spec.prompts for t in (p.text, p.corrupted))
    if spec.example:
        texts[spec.example] = None
    length, longest = max((int(model.to_tokens(t, truncate=False).shape[-1]), t) for t in texts)
    if length > limit:
        shown_text = longest if len(longest) <= 60 else f"{longest[:28]}...{longest[-28:]}"
        raise ReportError(
            f"task {spec.name}: the prompt {shown_text!r} is {length} tokens, longer than the context of "
            f"{model_name or 'the model'} ({limit} tokens, n_ctx): shorten the task's prompts "
            "or use a model with a longer context"
        )


def build(spec: TaskSpec, model) -> TaskBatch:
    """Tokenise a task for a model; fail loudly if the tokenizer breaks its assumptions."""
    import torch

    check_context(spec, model)  # before tokenising: to_tokens truncates to n_ctx
    if spec.info.get("kind") == "contrasts":
        return build_contrasts(spec, model)
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
    roles = position_roles([model.to_str_tokens(t) for t in texts], [p.name for p in spec.prompts])
    device = model.cfg.device
    return TaskBatch(
        spec,
        model.to_tokens(texts).to(device),
        model.to_tokens(corrupted).to(device),
        answers.to(device),
        labels,
        roles,
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


def position_roles(str_tokens: list[list[str]], names: list[str], most: int = 4) -> list[str]:
    """Axis labels for maps averaged over prompts of one length, by what each position holds
    in every prompt: its token where all prompts agree ('is_2', '._7'), '{name}_1' where each
    prompt has its own name, else the words it holds ('really/a/very_4'; '(12 words)_3' beyond
    `most`). One template's tokens would mislabel a position that other templates fill with
    another word."""
    labels = []
    for i, column in enumerate(zip(*str_tokens)):
        words = list(dict.fromkeys(t.strip() or repr(t) for t in column))
        if len(words) == 1:
            role = words[0]
        elif all(t.strip() == n for t, n in zip(column, names)):
            role = "{name}"
        elif len(words) <= most:
            role = "/".join(words)
        else:
            role = f"({len(words)} words)"
        labels.append(f"{role}_{i}")
    return labels
