"""Reading the user's files and keeping paths where they belong. Every problem is a
ReportError that names the file, what is wrong with it and the fix. Imports no torch."""

from __future__ import annotations

import errno
import os
import re
import shutil
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
    take a new file. `setting`: what the user changes to point elsewhere (a config field such as
    paths.results, or a command-line option such as --out)."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as e:
        reason = e.strerror or str(e)
        if e.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
            reason = "not writable"
        elsewhere = f"pass {setting}" if setting.startswith("--") else f"set {setting} in the config to"
        raise ReportError(
            f"cannot {what} in {shown(folder)}: {reason}; make it writable, or {elsewhere} a folder that is"
        ) from None


def check_free_space(folder: Path, needed: int, what: str, setting: str) -> None:
    """Fail before the work, not after it, when `folder`'s disk has less than `needed` bytes free."""
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        return  # not measurable here (check_writable has already vouched for the folder)
    if free < needed:
        raise ReportError(
            f"cannot {what} in {shown(folder)}: {free / 1e6:.1f} MB free on its disk, {needed / 1e6:.0f} MB needed; "
            f"free some space, or set {setting} in the config to a folder on another disk"
        )


def write_failed(path: Path, e: OSError) -> ReportError:
    """An OSError from a write as one line: the file, the cause and the fix."""
    fixes = {
        errno.ENOSPC: "free some disk space and run again",
        errno.EDQUOT: "free some of your disk quota and run again",
        errno.EACCES: "make its folder writable",
        errno.EPERM: "make its folder writable",
        errno.EROFS: "the disk is read-only: write to another folder",
    }
    fix = fixes.get(e.errno, "check the folder and run again")
    return ReportError(f"cannot write {shown(path)}: {e.strerror or e}; {fix}")


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
    when the write fails, and by a later write of the same file (or remove_dead_temps) once its
    owner is dead (a build killed mid-write); never while another process may still be writing
    it. The file gets the modes the umask allows (mkstemp alone would make it 0600). An OSError
    is a ReportError naming the file, the cause and the fix."""
    write_all({path: text})


def write_all(files: dict[Path, str]) -> None:
    """Write several files as one unit: every temp file is written first, then all are renamed.
    A failed write (a full disk, a read-only folder) replaces none of them."""
    staged: list[tuple[str, Path]] = []
    try:
        for path, text in files.items():
            staged.append((_write_temp(path, text), path))
        for tmp, path in staged:
            os.replace(tmp, path)
    except OSError as e:
        raise write_failed(path, e) from None
    finally:
        for tmp, _ in staged:
            Path(tmp).unlink(missing_ok=True)  # already renamed, or left by a failure


def _write_temp(path: Path, text: str) -> str:
    """`text` in a new temp file beside `path` (see write_atomic); its name."""
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_leftovers(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.{os.getpid()}.", suffix=TEMP_SUFFIX)
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return tmp


def remove_dead_temps(folder: Path) -> None:
    """Remove every temp file under `folder` whose writer is dead (a build killed mid-write,
    whatever file it was writing)."""
    pattern = re.compile(r"\..+\.(\d+)\.[^.]+" + re.escape(TEMP_SUFFIX))
    for leftover in folder.rglob(f".*{TEMP_SUFFIX}") if folder.is_dir() else []:
        match = pattern.fullmatch(leftover.name)
        if match and not alive(int(match.group(1))):
            leftover.unlink(missing_ok=True)


def remove_leftovers(path: Path) -> None:
    """Remove temp files of `path` left by processes that died mid-write (see write_atomic)."""
    pattern = re.compile(re.escape(f".{path.name}.") + r"(\d+)\.[^.]+" + re.escape(TEMP_SUFFIX))
    for leftover in path.parent.glob(f".{path.name}.*{TEMP_SUFFIX}"):
        match = pattern.fullmatch(leftover.name)
        if match and not alive(int(match.group(1))):
            leftover.unlink(missing_ok=True)


def alive(pid: int) -> bool:
    """Whether process `pid` may still be writing (never this process: its own leftovers are
    garbage, as it writes one thing at a time)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True
