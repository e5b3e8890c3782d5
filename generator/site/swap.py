"""Replacing the site folder with a new build as one step, and finishing what a killed build
left behind.

A build goes into `.site.<pid>.building` beside site/; on success site/ is renamed to
`.site.<pid>.old`, the staging folder to site/, and the old one removed. A build killed on the
way leaves those folders behind: the next build recognises them by their dead pid, restores
site/ from `.old` first if the kill came between the two renames, then removes them.

A site/ that is a mount point cannot be renamed (EBUSY): its contents are swapped instead, the
old entries moved into `site/.capcircuit.<pid>.old` and the new ones moved in (copied where they
cross filesystems)."""

from __future__ import annotations

import errno
import os
import re
import shutil
from pathlib import Path

from generator import ReportError
from generator.files import alive, shown

INSIDE = ".capcircuit"  # prefix of the folders a contents swap keeps inside site/


def staging(site: Path) -> Path:
    return site.with_name(f".{site.name}.{os.getpid()}.building")


def old(site: Path) -> Path:
    return site.with_name(f".{site.name}.{os.getpid()}.old")


def leftovers(folder: Path, prefix: str, kind: str) -> list[Path]:
    """The `<prefix>.<pid>.<kind>` folders in `folder` of dead processes (or this one), oldest
    first; kind is "building", "old" or "kept"."""
    pattern = re.compile(rf"{re.escape(prefix)}\.(\d+)\.{kind}")
    found = [
        path
        for path in (folder.glob(f"{prefix}.*.{kind}") if folder.is_dir() else [])
        if (match := pattern.fullmatch(path.name)) and not alive(int(match.group(1)))
    ]
    return sorted(found, key=lambda path: path.stat().st_mtime)


def kept(site: Path) -> Path:
    """Where the mkdocs hook keeps the last good site during a plain `mkdocs build` (which
    builds into site/ itself): while it exists, site/ may be half-built."""
    return site.with_name(f".{site.name}.{os.getpid()}.kept")


def recover(site: Path, log=print) -> None:
    """Finish what killed builds left: site/ restored first (a kill between the two renames
    left none, and the last good one as `.site.<pid>.old`; a plain `mkdocs build` killed
    mid-build left a half-built site/ and the good one as `.site.<pid>.kept`), then their
    folders removed."""
    for good in leftovers(site.parent, f".{site.name}", "kept")[-1:]:
        shutil.rmtree(site, ignore_errors=True)
        good.rename(site)
        log(f"restored {shown(site)} from {good.name}, left by a mkdocs build that was killed")
    if not site.exists():
        olds = leftovers(site.parent, f".{site.name}", "old")
        if olds:
            olds[-1].rename(site)  # the newest: the site that was being replaced
            log(f"restored {shown(site)} from {olds[-1].name}, left by a build that was killed")
    for kind in ("building", "old", "kept"):
        for path in leftovers(site.parent, f".{site.name}", kind) + leftovers(site, INSIDE, kind):
            shutil.rmtree(path, ignore_errors=True)


def swap_in(new: Path, site: Path) -> None:
    """Make the built folder `new` the site, removing the old site."""
    previous = old(site)
    try:
        if not site.exists():
            new.rename(site)
            return
        try:
            site.rename(previous)
        except OSError as e:
            if e.errno != errno.EBUSY:
                raise
            swap_contents(new, site)  # a mount point: its contents change instead
            return
        try:
            new.rename(site)
        except OSError:
            previous.rename(site)  # the old site back
            raise
    except OSError as e:
        fix = (
            "free some disk space and run again"
            if e.errno == errno.ENOSPC
            else f"make {shown(site.parent)} and {shown(site)} writable, or set paths.site to another folder"
        )
        raise ReportError(
            f"cannot replace {shown(site)} with the new build ({shown(e.filename or site)}: {e.strerror or e}); "
            f"{fix}; {shown(site)} was left as it was"
        ) from None
    finally:
        shutil.rmtree(previous, ignore_errors=True)
        shutil.rmtree(new, ignore_errors=True)


def swap_contents(new: Path, site: Path) -> None:
    """site/ stays (a mount point); its entries are moved aside into a folder inside it, the new
    ones moved in, and the old ones removed. A failure puts the old entries back."""
    aside = site / f"{INSIDE}.{os.getpid()}.old"
    aside.mkdir(exist_ok=True)
    for entry in list(site.iterdir()):
        if not entry.name.startswith(f"{INSIDE}."):
            os.rename(entry, aside / entry.name)  # within site/'s own filesystem
    try:
        for entry in list(new.iterdir()):
            shutil.move(str(entry), str(site / entry.name))  # copied where site/ is another filesystem
    except OSError:
        for entry in list(site.iterdir()):
            if not entry.name.startswith(f"{INSIDE}."):
                shutil.rmtree(entry) if entry.is_dir() and not entry.is_symlink() else entry.unlink()
        for entry in list(aside.iterdir()):
            os.rename(entry, site / entry.name)
        raise
    finally:
        shutil.rmtree(aside, ignore_errors=True)
