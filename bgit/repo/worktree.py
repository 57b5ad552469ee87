"""Writing and removing files in the work tree: atomic, never outside it; and sweeping
up the temporary files that a killed process left behind.

Temporary files carry the writer's pid in their name, so a later writer (holding the
repository lock) can tell a dead process's leftovers from a live one's work:

    <dir>/.<name>.<pid>.bgit-tmp            atomic writes (bgit.util.files), symlinks
    <dir>/.<name>.bgit-<pid>-<hex>.tmp      the store's materialise
    .git/bgit/tmp/<pid>-<hex>               store objects being written
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Callable, Iterator

from bgit.util.files import TMP_SUFFIX, copy_atomic, temp_path, write_atomic

__all__ = ["TMP_SUFFIX", "copy_atomic", "write_atomic", "temp_path", "prepare_parent", "remove_file",
           "is_temp_name", "walk_files", "temp_owner", "remove_stale_temporaries"]

_OWNED_TEMP = [
    re.compile(r"\..+\.(?P<pid>\d+)" + re.escape(TMP_SUFFIX) + r"\Z"),
    re.compile(r"\..+\.bgit-(?P<pid>\d+)-[0-9a-f]+\.tmp\Z"),
]
_STORE_TEMP = re.compile(r"(?P<pid>\d+)-[0-9a-f]{32}\Z")


def prepare_parent(dest: Path) -> None:
    """Create the parent directories; a file or link standing where a directory must go is
    removed (callers have already checked it is not an uncommitted change)."""
    parent = dest.parent
    for ancestor in reversed([parent, *parent.parents]):
        if ancestor.is_symlink() or (ancestor.exists() and not ancestor.is_dir()):
            ancestor.unlink()
    parent.mkdir(parents=True, exist_ok=True)
    if dest.is_dir() and not dest.is_symlink():
        shutil.rmtree(dest)


def remove_file(root: Path, dest: Path) -> None:
    """Remove ``dest`` and the directories it leaves empty (up to the root)."""
    if dest.is_symlink() or dest.is_file():
        dest.unlink()
    parent = dest.parent
    while parent != root and root in parent.parents:
        try:
            parent.rmdir()
        except OSError:
            break
        parent = parent.parent


def is_temp_name(name: str) -> bool:
    """Temp files of atomic writes in progress (ours and the store's materialise)."""
    return name.endswith(TMP_SUFFIX) or (name.startswith(".") and ".bgit-" in name and name.endswith(".tmp"))


def temp_owner(name: str) -> int | None:
    """The pid in a bgit temporary file's name, or None for any other name."""
    for pattern in _OWNED_TEMP:
        match = pattern.match(name)
        if match:
            return int(match["pid"])
    return None


def process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    except OverflowError:
        return False
    return True


def remove_stale_temporaries(root: Path, bgit_dir: Path, is_ignored: Callable[[str], bool]) -> list[Path]:
    """Delete the temporary files of processes that no longer run: in the work tree, in
    ``.git/bgit`` (the stat cache's) and the store's ``tmp/``. The caller holds the
    repository lock, so no live writer can be mid-way through one of ours. -> removed."""
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == root:
            dirnames[:] = [d for d in dirnames if d != ".git"]
        rel_dir = os.path.relpath(dirpath, root)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        dirnames[:] = [d for d in dirnames if not os.path.islink(os.path.join(dirpath, d))
                       and not is_ignored(prefix + d + "/")]
        found += [Path(dirpath, n) for n in filenames if _is_dead(temp_owner(n))]
    if bgit_dir.is_dir():
        found += [p for p in bgit_dir.iterdir() if _is_dead(temp_owner(p.name))]
    store_tmp = bgit_dir / "tmp"
    if store_tmp.is_dir():
        for entry in store_tmp.iterdir():
            match = _STORE_TEMP.match(entry.name)
            if match and entry.is_file() and _is_dead(int(match["pid"])):
                found.append(entry)
    removed = []
    for path in found:
        try:
            path.unlink()
            removed.append(path)
        except FileNotFoundError:
            continue
    return removed


def _is_dead(pid: int | None) -> bool:
    return pid is not None and pid != os.getpid() and not process_alive(pid)


def walk_files(root: Path, is_ignored: Callable[[str], bool]) -> Iterator[str]:
    """Repository paths of the files in the work tree, skipping .git and ignored paths."""
    for dirpath, dirnames, filenames in os.walk(root):
        rel_dir = os.path.relpath(dirpath, root)
        prefix = "" if rel_dir == "." else rel_dir.replace(os.sep, "/") + "/"
        kept = []
        for name in sorted(dirnames):
            if prefix == "" and name == ".git":
                continue
            if os.path.islink(os.path.join(dirpath, name)):
                filenames.append(name)  # a link to a directory is a file to git
                continue
            if not is_ignored(prefix + name + "/"):
                kept.append(name)
        dirnames[:] = kept
        for name in sorted(filenames):
            if is_temp_name(name):
                continue
            path = prefix + name
            if not is_ignored(path):
                yield path
