"""Writing and removing files in the work tree: atomic, never outside it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Callable, Iterator

from pygit2.enums import FileMode

TMP_SUFFIX = ".bgit-tmp"


def write_atomic(dest: Path, data: bytes, mode: int = FileMode.BLOB) -> None:
    prepare_parent(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        with open(tmp, "wb") as handle:
            handle.write(data)
        if mode == FileMode.BLOB_EXECUTABLE:
            os.chmod(tmp, 0o755)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def copy_atomic(src: Path, dest: Path) -> None:
    prepare_parent(dest)
    if dest.exists() and os.path.samefile(src, dest):
        return
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}{TMP_SUFFIX}")
    try:
        shutil.copyfile(src, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


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
