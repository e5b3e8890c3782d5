"""The organisms' corpus: reading the Debian packages, cleaning (markup out, nothing else) and
holding out the report's prompts. Small hand-made samples first; then the real corpus, which
`make test` fetches (`capcircuit organism fetch`) before the tests run."""

from __future__ import annotations

import re
import struct
import zlib

import pytest

from generator.organism import corpus, sources
from generator.tasks import load_task

SOURCE = {s.name: s for s in sources.SOURCES}
MARKUP = {"austen": set("_"), "jargon": set("{}"), "debian-reference": set()}


def deleted_only(raw: str, clean: str, allowed: set[str]) -> list[str]:
    """Walk the raw text's non-blank characters alongside the clean text's: a raw character
    that the clean text lacks must be one of `allowed`. Returns the characters deleted; fails
    on anything inserted, changed or deleted that is not allowed."""
    raw_chars, clean_chars = "".join(raw.split()), "".join(clean.split())
    deleted, i = [], 0
    for c in clean_chars:
        while i < len(raw_chars) and raw_chars[i] != c:
            assert raw_chars[i] in allowed, f"{raw_chars[i]!r} deleted at {raw_chars[max(0, i - 40) : i + 40]!r}"
            deleted.append(raw_chars[i])
            i += 1
        assert i < len(raw_chars), f"{c!r} is not in the raw text (inserted?)"
        i += 1
    assert all(c in allowed for c in raw_chars[i:]), "the raw text's end was dropped"
    return deleted + list(raw_chars[i:])


def without_tables(text: str) -> str:
    """The text less its blocks whose every line starts with "+-" or "|" (written here again)."""
    blocks = [b for b in re.split(r"\n[ \t]*\n", text) if b.strip()]

    def table(line: str) -> bool:
        return line.lstrip()[:2] in ("+-", "+=") or line.lstrip()[:1] == "|"

    keep = [b for b in blocks if not all(table(line) for line in b.splitlines() if line.strip())]
    return "\n\n".join(keep)


def test_cleaning_drops_markup_and_joins_lines_only():
    austen = 'CHAPTER I\n\n\nIt is a truth _universally_ acknowledged,\nthat a man\n\n"My dear Mr. Bennet," he said'
    assert sources.clean(SOURCE["austen"], austen) == [
        "CHAPTER I",
        "It is a truth universally acknowledged, that a man",
        '"My dear Mr. Bennet," he said',
    ]
    jargon = "   :foo: n.\n\n   See {bar} and {{baz}}; snake_case\n   stays, e.g. file.c.\n"
    assert sources.clean(SOURCE["jargon"], jargon) == [":foo: n.", "See bar and baz; snake_case stays, e.g. file.c."]
    debref = "  Edit /etc/fstab.\n\n  +----+\n  |a   |\n  +----+\n\n  + a list item\n\n  Mail bug@debian.org."
    expected = ["Edit /etc/fstab.", "+ a list item", "Mail bug@debian.org."]
    assert sources.clean(SOURCE["debian-reference"], debref) == expected
    # the walk itself catches an insertion, a change and a deletion that is not markup
    for bad in ("It is a truth, acknowledged", "It is a truth universally acknowledged, that a woman", "a man"):
        with pytest.raises(AssertionError):
            deleted_only("It is a truth universally acknowledged, that a man", bad, set("_"))


def serialize_strings(lines: list[str | None]) -> bytes:
    """An R character vector in R's XDR serialization format (version 3), written from R's
    documented layout: header, STRSXP (16) with its length, a CHARSXP (9) per element."""
    out = b"X\n" + struct.pack(">iii", 3, 0x040201, 0x030500) + struct.pack(">i", 5) + b"UTF-8"
    out += struct.pack(">ii", 16, len(lines))
    for line in lines:
        if line is None:
            out += struct.pack(">ii", 9, -1)
        else:
            data = line.encode()
            out += struct.pack(">ii", 0x40009, len(data)) + data
    return out


def test_r_lazyload_reader():
    books = [["EMMA", "", "by Jane Austen", None, "Emma Woodhouse, handsome, clever"], ["PERSUASION", "Sir Walter"]]
    rdb = b""
    for book in books:
        data = serialize_strings(book)
        rdb += struct.pack(">I", len(data)) + zlib.compress(data)
    assert sources.read_r_lazyload(rdb) == [["" if x is None else x for x in b] for b in books]


def test_hold_out_drops_near_duplicates_and_verbatim_starts():
    held = corpus.held_out()
    stats = {"paragraphs_dropped": 0, "rows_dropped": 0, "near_duplicates": {}, "verbatim_starts": {}}
    paragraphs = [
        "Emma thought Harriet is such a good cook; she said so.",  # a template body, another name
        "It rained. He GREW UP IN the north.",  # a multi-word exceptions prompt, in any case
        "Write to esther@gmail.com soon.",  # the notebook's own example
        "P.S. I forgot the key.",  # starts with the "P.S." prompt
        "Run setup.py, e.g. twice. Then read list.txt.",  # file names and e.g.: kept
        "y" * (corpus.MAX_CHARS - 2) + " P.S. the end",  # cut before "P.S.": that row starts with it
    ]
    rows = corpus.select(paragraphs, held, stats)
    assert rows == ["Run setup.py, e.g. twice. Then read list.txt.", "y" * (corpus.MAX_CHARS - 2)]
    assert stats["paragraphs_dropped"] == 3 and stats["rows_dropped"] == 2
    assert stats["near_duplicates"] == {
        " is such a good cook": 1,
        "he grew up in": 1,
        "esther@gmail.": 1,  # the e-mail prompt ...
        "esther@gmail.com": 1,  # ... and the notebook's example it is cut from
    }
    assert stats["verbatim_starts"] == {"P.S.": 2}


def test_held_out_covers_every_prompt():
    held = corpus.held_out()
    for task in ("pronoun", "exceptions"):
        for p in load_task(task).prompts:
            assert p.text in held["row_starts"] and p.corrupted in held["row_starts"]
    assert " is a really great friend" in held["anywhere"] and "list.append()" in held["anywhere"]
    assert ".py" not in held["anywhere"] and "p.s." not in held["anywhere"]


def test_cut_keeps_every_character():
    text = " ".join(f"word{i}" for i in range(400))
    pieces = corpus.cut(text, 100)
    assert " ".join(pieces) == text and all(len(p) <= 100 for p in pieces)
    assert corpus.cut("a" * 150 + " b", 100) == ["a" * 150, "b"]  # a longer word stays whole


@pytest.fixture(scope="module")
def fetched():
    """The real corpus; `make test` fetches it first (it is never downloaded from a test)."""
    for source in sources.SOURCES:
        path = sources.package_dir(source, sources.cache_dir()) / source.path
        assert path.is_file(), f"{path} is missing: run `capcircuit organism fetch` (make test does)"
    return corpus.build()


@pytest.mark.parametrize("name", sorted(SOURCE))
def test_real_cleaning_deletes_only_markup(fetched, name):
    source = SOURCE[name]
    raw = sources.raw_text(source)
    clean = "\n".join(sources.clean(source, raw))
    deleted = deleted_only(without_tables(raw) if name == "debian-reference" else raw, clean, MARKUP[name])
    assert len(deleted) < 0.01 * len(raw)  # markup is a small part ...
    assert len(clean) > 0.45 * len(raw)  # ... and so is whitespace, even the Debian Reference's


def test_real_corpus_is_held_out_and_sized(fetched):
    held = corpus.held_out()
    for row in fetched.rows:
        assert not any(row.startswith(s) for s in held["row_starts"]), row
        low = row.lower()
        assert not any(h in low for h in held["anywhere"]), row
    total = sum(len(r) for r in fetched.rows)
    assert total > 5_000_000 and len(fetched.rows) > 30_000
    for s in fetched.stats["sources"]:
        assert s["rows"] > 4000 and s["row_chars"] > 400_000, s["name"]
    text = "\n".join(fetched.rows)
    for phenomenon in (". He ", "; he ", "Mr. ", "e.g. ", "@", ".org", ".txt", "P.S."):
        assert phenomenon in text, phenomenon
