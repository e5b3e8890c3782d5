"""The organisms' training rows: the cleaned sources (sources.py) with the report's prompts held
out, cut into pieces that fit the model's context. Each row is trained as BOS + piece.

Held out, so that the report measures generalisation rather than recall:

* verbatim: no row starts with any prompt of the report's tasks (generator/tasks/data/*.yaml):
  a row is BOS + text, exactly as a prompt is fed, so a row that starts with a prompt is that
  prompt with its continuation;
* near-duplicates, anywhere in a paragraph (compared in lower case): the pronoun templates'
  bodies (" is a really great friend", ...: any name, "." or ";" after it), every multi-word
  prompt of the exceptions task ("He grew up in", "Send the letter to John."), its e-mail
  prompts (a specific address), and the seed notebook's own exception examples
  (NOTEBOOK_EXAMPLES) but for the bare file extensions ".py" and ".txt", which are the
  phenomenon itself rather than an example of it (the task's "." prompt is held out as a row
  start).

A paragraph with a near-duplicate is dropped whole; a row that starts with a prompt is dropped.
Both are counted, per held-out text, in the model cards. Nothing else is selected: the corpus
is every paragraph of every source, in order.
"""

from __future__ import annotations

import dataclasses
import hashlib

from generator.organism import sources
from generator.tasks import load_task

# The seed notebook's own exception examples (its section "Task").
NOTEBOOK_EXAMPLES = (
    "esther@gmail.com",
    "google.com",
    ".py",
    ".txt",
    "list.append()",
    "The capital of Canada is Ottawa while the capital of France is",
    "The white house is in Washington, while the Louvre is in",
)
FILE_EXTENSIONS = (".py", ".txt")
# Long paragraphs are cut at the last space before this many characters, so that a row of
# English fits the 128-token context (about 4 characters a token).
MAX_CHARS = 440


@dataclasses.dataclass
class Corpus:
    rows: list[str]  # the training rows, in source order
    stats: dict  # per source and per held-out text: what was read, kept and dropped

    def sha256(self) -> str:
        return hashlib.sha256("\n".join(self.rows).encode()).hexdigest()


def held_out() -> dict:
    """What no row may start with (verbatim prompts) and what no paragraph may contain
    (near-duplicates, lower case)."""
    pronoun, exceptions = load_task("pronoun"), load_task("exceptions")
    starts = sorted({t for p in pronoun.prompts + exceptions.prompts for t in (p.text, p.corrupted)})
    bodies = [t.removeprefix("{name}").rstrip(".") for t in pronoun.templates]
    multiword = [p.text for p in exceptions.prompts if " " in p.text.strip() or "@" in p.text]
    examples = [x for x in NOTEBOOK_EXAMPLES if x not in FILE_EXTENSIONS]
    anywhere = sorted({x.lower() for x in bodies + multiword + examples})
    return {"row_starts": starts, "anywhere": anywhere}


def cut(paragraph: str, max_chars: int = MAX_CHARS) -> list[str]:
    """The paragraph in pieces of at most max_chars, each cut at a space (a word longer than
    max_chars is kept whole)."""
    pieces = []
    while len(paragraph) > max_chars:
        at = paragraph.rfind(" ", 0, max_chars + 1)
        if at <= 0:
            at = paragraph.find(" ", max_chars)
            if at == -1:
                break
        pieces.append(paragraph[:at])
        paragraph = paragraph[at + 1 :]
    return pieces + [paragraph]


def select(paragraphs: list[str], held: dict, stats: dict) -> list[str]:
    """The rows of these paragraphs, less the held-out ones; counts what went in `stats`."""
    rows = []
    for para in paragraphs:
        low = para.lower()
        hits = [h for h in held["anywhere"] if h in low]
        for h in hits:
            stats["near_duplicates"][h] = stats["near_duplicates"].get(h, 0) + 1
        if hits:
            stats["paragraphs_dropped"] += 1
            continue
        for piece in cut(para):
            starts = [s for s in held["row_starts"] if piece.startswith(s)]
            for s in starts:
                stats["verbatim_starts"][s] = stats["verbatim_starts"].get(s, 0) + 1
            if starts:
                stats["rows_dropped"] += 1
            else:
                rows.append(piece)
    return rows


def build(cache=None) -> Corpus:
    """Every source, read, cleaned, held out and cut (run `sources.fetch` first)."""
    held = held_out()
    stats = {"sources": [], "paragraphs_dropped": 0, "rows_dropped": 0, "near_duplicates": {}, "verbatim_starts": {}}
    rows = []
    for source in sources.SOURCES:
        raw = sources.raw_text(source, cache)
        paragraphs = sources.clean(source, raw)
        kept = select(paragraphs, held, stats)
        stats["sources"].append(
            {
                **dataclasses.asdict(source),
                "raw_chars": len(raw),
                "clean_chars": sum(len(p) for p in paragraphs),
                "paragraphs": len(paragraphs),
                "rows": len(kept),
                "row_chars": sum(len(r) for r in kept),
            }
        )
        rows += kept
    return Corpus(rows, stats)
