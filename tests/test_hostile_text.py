"""Every text field a page prints (the report's title, the example prompt, a task's description,
templates and prompts, an exception family's description) holding HTML, markdown and Jinja
syntax comes out of a real build as that text: in the HTML's visible text, verbatim, and never
as markup (no script, emphasis, link, code span or table cell made from it; a markdown link
also fails the strict build). The task descriptions, templates and example prompt are not
printed on this two-experiment site; they are set anyway, so that a page that prints them is
held to the same rule."""

from __future__ import annotations

import html
import re
import shutil

import yaml
from click.testing import CliRunner
from conftest import small_tasks, write_config

from generator.cli import main

# markdown, HTML and Jinja in one string; "{{" and "}}" are a literal brace pair in a template
HOSTILE = "<script>alert(1)</script> *star* _under_ |pipe| `tick` [x](y) {{ jinja }} &amp; #h"
FILLED = HOSTILE.replace("{{", "{").replace("}}", "}")  # what str.format makes of it in a template
MARKUP = ["<script>alert", '<a href="y"', "<em>star", "<strong>star", "<em>under", "<strong>under", "<code>tick"]


def visible(page: str) -> str:
    """The page's text as a reader sees it (tags dropped, entities decoded, ␣ as a space)."""
    page = re.sub(r"<(script|style)\b.*?</\1>", " ", page, flags=re.S)
    text = html.unescape(re.sub(r"<[^>]+>", "", page))
    return text.replace("␣", " ").replace("\\", "")


def test_hostile_text_in_every_field_is_shown_as_text(tmp_path, monkeypatch, tiny_gpt2_dir):
    import generator.tasks

    data_dir = tmp_path / "tasks"
    shutil.copytree(generator.tasks.DATA_DIR, data_dir)
    # few prompts (every family and group kept, 2 templates and prompts each): what is checked
    # is how the fields print, not how many there are
    small_tasks(data_dir)
    pronoun = yaml.safe_load((data_dir / "pronoun.yaml").read_text())
    pronoun["description"] = f"Pronoun {HOSTILE}"
    pronoun["templates"] = [f"{HOSTILE} " + t for t in pronoun["templates"]]
    pronoun["example"] = f"{FILLED} John is a really great friend."
    (data_dir / "pronoun.yaml").write_text(yaml.safe_dump(pronoun))
    exceptions = yaml.safe_load((data_dir / "exceptions.yaml").read_text())
    exceptions["description"] = f"Exceptions {HOSTILE}"
    for family in exceptions["families"].values():
        family["description"] = f"Family {HOSTILE}"
        for prompt in family["prompts"]:
            prompt["text"] = f"{HOSTILE} {prompt['text']}"
    (data_dir / "exceptions.yaml").write_text(yaml.safe_dump(exceptions))
    monkeypatch.setattr(generator.tasks, "DATA_DIR", data_dir)

    config = write_config(
        tmp_path,
        title=f"Report {HOSTILE}",
        example_prompt=f"{FILLED} John is great.",
        models=[str(tiny_gpt2_dir)],
        device="cpu",
        experiments={"baseline": {}, "exceptions": {}},
    )
    result = CliRunner().invoke(main, ["build", "--config", str(config)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    pages = {p.relative_to(tmp_path / "site").as_posix(): p.read_text() for p in (tmp_path / "site").rglob("*.html")}
    assert len(pages) > 3
    for name, page in pages.items():
        if name == "404.html":
            continue
        text = visible(page)
        assert f"Report {HOSTILE}" in text, name  # the title, on every page
        for raw in MARKUP:
            assert raw not in page, (raw, name)
    everything = "\n".join(visible(p) for p in pages.values())
    for field, want in [
        ("family description", f"Family {HOSTILE}"),
        ("a prompt made from a template", FILLED + " John is a really great friend."),
        ("an exception prompt", HOSTILE + " Send the letter to John."),
    ]:
        assert want in everything, field
