"""generator/tasks on small task files written here, each problem's whole message checked (it
names the key, the value and what is allowed), what a good file gives checked against nested
loops, and `build` on a word-level fake tokenizer: no model is loaded, so the file runs in a
second and `make mutation` runs it for every mutant of the module. The real task files and
real tokenizers are tested in test_task.py and test_task_corruption.py."""

from __future__ import annotations

import copy
import re
from types import SimpleNamespace

import pytest
import torch
import yaml

from generator import ReportError, tasks
from generator.files import shown
from generator.store import digest

MALE = {"names": ["John", "Mark"], "answers": [" He", " he"]}
FEMALE = {"names": ["Mary"], "answers": [" She", " she"]}
BASE = {
    "templates": ["{name} is here.", "So. {name} came."],
    "groups": {"male": MALE, "female": FEMALE},
    "corruption": {"replace": ".", "with": ";"},
}


@pytest.fixture
def folder(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks, "DATA_DIR", tmp_path)
    return tmp_path


def write(folder, data, name="t"):
    (folder / f"{name}.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return folder / f"{name}.yaml"


def problem(folder, data) -> str:
    """The message load_task gives for a task file, without the `task file <path>: ` prefix."""
    path = write(folder, data)
    with pytest.raises(tasks.TaskFileError) as e:
        tasks.load_task("t")
    prefix = f"task file {shown(path)}: "
    assert str(e.value).startswith(prefix), str(e.value)
    return str(e.value)[len(prefix) :]


def with_(**changes):
    return {**BASE, **changes}


def prompt_rows(spec) -> list[tuple]:
    """Each prompt of a loaded task as (text, corrupted, answers, template, name, group, from_notebook)."""
    return [(p.text, p.corrupted, p.answers, p.template, p.name, p.group, p.from_notebook) for p in spec.prompts]


# ---- templates × groups ----------------------------------------------------------------------


def test_a_good_file_gives_every_name_with_every_template_in_order(folder):
    write(folder, with_(description="about it", example="Ann is here."))
    spec = tasks.load_task("t")
    expected = []
    for group, g in BASE["groups"].items():  # group by group, name by name, template by template
        for person in g["names"]:
            for t, template in enumerate(BASE["templates"]):
                text = template.format(name=person)
                expected.append((text, text.replace(".", ";"), tuple(g["answers"]), t, person, group, False))
    assert prompt_rows(spec) == expected
    assert (spec.name, spec.description, spec.example) == ("t", "about it", "Ann is here.")
    assert spec.groups == ("male", "female") and spec.templates == tuple(BASE["templates"])
    assert spec.same_length is True and spec.info == {}
    write(folder, with_(same_length=False))
    assert tasks.load_task("t").same_length is False
    assert tasks.load_task("t").description == "" and tasks.load_task("t").example == ""


def test_a_corruption_may_delete_and_may_swap_names(folder):
    write(folder, with_(corruption={"replace": ".", "with": ""}))
    assert [p.corrupted for p in tasks.load_task("t").prompts][:2] == ["John is here", "So John came"]
    swap = {"John": "Paul", "Mark": "Luke", "Mary": "Anna"}
    write(folder, with_(corruption={"names": swap}))
    for p in tasks.load_task("t").prompts:
        assert p.corrupted == BASE["templates"][p.template].format(name=swap[p.name])


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (["a", "b"], "must be a mapping (templates, groups, corruption), got list"),
        (None, "must be a mapping (templates, groups, corruption), got nothing"),
        (
            with_(size=3),
            "unknown key 'size' (allowed: name, description, templates, groups, corruption, example, same_length)",
        ),
        ({"templates": ["{name}."], "corruption": {}}, "groups is missing"),
        (with_(description=3), "description: must be a string, got 3"),
        (with_(example=["x"]), "example: must be a string, got ['x']"),
        (with_(templates=[]), "templates: must be a non-empty list of prompt templates with {name}, got []"),
        (
            with_(templates="{name}."),
            "templates: must be a non-empty list of prompt templates with {name}, got '{name}.'",
        ),
        (with_(templates=["{name}.", ""]), "templates[1]: must be a non-empty string, got ''"),
        (with_(templates=["{name}.", 7]), "templates[1]: must be a non-empty string, got 7"),
        (with_(templates=["{name}.", "{name}?", "{name}."]), "templates: '{name}.' is listed twice"),
        (
            with_(templates=["No name here."]),
            "templates[0]: 'No name here.' has no {name}: every prompt would be the same",
        ),
        (
            with_(templates=["{name}.", "{nam} is."]),
            "templates[1]: '{nam} is.' cannot be filled in (KeyError: 'nam'): use {name} for the name and {{ }} "
            "for a literal brace",
        ),
        (with_(corruption="."), "corruption: must be a mapping (replace, with), got str"),
        (with_(corruption={"replace": "."}), "corruption: with is missing"),
        (with_(corruption={"with": ";"}), "corruption: replace is missing"),
        (
            with_(corruption={"replace": ".", "with": ";", "x": 1}),
            "corruption: unknown key 'x' (allowed: replace, with)",
        ),
        (with_(corruption={"replace": "", "with": ";"}), "corruption.replace: must be a non-empty string, got ''"),
        (with_(corruption={"replace": ".", "with": 1}), "corruption.with: must be a string, got 1"),
        (
            with_(corruption={"replace": ".", "with": "."}),
            "corruption: replaces '.' with itself, which corrupts nothing",
        ),
        (
            with_(corruption={"replace": "!", "with": ";"}),
            "corruption: leaves the prompt 'John is here.' unchanged: the corruption must change every prompt",
        ),
        (with_(corruption={"names": []}), "corruption.names: must map each name to its replacement, got []"),
        (with_(corruption={"names": {}}), "corruption.names: must map each name to its replacement, got {}"),
        (with_(corruption={"names": {"John": ""}}), "corruption.names.John: must be a non-empty string, got ''"),
        (with_(corruption={"names": {"John": "Paul"}, "x": 1}), "corruption: unknown key 'x' (allowed: names)"),
        (
            with_(corruption={"names": {"John": "Paul", "Mary": "Anna"}}),
            "corruption.names: has no replacement for the name 'Mark'",
        ),
        (with_(same_length="yes"), "same_length: must be true or false, got 'yes'"),
        (with_(same_length=1), "same_length: must be true or false, got 1"),
        (with_(groups=[]), "groups: must be a non-empty mapping of groups (names, answers), got []"),
        (with_(groups={}), "groups: must be a non-empty mapping of groups (names, answers), got {}"),
        (with_(groups={"male": {"names": ["John"]}}), "groups.male: answers is missing"),
        (with_(groups={"male": {"answers": [" He", " he"]}}), "groups.male: names is missing"),
        (
            with_(groups={"male": {**MALE, "age": 3}}),
            "groups.male: unknown key 'age' (allowed: names, answers)",
        ),
        (with_(groups={"male": "John"}), "groups.male: must be a mapping (names, answers), got str"),
        (
            with_(groups={"male": {**MALE, "names": "John"}}),
            "groups.male.names: must be a non-empty list of names, got 'John'",
        ),
        (with_(groups={"male": {**MALE, "names": ["John", "John"]}}), "groups.male.names: 'John' is listed twice"),
        (
            with_(groups={"male": {**MALE, "names": ["John", ""]}}),
            "groups.male.names[1]: must be a non-empty string, got ''",
        ),
        (
            with_(groups={"male": {**MALE, "answers": [" He"]}}),
            "groups.male.answers: needs two answers [capital, lowercase], got [' He']",
        ),
        (
            with_(groups={"male": {**MALE, "answers": " He"}}),
            "groups.male.answers: needs two answers [capital, lowercase], got ' He'",
        ),
        (
            with_(groups={"male": {**MALE, "answers": [" He", " he", " HE"]}}),
            "groups.male.answers: needs two answers [capital, lowercase], got [' He', ' he', ' HE']",
        ),
        (
            with_(groups={"male": {**MALE, "answers": [" He", ""]}}),
            "groups.male.answers[1]: must be a non-empty string, got ''",
        ),
        (
            with_(groups={"male": {**MALE, "answers": ["", " he"]}}),
            "groups.male.answers[0]: must be a non-empty string, got ''",
        ),
        (
            with_(groups={"male": {**MALE, "answers": [" He", " He"]}}),
            "groups.male.answers: the two answers are the same (' He'): give the capital and the lowercase form",
        ),
        (
            with_(groups={"male": MALE, "female": {**FEMALE, "names": ["Mark"]}}),
            "groups.female: the prompt 'Mark is here.' is also made by groups.male",
        ),
    ],
)
def test_each_problem_is_named_in_full(folder, data, message):
    assert problem(folder, data) == message


def test_an_unknown_task_lists_the_available_ones(folder):
    write(folder, BASE, "b")
    write(folder, BASE, "a")
    with pytest.raises(ReportError) as e:
        tasks.load_task("nope")
    assert str(e.value) == "unknown task 'nope': available tasks are a, b"
    assert tasks.available() == ["a", "b"]


def test_the_digest_follows_every_field_of_every_prompt(folder):
    write(folder, BASE)
    spec = tasks.load_task("t")
    assert spec.digest() == tasks.load_task("t").digest()
    changed = [
        {**BASE, "templates": ["{name} is there.", "So. {name} came."]},
        {**BASE, "corruption": {"replace": ".", "with": ","}},
        {**BASE, "groups": {"male": {**MALE, "answers": [" HE", " he"]}, "female": FEMALE}},
        {**BASE, "groups": {"female": FEMALE, "male": MALE}},  # the order is the prompts' order
        {**BASE, "groups": {"men": MALE, "female": FEMALE}},
    ]
    for data in changed:
        write(folder, data)
        assert tasks.load_task("t").digest() != spec.digest(), data
    import dataclasses

    with_info = dataclasses.replace(spec, info={"control": "x"})
    assert with_info.digest() != spec.digest()
    assert with_info.digest() != dataclasses.replace(spec, info={"control": "y"}).digest()
    # the digest is of the prompts (and the info), not of how the spec was written down
    assert dataclasses.replace(spec, description="other").digest() == spec.digest()
    assert spec.digest() == digest([dataclasses.asdict(p) for p in spec.prompts])


# ---- families ----------------------------------------------------------------------------------

FAMILIES = {
    "control": "ends",
    "families": {
        "ends": {"expected": "capital", "description": "sentence ends", "prompts": [
            {"text": "He left.", "answers": [" He", " he"]},
            {"text": "She came.", "answers": [" The", " the"], "notebook": True},
        ]},
        "mail": {"expected": "lowercase", "prompts": [{"text": "Write to a@b.", "answers": ["Com", "com"]}]},
    },
}  # fmt: skip


def test_families_give_one_prompt_each_uncorrupted(folder):
    write(folder, {**FAMILIES, "description": "d", "example": "He left."})
    spec = tasks.load_task("t")
    expected = [
        (item["text"], item["text"], tuple(item["answers"]), i, item["text"], family, item.get("notebook", False))
        for family, f in FAMILIES["families"].items()
        for i, item in enumerate(f["prompts"])
    ]
    assert prompt_rows(spec) == expected
    assert spec.info == {
        "families": {
            "ends": {"expected": "capital", "description": "sentence ends"},
            "mail": {"expected": "lowercase", "description": ""},
        },
        "control": "ends",
    }
    assert spec.same_length is False and spec.groups == ("ends", "mail") and spec.templates == ()
    assert (spec.name, spec.description, spec.example) == ("t", "d", "He left.")


def families_with(**changes):
    ends = {**FAMILIES["families"]["ends"], **changes}
    return {**FAMILIES, "families": {**FAMILIES["families"], "ends": ends}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"families": {}}, "control is missing"),
        ({**FAMILIES, "extra": 1}, "unknown key 'extra' (allowed: name, description, families, control, example)"),
        ({**FAMILIES, "description": 5}, "description: must be a string, got 5"),
        ({**FAMILIES, "families": []}, "families: must be a non-empty mapping of families, got []"),
        ({**FAMILIES, "families": {}}, "families: must be a non-empty mapping of families, got {}"),
        ({**FAMILIES, "control": "other"}, "control: 'other' is not one of its families (ends, mail)"),
        (families_with(expected="upper"), "families.ends.expected: must be capital or lowercase, got 'upper'"),
        (families_with(description=2), "families.ends.description: must be a string, got 2"),
        (families_with(prompts=[]), "families.ends.prompts: must be a non-empty list of {text, answers}, got []"),
        (
            families_with(prompts={"text": "x"}),
            "families.ends.prompts: must be a non-empty list of {text, answers}, got {'text': 'x'}",
        ),
        (families_with(size=2), "families.ends: unknown key 'size' (allowed: description, expected, prompts)"),
        (families_with(prompts=[{"text": "x."}]), "families.ends.prompts[0]: answers is missing"),
        (
            families_with(prompts=[{"text": "x.", "answers": ["A", "a"], "note": 1}]),
            "families.ends.prompts[0]: unknown key 'note' (allowed: text, answers, notebook)",
        ),
        (
            families_with(prompts=[{"text": "", "answers": ["A", "a"]}]),
            "families.ends.prompts[0].text: must be a non-empty string, got ''",
        ),
        (
            families_with(prompts=[{"text": "x.", "answers": ["A", "A"]}]),
            "families.ends.prompts[0].answers: the two answers are the same ('A'): give the capital and the "
            "lowercase form",
        ),
        (
            families_with(prompts=[{"text": "x.", "answers": ["A", "a"], "notebook": "yes"}]),
            "families.ends.prompts[0].notebook: must be true or false, got 'yes'",
        ),
        (
            families_with(prompts=[{"text": "Write to a@b.", "answers": ["A", "a"]}]),
            "families: the prompt 'Write to a@b.' is listed twice",
        ),
    ],
)
def test_each_families_problem_is_named_in_full(folder, data, message):
    assert problem(folder, data) == message


def test_families_read_from_data_name_the_default_file():
    with pytest.raises(tasks.TaskFileError) as e:
        tasks.load_families("zz", {"families": [], "control": "a"})
    assert (
        str(e.value)
        == f"task file {shown(tasks.DATA_DIR / 'zz.yaml')}: families: must be a non-empty mapping of families, got []"
    )


# ---- build, on a fake word-level tokenizer ---------------------------------------------------------


class Words:
    """A model stand-in with a tokenizer that splits words (a leading space kept, as GPT-2 does)
    and punctuation, ids given in order of first sight; BOS is id 0."""

    def __init__(self, n_ctx=64):
        self.vocab = {"<|endoftext|>": 0}
        self.cfg = SimpleNamespace(n_ctx=n_ctx, device="cpu")

    def split(self, text):
        return re.findall(r" ?\w+| ?[^\w\s]", text)

    def ids(self, text, bos=True):
        return [0] * bos + [self.vocab.setdefault(t, len(self.vocab)) for t in self.split(text)]

    def to_tokens(self, text, prepend_bos=True, truncate=True):
        texts = [text] if isinstance(text, str) else text
        rows = [self.ids(t, prepend_bos) for t in texts]
        if truncate:
            rows = [r[: self.cfg.n_ctx] for r in rows]
        return torch.tensor(rows)

    def to_str_tokens(self, text, prepend_bos=True):
        return ["<|endoftext|>"] * prepend_bos + self.split(text)

    def to_string(self, ids):
        """One id or a list of them, as text."""
        ids = ids.tolist() if hasattr(ids, "tolist") else ids
        words = {j: t for t, j in self.vocab.items()}
        return "".join(words[int(i)] for i in (ids if isinstance(ids, list) else [ids]))


def test_build_tokenises_every_prompt_and_its_answers(folder):
    write(folder, {**BASE, "templates": ["{name} is here.", "Oh {name} came."], "example": "Ann is here."})
    spec, model = tasks.load_task("t"), Words()
    batch = tasks.build(spec, model)
    assert batch.spec is spec
    assert batch.clean_tokens.tolist() == [model.ids(p.text) for p in spec.prompts]
    assert batch.corrupted_tokens.tolist() == [model.ids(p.corrupted) for p in spec.prompts]
    assert batch.answer_tokens.tolist() == [[model.vocab[a] for a in p.answers] for p in spec.prompts]
    example = model.to_str_tokens("Ann is here.")
    assert batch.position_labels == [f"{t.strip() or repr(t)}_{i}" for i, t in enumerate(example)]
    assert batch.position_roles == tasks.position_roles(
        [model.to_str_tokens(p.text) for p in spec.prompts], [p.name for p in spec.prompts]
    )
    write(folder, {**BASE, "templates": ["{name} is here."]})  # no example: the first prompt labels
    batch = tasks.build(tasks.load_task("t"), model)
    assert batch.position_labels == [f"{t.strip()}_{i}" for i, t in enumerate(model.to_str_tokens("John is here."))]


def test_build_refuses_prompts_of_different_lengths(folder):
    write(folder, {**BASE, "templates": ["{name} is here.", "{name} is not here."]})
    spec, model = tasks.load_task("t"), Words()
    with pytest.raises(ReportError) as e:
        tasks.build(spec, model)
    by_len: dict[int, list[str]] = {}
    for t in [p.text for p in spec.prompts] + [p.corrupted for p in spec.prompts]:
        by_len.setdefault(len(model.to_str_tokens(t)), []).append(t)
    detail = "; ".join(f"{n} tokens: {v[0]!r} (+{len(v) - 1} more)" for n, v in sorted(by_len.items()))
    assert detail.startswith("5 tokens: 'John is here.' (+5 more); 6 tokens: 'John is not here.' (+5 more)")
    assert str(e.value) == (
        f"task t: prompts tokenize to different lengths ({detail}); every prompt must have the same number of tokens"
    )


def test_build_refuses_an_answer_of_two_tokens(folder):
    write(
        folder, {**BASE, "templates": ["{name} is here."], "groups": {"male": {**MALE, "answers": [" He said", " he"]}}}
    )
    with pytest.raises(ReportError) as e:
        tasks.build(tasks.load_task("t"), Words())
    assert str(e.value) == (
        "answer ' He said' is 2 tokens for this model ([' He', ' said']); answers must be single tokens"
    )


@pytest.mark.parametrize("n_ctx", [4, 5])
def test_every_prompt_must_fit_the_context(folder, n_ctx):
    """'So. John came.' is 6 tokens with BOS; a context of 5 or 4 refuses the longest prompt (clean
    or corrupted) by name, 6 takes it."""
    write(folder, BASE)
    spec = tasks.load_task("t")
    with pytest.raises(ReportError) as e:
        tasks.build(spec, Words(n_ctx))
    longest = max((len(Words().ids(t)), t) for p in spec.prompts for t in (p.text, p.corrupted))
    assert longest[0] == 6
    assert str(e.value) == (
        f"task t: the prompt {longest[1]!r} is 6 tokens, longer than the context of the model ({n_ctx} tokens, "
        "n_ctx): shorten the task's prompts or use a model with a longer context"
    )
    tasks.check_context(spec, Words(6))  # exactly the context: fits
    with pytest.raises(ReportError, match="of gpt-x "):
        tasks.check_context(spec, Words(5), "gpt-x")


def test_a_long_prompt_is_shown_by_its_ends(folder):
    long = "{name} " + " ".join(f"w{i}" for i in range(30)) + "."
    write(folder, {**BASE, "templates": [long]})
    spec = tasks.load_task("t")
    with pytest.raises(ReportError) as e:
        tasks.check_context(spec, Words(20))
    text = max((len(Words().split(t)), t) for p in spec.prompts for t in (p.text, p.corrupted))[1]
    assert len(text) > 60
    assert f"the prompt {text[:28] + '...' + text[-28:]!r} is 33 tokens" in str(e.value)
    write(folder, {**BASE, "example": "a " * 40})  # the example is checked too
    with pytest.raises(ReportError, match="is 41 tokens"):
        tasks.check_context(tasks.load_task("t"), Words(20))


def test_families_build_one_tensor_per_prompt_and_mark_unusable_pairs(folder):
    data = {**copy.deepcopy(FAMILIES), "example": "Write to a@b."}
    data["families"]["mail"]["prompts"].append({"text": "See c.d.", "answers": ["Xy z", "xy z"]})
    write(folder, data)
    spec, model = tasks.load_task("t"), Words()
    batch = tasks.build(spec, model)
    assert batch.spec is spec
    assert [t.tolist() for t in batch.clean_tokens] == [[model.ids(p.text)] for p in spec.prompts]
    assert batch.corrupted_tokens is batch.clean_tokens
    assert batch.answer_tokens.tolist() == [
        [model.vocab[" He"], model.vocab[" he"]],
        [model.vocab[" The"], model.vocab[" the"]],
        [model.vocab["Com"], model.vocab["com"]],
        [tasks.UNUSABLE, tasks.UNUSABLE],
    ]
    assert batch.position_labels == [f"{t.strip()}_{i}" for i, t in enumerate(model.to_str_tokens("Write to a@b."))]
    data.pop("example")
    write(folder, data)
    batch = tasks.build(tasks.load_task("t"), model)
    assert batch.position_labels == [f"{t.strip()}_{i}" for i, t in enumerate(model.to_str_tokens("He left."))]


# ---- position labels ----------------------------------------------------------------------------


def test_position_labels_and_roles_by_hand():
    assert tasks.position_labels(["<s>", " John", " ", "."]) == ["<s>_0", "John_1", "' '_2", "._3"]
    columns = [
        ["<s>", " Ann", " is", " a", "."],
        ["<s>", " Bob", " was", " a", "."],
        ["<s>", " Cy", " is", " b", "."],
        ["<s>", " Di", " is", " c", "."],
        ["<s>", " Ed", " is", " d", "."],
    ]
    names = ["Ann", "Bob", "Cy", "Di", "Ed"]
    assert tasks.position_roles(columns, names) == ["<s>_0", "{name}_1", "is/was_2", "a/b/c/d_3", "._4"]
    assert tasks.position_roles(columns, names, most=3)[3] == "(4 words)_3"
    assert tasks.position_roles(columns, names, most=2)[2] == "is/was_2"
    spaces = [["<s>", " "], ["<s>", " "]]
    assert tasks.position_roles(spaces, ["a", "b"]) == ["<s>_0", "' '_1"]
    names[1] = "Bo"  # a prompt whose slot does not hold its own name: the words it holds
    assert tasks.position_roles(columns, names)[1] == "(5 words)_1"


def test_batches_live_on_the_models_device(folder):
    write(folder, {**BASE, "templates": ["{name} is here."]})
    model = Words()
    model.cfg.device = "meta"  # a device of its own, so that a tensor left on the CPU shows
    batch = tasks.build(tasks.load_task("t"), model)
    assert {t.device.type for t in (batch.clean_tokens, batch.corrupted_tokens, batch.answer_tokens)} == {"meta"}
    write(folder, FAMILIES)
    batch = tasks.build(tasks.load_task("t"), model)
    assert {t.device.type for t in [*batch.clean_tokens, batch.answer_tokens]} == {"meta"}


@pytest.mark.parametrize("length", [59, 60, 61])
def test_a_prompt_is_shortened_in_the_message_only_beyond_60_characters(folder, length):
    name = "J" * (length - len(" is here."))
    write(folder, {**BASE, "templates": ["{name} is here."], "groups": {"male": {**MALE, "names": [name]}}})
    spec = tasks.load_task("t")
    longest = max((len(Words().ids(t)), t) for p in spec.prompts for t in (p.text, p.corrupted))[1]
    assert len(longest) == length
    with pytest.raises(ReportError) as e:
        tasks.check_context(spec, Words(3))
    shown_text = longest if length <= 60 else longest[:28] + "..." + longest[-28:]
    assert f"the prompt {shown_text!r} is 5 tokens" in str(e.value)


def test_a_task_file_that_is_not_yaml_is_named_as_a_task_file(folder):
    (folder / "t.yaml").write_text("templates: [\n")
    with pytest.raises(ReportError) as e:
        tasks.load_task("t")
    assert str(e.value).startswith(f"task file {shown(folder / 't.yaml')} is not valid YAML"), str(e.value)


def test_families_without_a_description_or_example_have_empty_ones(folder):
    write(folder, FAMILIES)
    spec = tasks.load_task("t")
    assert (spec.description, spec.example) == ("", "")


# ---- contrasts --------------------------------------------------------------------------------

CONTRASTS = {
    "contrasts": {
        "mail": {"description": "an address", "after_exception": "lowercase", "answers": [" The", " the"], "pairs": [
            {"exception": "Write to ann@home.", "end": "Write to ann at home."},
            {"exception": "Go to bo@x.", "end": "Go to bo at x."},
        ]},
        "title": {"after_exception": "capital", "answers": [" He", " he"], "pairs": [
            {"exception": "I met Dr.", "end": "I met Al."},
        ]},
    },
}  # fmt: skip


def test_contrasts_give_one_prompt_per_pair(folder):
    write(folder, {**CONTRASTS, "description": "d", "example": "Go to bo@x."})
    spec = tasks.load_task("t")
    expected = [
        (pair["exception"], pair["end"], tuple(f["answers"]), i, f"{family}[{i}]", family, False)
        for family, f in CONTRASTS["contrasts"].items()
        for i, pair in enumerate(f["pairs"])
    ]
    assert prompt_rows(spec) == expected
    assert spec.info == {
        "kind": "contrasts",
        "families": {
            "mail": {"after_exception": "lowercase", "description": "an address"},
            "title": {"after_exception": "capital", "description": ""},
        },
    }
    assert spec.same_length is False and spec.groups == ("mail", "title") and spec.templates == ()
    assert (spec.name, spec.description, spec.example) == ("t", "d", "Go to bo@x.")
    write(folder, CONTRASTS)
    assert (tasks.load_task("t").description, tasks.load_task("t").example) == ("", "")


def contrasts_with(pair=None, **changes):
    mail = copy.deepcopy(CONTRASTS["contrasts"]["mail"])
    mail.update(changes)
    if pair is not None:
        mail["pairs"][0] = pair
    return {"contrasts": {**CONTRASTS["contrasts"], "mail": mail}}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({**CONTRASTS, "x": 1}, "unknown key 'x' (allowed: name, description, contrasts, example)"),
        ({**CONTRASTS, "description": 5}, "description: must be a string, got 5"),
        ({**CONTRASTS, "example": 5}, "example: must be a string, got 5"),
        ({"contrasts": []}, "contrasts: must be a non-empty mapping of families, got []"),
        ({"contrasts": {}}, "contrasts: must be a non-empty mapping of families, got {}"),
        (
            {"contrasts": {"mail": "x"}},
            "contrasts.mail: must be a mapping (after_exception, answers, pairs), got str",
        ),
        (
            contrasts_with(size=2),
            "contrasts.mail: unknown key 'size' (allowed: description, after_exception, answers, pairs)",
        ),
        ({"contrasts": {"mail": {"answers": ["A", "a"], "pairs": []}}}, "contrasts.mail: after_exception is missing"),
        (
            contrasts_with(after_exception="maybe"),
            "contrasts.mail.after_exception: must be capital or lowercase, got 'maybe'",
        ),
        (contrasts_with(description=2), "contrasts.mail.description: must be a string, got 2"),
        (
            contrasts_with(answers=[" The"]),
            "contrasts.mail.answers: needs two answers [capital, lowercase], got [' The']",
        ),
        (contrasts_with(pairs=[]), "contrasts.mail.pairs: must be a non-empty list of {exception, end}, got []"),
        (
            contrasts_with(pairs={"exception": "a."}),
            "contrasts.mail.pairs: must be a non-empty list of {exception, end}, got {'exception': 'a.'}",
        ),
        (contrasts_with(pair="a."), "contrasts.mail.pairs[0]: must be a mapping (exception, end), got str"),
        (
            contrasts_with(pair={"exception": "a.", "end": "b.", "other": 1}),
            "contrasts.mail.pairs[0]: unknown key 'other' (allowed: exception, end)",
        ),
        (contrasts_with(pair={"exception": "a."}), "contrasts.mail.pairs[0]: end is missing"),
        (
            contrasts_with(pair={"exception": "", "end": "b."}),
            "contrasts.mail.pairs[0].exception: must be a non-empty string, got ''",
        ),
        (
            contrasts_with(pair={"exception": "a.", "end": 3}),
            "contrasts.mail.pairs[0].end: must be a non-empty string, got 3",
        ),
        (
            contrasts_with(pair={"exception": "a.", "end": "b"}),
            "contrasts.mail.pairs[0]: 'a.' / 'b': both members must end in '.'",
        ),
        (
            contrasts_with(pair={"exception": "a", "end": "b."}),
            "contrasts.mail.pairs[0]: 'a' / 'b.': both members must end in '.'",
        ),
        (
            contrasts_with(pair={"exception": "a.", "end": "a."}),
            "contrasts.mail.pairs[0]: the two members are the same ('a.'): they must differ",
        ),
        (
            contrasts_with(pair={"exception": "Go to bo at x.", "end": "Go to bo then."}),
            "contrasts.mail.pairs[1]: the prompt 'Go to bo at x.' is also in contrasts.mail.pairs[0]",
        ),
        (
            contrasts_with(pair={"exception": "I met Al.", "end": "I met Ed."}),
            "contrasts.title.pairs[0]: the prompt 'I met Al.' is also in contrasts.mail.pairs[0]",
        ),
    ],
)
def test_each_contrasts_problem_is_named_in_full(folder, data, message):
    assert problem(folder, data) == message


def test_contrasts_read_from_data_name_the_default_file():
    with pytest.raises(tasks.TaskFileError) as e:
        tasks.load_contrasts("zz", {"contrasts": []})
    assert str(e.value) == (
        f"task file {shown(tasks.DATA_DIR / 'zz.yaml')}: contrasts: must be a non-empty mapping of families, got []"
    )


class Glued(Words):
    """ " home" is two tokens (" ho", "me") in a text with an "@": a word both members share then
    takes other tokens in one of them, as a context-dependent BPE might."""

    def split(self, text):
        pieces = super().split(text)
        return sum(([" ho", "me"] if p == " home" and "@" in text else [p] for p in pieces), [])


class Folded(Words):
    """Ids that ignore case: two texts that differ only in case are the same tokens."""

    def ids(self, text, bos=True):
        return super().ids(text.lower(), bos)


def pair(a, b, name="mail[0]"):
    return tasks.Prompt(a, b, (" The", " the"), 0, name, "mail")


@pytest.mark.parametrize(
    ("a", "b", "positions"),
    [
        # [BOS, Write, ' to', ' ann', '@' / ' at', 'home' / ' home', '.']: the two words that differ
        ("Write to ann@home.", "Write to ann at home.", [4, 5]),
        ("Go to bob now.", "Go to bib now.", [3]),
        # ' Bob' holds its space, which both share: still the word that differs
        ("He met Bob at noon.", "He met at Bob noon.", [3, 4]),
        ("Bob is here.", "Rob is here.", [1]),
        ("It is mine.", "It is his.", [3]),
        ("bob.", "Ibob.", [1]),  # the whole of one member is the other's end
    ],
)
def test_pair_positions_are_the_words_that_differ(a, b, positions):
    model = Words()
    assert tasks.pair_positions(model, pair(a, b)) == positions
    ids_a, ids_b = model.ids(a), model.ids(b)  # every differing token is among them, and no shared one
    assert {i for i, (x, y) in enumerate(zip(ids_a, ids_b)) if x != y} <= set(positions)
    assert len(ids_a) - 1 not in positions and 0 not in positions


class Greedy(Words):
    """Sub-word tokens: the longest piece of a small vocabulary first, as a BPE might split."""

    def split(self, text):
        pieces, i = [], 0
        while i < len(text):
            pieces.append(next(v for v in ("aba", "ba", "a", "b", ".") if text.startswith(v, i)))
            i += len(pieces[-1])
        return pieces


def test_a_shared_start_and_end_that_overlap_leave_the_differing_token():
    """'baba.' / 'baaba.' are [ba, ba, .] / [ba, aba, .]. Their shared start 'ba' and shared end
    'aba.' overlap in the shorter member; the end is cut to what the start leaves of it, so the
    longer member's second token still holds a differing character: a differing position, not
    a shared word that moved."""
    assert tasks.pair_positions(Greedy(), pair("baba.", "baaba.")) == [2]


@pytest.mark.parametrize(
    ("model", "a", "b", "problem"),
    [
        (Words(), "Write to ann@home.", "Write to ann at my home.", "7 against 8 tokens; the two members must have "
         "the same token length"),
        (Words(), "Go to bob now.", "Go to bob now!", "the members must end in the same '.' token"),
        (Words(), "Go to bob now!", "Go to bib now!", "the members must end in the same '.' token"),
        (Words(), "Go to  bob.", "Go to  bib.", "its tokens ['Go', ' to', ' bob', '.'] do not spell 'Go to  bob.', so "
         "their positions cannot be checked"),
        (Words(), "Go to bob.", "Go to  bib.", "its tokens ['Go', ' to', ' bib', '.'] do not spell 'Go to  bib.', so "
         "their positions cannot be checked"),
        # [BOS, mail, ' bo', '@' / ' at', 'x' / ' x', ' ho' / ' y', 'me' / ' home', '.']: ' home' moved
        (Glued(), "mail bo@x home.", "mail bo at x y home.", "a word both members share is a different token at "
         "position 6: the members must differ only where their words do"),
        (Folded(), "Go to Bob.", "Go to bob.", "the members tokenize to the same tokens"),
    ],
)  # fmt: skip
def test_each_pair_problem_is_named_in_full(model, a, b, problem):
    with pytest.raises(ReportError) as e:
        tasks.pair_positions(model, pair(a, b, "mail[3]"), "tk")
    assert str(e.value) == f"task tk: pair mail[3] ({a!r} / {b!r}): {problem}"
    with pytest.raises(ReportError, match=r"^task contrast: pair mail\[3\] "):  # the task's name by default
        tasks.pair_positions(model, pair(a, b, "mail[3]"))


def test_contrasts_build_one_tensor_per_member_with_their_positions(folder):
    data = copy.deepcopy(CONTRASTS)
    data["contrasts"]["title"]["answers"] = ["Xy z", "xy z"]  # two tokens: unusable, not an error
    write(folder, {**data, "example": "Go to bo@x."})
    spec, model = tasks.load_task("t"), Words()
    batch = tasks.build(spec, model)
    assert batch.spec is spec
    assert [t.tolist() for t in batch.clean_tokens] == [[model.ids(p.text)] for p in spec.prompts]
    assert [t.tolist() for t in batch.corrupted_tokens] == [[model.ids(p.corrupted)] for p in spec.prompts]
    # by hand: '@' / ' at' and 'home' / ' home'; '@' / ' at' and 'x' / ' x'; 'Dr' / 'Al'
    assert batch.differing == [[4, 5], [4, 5], [3]]
    assert batch.answer_tokens.tolist() == [
        [model.vocab[" The"], model.vocab[" the"]],
        [model.vocab[" The"], model.vocab[" the"]],
        [tasks.UNUSABLE, tasks.UNUSABLE],
    ]
    assert batch.position_labels == [f"{t.strip()}_{i}" for i, t in enumerate(model.to_str_tokens("Go to bo@x."))]
    model.cfg.device = "meta"  # a device of its own, so that a tensor left on the CPU shows
    batch = tasks.build(spec, model)
    assert {t.device.type for t in [*batch.clean_tokens, *batch.corrupted_tokens, batch.answer_tokens]} == {"meta"}
    write(folder, CONTRASTS)  # no example: the first pair's exception labels the positions
    batch = tasks.build(tasks.load_task("t"), Words())
    assert batch.position_labels == [
        f"{t.strip()}_{i}" for i, t in enumerate(Words().to_str_tokens("Write to ann@home."))
    ]
    data["contrasts"]["title"]["pairs"][0]["end"] = "I met Al Bo."  # one pair broken: the build fails, naming it
    write(folder, data)
    with pytest.raises(ReportError, match=r"^task t: pair title\[0\] .*5 against 6 tokens"):
        tasks.build(tasks.load_task("t"), Words())
