"""The organisms' training text: three freely licensed English texts that Debian packages ship,
fetched by package name with apt, read from the package files and cleaned.

    capcircuit organism fetch        # once per machine; `organism train` runs it too

Nobody wrote these texts for this project. Cleaning only removes markup and normalises
whitespace: it never inserts, rewrites or selects sentences (tests/test_organism_corpus.py
checks that the cleaned words are the raw words in order, less markup). Hold-outs are applied
later, by `corpus.build`.

The packages are pinned to the versions Debian 12 ("bookworm") shipped at its release (none of
the three has been updated since), so the corpus, and with it the trained weights, stay the same
on every machine; `corpus.build` records the corpus's sha256 in each model card.
"""

from __future__ import annotations

import dataclasses
import gzip
import os
import pathlib
import re
import shutil
import struct
import subprocess
import zlib

from generator import ReportError


@dataclasses.dataclass(frozen=True)
class Source:
    name: str  # short id, used in the cards
    title: str
    package: str  # Debian package
    version: str
    licence: str
    kind: str  # what sort of English it is
    path: str  # the file inside the package that holds the text


SOURCES = (
    Source(
        "austen",
        "Jane Austen's six completed novels (Project Gutenberg texts)",
        "r-cran-janeaustenr",
        "1.0.0-1",
        "the novels are in the public domain; the R package that carries them is MIT-licensed",
        "narrative, dialogue and letters (1811-1818)",
        "usr/lib/R/site-library/janeaustenr/data/Rdata.rdb",
    ),
    Source(
        "jargon",
        "The Jargon File 4.4.7 (Eric S. Raymond and others)",
        "jargon-text",
        "4.4.7-4.1",
        "public domain",
        "informal technical prose: hacker slang, e-mail and Usenet culture, programs and file names",
        "usr/share/doc/jargon-text/jargon.txt.gz",
    ),
    Source(
        "debian-reference",
        "Debian Reference 2.100 (Osamu Aoki)",
        "debian-reference-en",
        "2.100",
        "GPL-2+",
        "a technical manual: commands, file paths, package names, web addresses",
        "usr/share/debian-reference/debian-reference.en.txt.gz",
    ),
)


def cache_dir() -> pathlib.Path:
    """Where fetched packages are unpacked: $CAPCIRCUIT_CORPUS, else ~/.cache/capcircuit/corpus."""
    env = os.environ.get("CAPCIRCUIT_CORPUS")
    return pathlib.Path(env) if env else pathlib.Path.home() / ".cache" / "capcircuit" / "corpus"


def package_dir(source: Source, cache: pathlib.Path) -> pathlib.Path:
    return cache / f"{source.package}_{source.version}"


def fetch(cache: pathlib.Path | None = None, log=print) -> pathlib.Path:
    """Download each source's .deb with `apt-get download` (no root needed, no dependencies
    installed) and unpack it with `dpkg-deb -x`; what is already unpacked is kept."""
    cache = cache or cache_dir()
    cache.mkdir(parents=True, exist_ok=True)
    for source in SOURCES:
        target = package_dir(source, cache)
        if (target / source.path).is_file():
            continue
        tmp = cache / f".{target.name}.tmp-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        try:
            spec = f"{source.package}={source.version}"
            log(f"fetching {spec} (apt-get download) into {cache}")
            _run(["apt-get", "download", "-q", spec], tmp, spec)
            (deb,) = tmp.glob("*.deb")
            _run(["dpkg-deb", "-x", str(deb), str(tmp / "root")], tmp, spec)
            shutil.rmtree(target, ignore_errors=True)
            (tmp / "root").rename(target)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return cache


def _run(cmd: list[str], cwd: pathlib.Path, spec: str) -> None:
    try:
        done = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, check=False)
    except FileNotFoundError:
        raise ReportError(f"cannot fetch the corpus package {spec}: {cmd[0]} is not installed (Debian's apt)") from None
    if done.returncode != 0:
        last = (done.stderr.strip() or done.stdout.strip()).splitlines()[-1:] or ["(no output)"]
        raise ReportError(
            f"cannot fetch the corpus package {spec}: `{' '.join(cmd)}` failed: {last[0]} "
            "(run `apt-get update` first, as root)"
        )


def raw_text(source: Source, cache: pathlib.Path | None = None) -> str:
    """The source's text as its package ships it (Austen: its six novels, one line per line)."""
    path = package_dir(source, cache or cache_dir()) / source.path
    if not path.is_file():
        raise ReportError(f"the corpus file {path} is missing: run `capcircuit organism fetch` first")
    if source.name == "austen":
        return "\n\n".join("\n".join(book) for book in read_r_lazyload(path.read_bytes()))
    return gzip.decompress(path.read_bytes()).decode("utf-8")


def read_r_lazyload(rdb: bytes) -> list[list[str]]:
    """The character vectors of an R lazy-load database (an .rdb file: records of a 4-byte
    length and a zlib stream of an R object serialized in XDR format), in file order.

    Only what janeaustenr stores is read: a character vector (STRSXP) per novel, one element per
    line of the Gutenberg text (NA elements come back as "")."""
    books, rest = [], rdb
    while rest:
        (size,) = struct.unpack(">I", rest[:4])
        inflater = zlib.decompressobj()
        data = inflater.decompress(rest[4:])
        assert len(data) == size, f"an .rdb record says {size} bytes but holds {len(data)}"
        rest = inflater.unused_data
        books.append(_unserialize_strings(data))
    return books


def _unserialize_strings(data: bytes) -> list[str]:
    assert data[:2] == b"X\n", "not an R object in XDR format"
    pos = 2

    def integer() -> int:
        nonlocal pos
        (value,) = struct.unpack(">i", data[pos : pos + 4])
        pos += 4
        return value

    version = integer()
    integer(), integer()  # the versions of R that wrote it and can read it
    if version == 3:
        length = integer()  # of the native encoding's name, skipped
        pos += length
    flags = integer()
    assert flags & 0xFF == 16, f"expected a character vector (SEXP type 16), found type {flags & 0xFF}"
    out = []
    for _ in range(integer()):
        integer()  # the CHARSXP's flags (its encoding)
        n = integer()
        out.append("" if n == -1 else data[pos : pos + n].decode("utf-8"))
        pos += max(n, 0)
    return out


# --- cleaning: markup out, whitespace normalised, nothing else -------------------------------

ITALICS = re.compile(r"(?<![\w_])_([^_\n]+?)_(?![\w_])")  # Gutenberg's _italics_
CROSS_REF = re.compile(r"\{([^{}\n]+)\}")  # the Jargon File's {cross-reference}
TABLE_LINE = re.compile(r"^\s*(\+[-=]|\|)")  # Debian Reference's ASCII tables ("+ item" is a list)


def paragraphs(text: str) -> list[list[str]]:
    """Blank-line separated blocks, each as its list of lines."""
    blocks, block = [], []
    for line in text.splitlines():
        if line.strip():
            block.append(line)
        elif block:
            blocks.append(block)
            block = []
    return blocks + ([block] if block else [])


def clean(source: Source, text: str) -> list[str]:
    """The source's paragraphs with markup dropped and whitespace normalised (a paragraph's
    lines joined by single spaces). Markup: Gutenberg's _italics_ underscores (Austen), the
    Jargon File's {cross-reference} braces, Debian Reference's ASCII tables (whole blocks of
    lines that start with "+-" or "|")."""
    out = []
    for block in paragraphs(text):
        if source.name == "debian-reference" and all(TABLE_LINE.match(line) for line in block):
            continue
        para = " ".join(" ".join(block).split())
        if source.name == "austen":
            para = ITALICS.sub(r"\1", para)
        elif source.name == "jargon":
            while CROSS_REF.search(para):  # {{nested}} braces too
                para = CROSS_REF.sub(r"\1", para)
        out.append(para)
    return out
