"""The corruption replaces every occurrence, as the notebook's `sentence.replace('.', ';')` does:
a template with several periods is corrupted at each of them."""

from __future__ import annotations

import pytest
import yaml

from generator import ReportError, tasks


def write_task(folder, templates, replace=".", with_=";"):
    task = {
        "templates": templates,
        "groups": {"male": {"names": ["John", "Paul"], "answers": [" He", " he"]}},
        "corruption": {"replace": replace, "with": with_},
    }
    (folder / "two.yaml").write_text(yaml.safe_dump(task))


@pytest.mark.parametrize(
    "template",
    ["Dr. {name} is a really great friend.", "{name} came. {name} is a friend.", "{name}... is here."],
)
def test_every_period_is_replaced(tmp_path, monkeypatch, template):
    monkeypatch.setattr(tasks, "DATA_DIR", tmp_path)
    write_task(tmp_path, [template])
    spec = tasks.load_task("two")
    for p in spec.prompts:
        assert p.text.count(".") >= 2
        assert p.corrupted == p.text.replace(".", ";")  # the notebook's own expression
        assert "." not in p.corrupted and p.corrupted.count(";") == p.text.count(".")
        # nothing else moves: the two strings differ exactly where the periods were
        assert [i for i, (a, b) in enumerate(zip(p.text, p.corrupted)) if a != b] == [
            i for i, c in enumerate(p.text) if c == "."
        ]


def test_a_multi_character_corruption_is_replaced_everywhere(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks, "DATA_DIR", tmp_path)
    write_task(tmp_path, ["{name} is. {name} was."], replace=" is", with_=" was")
    for p in tasks.load_task("two").prompts:
        assert p.corrupted == p.text.replace(" is", " was") and " is" not in p.corrupted


def test_a_corruption_that_changes_nothing_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(tasks, "DATA_DIR", tmp_path)
    write_task(tmp_path, ["{name} is a friend!"])
    with pytest.raises(ReportError, match="corruption"):
        tasks.load_task("two")
