"""Reading the user's files and keeping paths where they belong. Every problem is a
ReportError that names the file, what is wrong with it and the fix. Imports no torch."""

from __future__ import annotations

import errno
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import yaml

from generator import ReportError


def shown(path: str | Path) -> str:
    """A path as the user should see it: relative to the working folder when inside it."""
    path = Path(path)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


def read_text(path: str | Path, what: str = "") -> str:
    """A UTF-8 text file's contents, or one line saying why it cannot be read."""
    path = Path(path)
    name = f"{what} {shown(path)}" if what else shown(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise ReportError(f"{name} does not exist") from None
    except OSError as e:
        raise ReportError(f"{name} cannot be read: {e.strerror or e}") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise ReportError(
            f"{name} is not UTF-8 text (byte 0x{data[e.start]:02x} on line {line}): save it as UTF-8"
        ) from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.safe_load, except that a key given twice in one mapping is an error: PyYAML keeps
    the last one without a word, so a setting edited in one place can be overridden by a
    forgotten copy further down."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.setdefault(key, key_node.start_mark)
                except TypeError:
                    continue  # an unhashable key: SafeLoader reports it below
                if first is not key_node.start_mark:
                    raise yaml.constructor.ConstructorError(
                        None,
                        None,
                        f"key {key!r} appears twice (first on line {first.line + 1}); keep one",
                        key_node.start_mark,
                    )
        return super().construct_mapping(node, deep)


def read_yaml(path: str | Path, what: str = "") -> Any:
    """A YAML file's data (safe types only; a duplicated key is an error), or one line saying
    where it is broken."""
    text = read_text(path, what)
    name = f"{what} {shown(path)}" if what else shown(path)
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = e.problem or e.context or "syntax error"
        raise ReportError(f"{name} is not valid YAML{where}: {problem}") from None
    except yaml.YAMLError as e:
        raise ReportError(f"{name} is not valid YAML: {' '.join(str(e).split())}") from None


def inside(path: str | Path, folder: str | Path, what: str, rule: str) -> Path:
    """`path` resolved, if it lies strictly inside `folder`; else an error stating `rule`."""
    resolved, folder = Path(path).resolve(), Path(folder).resolve()
    if folder not in resolved.parents:
        raise ReportError(f"{what} {shown(resolved)} is not inside {shown(folder)}: {rule}")
    return resolved


def check_writable(folder: Path, what: str, setting: str) -> None:
    """Fail before anything is written, not halfway, when `folder` (created if need be) cannot
    take a new file."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        reason = e.strerror or str(e)
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            reason = "not writable"
        raise ReportError(
            f"cannot {what} in {shown(folder)}: {reason}; make it writable, or set {setting} in the config "
            "to a folder that is"
        ) from None


def umask() -> int:
    """The process's umask, read without changing it where the system allows (Linux)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


TEMP_SUFFIX = ".tmp"


def write_atomic(path: Path, text: str) -> None:
    """Write to a temp file in the same folder, then rename: readers never see half a file.

    The temp file is `.<name>.<pid>.<random>.tmp`: unique per process, removed by its owner
    when the write fails, and by a later write of the same file once its owner is dead (a
    build killed mid-write); never while another process may still be writing it. The file
    gets the modes the umask allows (mkstemp alone would make it 0600)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def remove_leftovers(path: Path) -> None:
    """Remove temp files of `path` left by processes that died mid-write (see write_atomic)."""
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)\.[^.]+" + re.escape(TEMP_SUFFIX))
    for leftover in path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}"):
        match = pattern.fullmatch(leftover.name)
        if match and not _alive(int(match.group(1))):
            leftover.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # this process writes one temp file at a time: an old one is garbage
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
