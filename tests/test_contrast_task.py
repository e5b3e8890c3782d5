"""The contrast task (tasks/data/contrast.yaml): every pair is valid for the bundled organisms'
tokenizer and GPT-2's, checked against a naive reading of the tokens; a pair that is not is
rejected with a message naming it, and the loader refuses malformed files."""

from __future__ import annotations

import pytest
import yaml
from conftest import load

from generator import ReportError, tasks


@pytest.fixture(scope="module")
def spec():
    return tasks.load_task("contrast")


def naive_check(model, exception: str, end: str) -> list[int]:
    """An independent check of a pair: same token count, same final '.', and the tokens that
    differ are all inside the stretch of tokens that differs in characters (found from the
    decoded token strings, counting characters from either end)."""
    a, b = model.to_str_tokens(exception), model.to_str_tokens(end)
    assert len(a) == len(b), (exception, end, a, b)
    assert a[-1] == b[-1] == "."
    diff = [i for i, (x, y) in enumerate(zip(a, b)) if x != y]
    assert diff
    # every token before the first differing one and after the last spells the same text
    assert "".join(a[: diff[0]]) == "".join(b[: diff[0]])
    assert "".join(a[diff[-1] + 1 :]) == "".join(b[diff[-1] + 1 :])
    return diff


def test_families_and_sizes(spec):
    families = {p.group for p in spec.prompts}
    assert families == {"email", "domain", "file_extension", "abbreviation", "capital_anyway", "decimal"}
    for family in families:
        pairs = [p for p in spec.prompts if p.group == family]
        assert len(pairs) >= 20, family
        assert all(p.text.endswith(".") and p.corrupted.endswith(".") and p.text != p.corrupted for p in pairs)
    assert len({p.text for p in spec.prompts} | {p.corrupted for p in spec.prompts}) == 2 * len(spec.prompts)


@pytest.mark.parametrize("model_name", ["organism", "organism-attn-only-1l", "gpt2-tokenizer"])
def test_every_pair_is_aligned_for_each_tokenizer(spec, model_name, tiny_gpt2):
    model = tiny_gpt2 if model_name == "gpt2-tokenizer" else load(model_name)
    batch = tasks.build(spec, model)
    assert len(batch.differing) == len(spec.prompts)
    for p, clean, corrupted, positions in zip(
        spec.prompts, batch.clean_tokens, batch.corrupted_tokens, batch.differing
    ):
        assert clean.shape == corrupted.shape
        differ = naive_check(model, p.text, p.corrupted)
        assert set(differ) <= set(positions), p.name  # tokens differ only at the derived positions
        assert positions == list(range(positions[0], positions[-1] + 1))  # one stretch of words
        assert positions[-1] < clean.shape[1] - 1  # the final "." is shared
    # the answer pair is single-token in every vocabulary here
    assert bool((batch.answer_tokens >= 0).all())


def test_a_pair_of_unequal_length_is_rejected_naming_it(tiny_gpt2):
    p = tasks.Prompt("I wrote it to john@gmail.", "I wrote it to john today.", (" The", " the"), 0, "email[7]", "email")
    with pytest.raises(ReportError) as e:
        tasks.pair_positions(tiny_gpt2, p)
    message = str(e.value)
    assert "\n" not in message and "email[7]" in message and "john@gmail." in message and "same token length" in message


class WordModel:
    """A stand-in tokenizer (words and '.' apart, BOS first) that splits " home" into " ho", "me"
    after an "@": a shared word then takes other tokens, as a context-dependent BPE might."""

    def pieces(self, text):
        import re

        out = re.findall(r" ?[^ .]+|[.]", text)
        if "@" in text:
            out = sum(([" ho", "me"] if p == " home" else [p] for p in out), [])
        return out

    def to_str_tokens(self, text, prepend_bos=True):
        return (["<bos>"] if prepend_bos else []) + self.pieces(text)

    def to_tokens(self, text):
        import torch

        return torch.tensor([[hash(p) % 100_000 for p in self.to_str_tokens(text)]])

    def to_string(self, ids):
        return "."


def test_a_pair_whose_shared_words_move_is_rejected():
    model = WordModel()
    p = tasks.Prompt("mail it to bo@x home.", "mail it to bo at home.", (" The", " the"), 0, "email[3]", "email")
    assert len(model.to_str_tokens(p.text)) == len(model.to_str_tokens(p.corrupted))
    with pytest.raises(ReportError, match=r"pair email\[3\] .*a word both members share is a different token"):
        tasks.pair_positions(model, p)
    ok = tasks.Prompt("mail it to bo@x now.", "mail it to bob now.", (" The", " the"), 0, "email[4]", "email")
    assert tasks.pair_positions(model, ok) == [4]  # ' bo@x' / ' bob': the one word that differs


def test_swapped_words_differ_only_in_their_stretch(tiny_gpt2):
    p = tasks.Prompt("He met Bob at noon.", "He met at Bob noon.", (" The", " the"), 0, "x[0]", "x")
    assert tasks.pair_positions(tiny_gpt2, p) == [3, 4]  # ' Bob at' / ' at Bob'


def test_a_pair_not_ending_in_the_same_period_is_rejected(tiny_gpt2):
    p = tasks.Prompt("Send it to ann@gmail.", "Send it to ann at home!.", (" The", " the"), 0, "email[2]", "email")
    with pytest.raises(ReportError, match=r"email\[2\]"):
        tasks.pair_positions(tiny_gpt2, p)


def test_an_unbuildable_extra_task_is_reported_not_raised(tiny_gpt2, monkeypatch, tmp_path):
    """A pair the tokenizer breaks makes the task unbuildable for that model, with the reason."""
    from generator import pipeline

    data = yaml.safe_load((tasks.DATA_DIR / "contrast.yaml").read_text())
    data["contrasts"]["email"]["pairs"].append({"exception": "I wrote it to john@gmail.", "end": "Mail it today."})
    (tmp_path / "contrast.yaml").write_text(yaml.safe_dump(data))
    (tmp_path / "pronoun.yaml").write_text((tasks.DATA_DIR / "pronoun.yaml").read_text())
    monkeypatch.setattr(tasks, "DATA_DIR", tmp_path)
    with pytest.raises(Exception, match="listed twice|also in"):
        tasks.load_task("contrast")
    data["contrasts"]["email"]["pairs"][-1] = {"exception": "I wrote it to bo@gmail.", "end": "Mail it today."}
    (tmp_path / "contrast.yaml").write_text(yaml.safe_dump(data))
    batches = pipeline.build_batches(tiny_gpt2, "tiny", {"pronoun"}, {"contrast"})
    assert isinstance(batches["contrast"], tasks.Unbuildable)
    assert "email[28]" in batches["contrast"].reason and "bo@gmail." in batches["contrast"].reason


@pytest.mark.parametrize(
    "edit, problem",
    [
        (lambda d: d["contrasts"]["email"].update(after_exception="maybe"), "after_exception"),
        (lambda d: d["contrasts"]["email"]["pairs"][0].update(end="No period"), "end in '.'"),
        (
            lambda d: d["contrasts"]["email"]["pairs"][0].update(end=d["contrasts"]["email"]["pairs"][0]["exception"]),
            "same",
        ),
        (lambda d: d["contrasts"]["email"]["pairs"][0].update(other="x"), "unknown key 'other'"),
        (lambda d: d["contrasts"]["email"].pop("answers"), "answers is missing"),
    ],
)
def test_malformed_contrast_files_are_refused(edit, problem, monkeypatch, tmp_path):
    data = yaml.safe_load((tasks.DATA_DIR / "contrast.yaml").read_text())
    edit(data)
    (tmp_path / "contrast.yaml").write_text(yaml.safe_dump(data))
    monkeypatch.setattr(tasks, "DATA_DIR", tmp_path)
    with pytest.raises(tasks.TaskFileError, match=problem):
        tasks.load_task("contrast")
