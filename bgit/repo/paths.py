"""Paths inside the work tree: every path read from a tree or manifest is checked here
before anything is written, and user paths are turned into repository paths."""

from __future__ import annotations

import os
from pathlib import Path, PurePosixPath
from typing import Mapping

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
    if os.path.relpath(real_parent, real_root).split(os.sep)[0].lower() == ".git":
        raise UnsafePathError(path, "a parent directory links into .git")
    return dest


# The kernel gives up after 40 links in one lookup (ELOOP); so do we.
MAX_LINK_HOPS = 40


def resolve_link(link: str, links: Mapping[str, str]) -> str:
    """Where the symlink at tree path ``link`` leads, following every link of the tree
    (``links``: tree path -> target, ``link`` included) as the kernel would, one component
    at a time: ``sub/sub2 -> ..`` then ``s -> sub/sub2/..`` leads above the work tree,
    although ``s``'s own target looks harmless. Returns the tree path reached ('' = the
    root); UnsafePathError when any step leaves the work tree, a target is absolute, or the
    chain does not end."""
    hops = 0
    resolved: list[str] = link.split("/")[:-1]
    pending = _target_parts(link, links[link])
    while pending:
        part = pending.pop(0)
        if part in ("", "."):
            continue
        if part == "..":
            if not resolved:
                raise UnsafePathError(link, f"symlink target {links[link]!r} leaves the work tree")
            resolved.pop()
            continue
        if part.lower() == ".git" and not resolved:
            raise UnsafePathError(link, f"symlink target {links[link]!r} leads into .git")
        resolved.append(part)
        here = "/".join(resolved)
        if here in links:
            hops += 1
            if hops > MAX_LINK_HOPS:
                raise UnsafePathError(link, "too many levels of symbolic links")
            resolved.pop()
            pending[:0] = _target_parts(link, links[here])
    return "/".join(resolved)


def _target_parts(link: str, target: str) -> list[str]:
    if not target or "\x00" in target:
        raise UnsafePathError(link, "empty symlink target")
    if target.startswith("/"):
        raise UnsafePathError(link, f"symlink target {target!r} leaves the work tree")
    return target.split("/")


def check_link_on_disk(root: Path, rel: str) -> None:
    """Refuse the work-tree symlink at ``rel`` when its whole chain, resolved on disk,
    leaves the work tree (or enters .git): what a commit records must check out again."""
    real_root = os.path.realpath(root)
    real = os.path.realpath(root / rel)
    target = os.readlink(root / rel)
    if real != real_root and not real.startswith(real_root + os.sep):
        raise UnsafePathError(rel, f"symlink target {target!r} leaves the work tree")
    inside = os.path.relpath(real, real_root).split(os.sep)
    if inside[0].lower() == ".git":
        raise UnsafePathError(rel, f"symlink target {target!r} leads into .git")


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
