"""The seed task as data, tokenised with the real GPT-2 BPE."""

from dataclasses import replace

import pytest
from conftest import gpt2_tokenizer

from generator import ReportError
from generator.models import load_model
from generator.tasks import Prompt, build, load_task


def test_seed_task_has_100_prompts_of_both_genders():
    spec = load_task("pronoun")
    assert len(spec.prompts) == 100
    assert {p.group for p in spec.prompts} == {"male", "female"}
    assert all(p.corrupted == p.text[:-1] + ";" for p in spec.prompts)
    assert {p.answers for p in spec.prompts} == {(" He", " he"), (" She", " she")}


def test_prompts_are_the_notebooks_in_its_order():
    """Prompt i is the notebook's prompt i (generator/assets/notebook/gpt2-small-reference.json),
    so per-prompt numbers line up with the ones it printed."""
    import json

    from generator.models import ASSETS

    reference = json.loads((ASSETS / "notebook" / "gpt2-small-reference.json").read_text())
    spec = load_task("pronoun")
    assert [p.text for p in spec.prompts] == reference["prompts"]
    assert list(spec.templates) == reference["templates"]
    assert [p.name for p in spec.prompts][::5] == reference["male_names"] + reference["female_names"]
    assert all(p.corrupted == p.text.replace(".", ";") for p in spec.prompts)


def test_gpt2_tokenizes_every_seed_prompt_to_8_tokens_with_bos():
    tokenizer = gpt2_tokenizer()
    for p in load_task("pronoun").prompts:
        for text in (p.text, p.corrupted):
            ids = [tokenizer.bos_token_id] + tokenizer(text).input_ids
            assert len(ids) == 8, text
    assert tokenizer(" He").input_ids == [679]
    assert tokenizer(" he").input_ids == [339]


@pytest.fixture(scope="module")
def tiny_model(tiny_gpt2_dir):
    from generator.models import resolve

    return load_model(resolve(str(tiny_gpt2_dir)), device="cpu")


def test_build_gives_equal_length_tokens_and_single_token_answers(tiny_model):
    batch = build(load_task("pronoun"), tiny_model)
    assert tuple(batch.clean_tokens.shape) == (100, 8)
    assert batch.corrupted_tokens.shape == batch.clean_tokens.shape
    assert batch.answer_tokens[0].tolist() == [679, 339]  # John: " He", " he"
    assert batch.position_labels[1] == "John_1" and batch.position_labels[7] == "._7"
    # averaged maps: each position by what it holds in every prompt (the notebook's 5 templates)
    assert batch.position_roles == [
        "<|endoftext|>_0",
        "{name}_1",
        "is_2",
        "a/such_3",
        "really/a/very_4",
        "great/good/nice/funny_5",
        "friend/cook/athlete/person_6",
        "._7",
    ]
    columns = [set(col) for col in zip(*(tiny_model.to_str_tokens(p.text) for p in batch.spec.prompts))]
    for label, col in zip(batch.position_roles, columns):
        role = label.rsplit("_", 1)[0]
        assert role == "{name}" or set(role.split("/")) == {t.strip() or repr(t) for t in col}, label

    differ = (batch.clean_tokens != batch.corrupted_tokens).nonzero()[:, 1].unique().tolist()
    assert differ == [7]  # only the final punctuation differs


def test_position_roles_name_the_slot_and_count_many_words():
    from generator.tasks import position_roles

    tokens = [["<s>", "Ann", " x", f" w{i}", "."] for i in range(6)]
    names = ["Ann"] * 6
    assert position_roles(tokens, names) == ["<s>_0", "Ann_1", "x_2", "(6 words)_3", "._4"]
    tokens[1][1] = "Bob"
    assert position_roles(tokens, ["Ann", "Bob", "Ann", "Ann", "Ann", "Ann"])[1] == "{name}_1"


def test_build_fails_loudly_when_lengths_differ(tiny_model):
    spec = load_task("pronoun")
    odd = Prompt(
        "Emma is a really great friend.", "Emma is a really great friend;", (" She", " she"), 0, "Emma", "female"
    )
    with pytest.raises(ReportError, match="different lengths"):
        build(replace(spec, prompts=spec.prompts + (odd,)), tiny_model)


def test_build_fails_loudly_on_multi_token_answers(tiny_model):
    spec = load_task("pronoun")
    bad = replace(spec.prompts[0], answers=(" Hexagon", " hexagon"))
    with pytest.raises(ReportError, match="single tokens"):
        build(replace(spec, prompts=(bad,) + spec.prompts[1:]), tiny_model)


def test_unknown_task_lists_available():
    with pytest.raises(ReportError, match="available tasks are .*pronoun"):
        load_task("nope")


# ---- the hypotheses page's prompt sets ------------------------------------------------------


def test_name_swap_corruption_swaps_every_name_across_gender():
    spec = load_task("positions_name_gender")
    by_name = {p.name: p.group for p in spec.prompts}
    for p in spec.prompts:
        other = p.corrupted.split(" ", 1)[0]
        assert p.corrupted == p.text.replace(p.name, other, 1) and by_name[other] != p.group
    assert {p.answers for p in spec.prompts} == {(" He", " She"), (" She", " He")}


def test_verb_and_subject_corruptions_change_one_word():
    for name, changed in (("positions_verb", 1), ("positions_subject", 0)):
        for p in load_task(name).prompts:
            words = list(zip(p.text.split(" "), p.corrupted.split(" ")))
            assert [i for i, (a, b) in enumerate(words) if a != b] == [changed], p.text


def test_copying_sets_have_no_capital_where_they_say_so(tiny_model):
    for name in ("copy_lowercase_names", "copy_no_capital"):
        assert not any(c.isupper() for p in load_task(name).prompts for c in p.text), name
    assert all(p.text[0].isupper() for p in load_task("copy_capital_word").prompts)
    batch = build(load_task("copy_no_capital"), tiny_model)  # lengths differ: one tensor per prompt
    assert isinstance(batch.clean_tokens, list) and len({t.shape[1] for t in batch.clean_tokens}) > 1


def test_task_file_errors_name_the_field(tmp_path, monkeypatch):
    import generator.tasks

    monkeypatch.setattr(generator.tasks, "DATA_DIR", tmp_path)
    base = 'templates: ["{name} is here."]\ngroups: {male: {names: [John, Mark], answers: [" He", " he"]}}\n'
    cases = {
        "corruption: {names: {John: Mary}}": "no replacement for the name 'Mark'",
        "corruption: {names: {John: John, Mark: Paul}}": "must change every prompt",
        "corruption: {names: []}": "corruption.names: must map each name",
        'corruption: {replace: ".", with: ";"}\nsame_length: maybe': "same_length: must be true or false",
    }
    for extra, expected in cases.items():
        (tmp_path / "t.yaml").write_text(base + extra + "\n")
        with pytest.raises(ReportError, match=expected):
            load_task("t")
