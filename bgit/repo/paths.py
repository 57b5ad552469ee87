"""Paths inside the work tree: every path read from a tree or manifest is checked here
before anything is written, and user paths are turned into repository paths."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from bgit.repo.errors import PathOutsideRepositoryError, UnsafePathError


def check_tree_path(path: str) -> str:
    """Return ``path`` if it is a safe relative posix path inside the work tree."""
    if not path or "\x00" in path or "\\" in path:
        raise UnsafePathError(path, "empty or contains NUL/backslash")
    if path.startswith("/") or PurePosixPath(path).is_absolute():
        raise UnsafePathError(path, "absolute path")
    parts = path.split("/")
    for part in parts:
        if part in ("", ".", ".."):
            raise UnsafePathError(path)
        if part.lower() == ".git":
            raise UnsafePathError(path, "names the .git directory")
    return path


def work_path(root: Path, path: str) -> Path:
    """The work-tree location of a checked tree path; refuses to follow a symlinked
    directory out of the work tree."""
    check_tree_path(path)
    dest = root.joinpath(*path.split("/"))
    real_root = os.path.realpath(root)
    real_parent = os.path.realpath(dest.parent)
    if real_parent != real_root and not real_parent.startswith(real_root + os.sep):
        raise UnsafePathError(path, "a parent directory links outside the work tree")
    return dest


def repo_relative(root: Path, path: Path | str) -> str:
    """A user path (absolute, or relative to the work tree root) as a tree path ('' = root)."""
    candidate = Path(path)
    if not candidate.is_absolute():
        candidate = root / candidate
    # Resolve links in the directories (e.g. /tmp -> /private/tmp) but not in the last
    # component: a symlink is added as a link, not as what it points to.
    absolute = Path(os.path.realpath(os.path.dirname(os.path.abspath(candidate)))) / candidate.name
    if candidate.name in ("", ".", ".."):
        absolute = Path(os.path.realpath(candidate))
    root_abs = Path(os.path.realpath(root))
    try:
        rel = absolute.relative_to(root_abs)
    except ValueError:
        raise PathOutsideRepositoryError(path) from None
    rel_posix = rel.as_posix()
    if rel_posix == ".":
        return ""
    if rel.parts[0] == ".git":
        raise PathOutsideRepositoryError(path)
    return rel_posix


def is_under(path: str, directory: str) -> bool:
    """Whether tree path ``path`` is ``directory`` or lies inside it."""
    directory = directory.strip("/")
    return directory == "" or path == directory or path.startswith(directory + "/")
