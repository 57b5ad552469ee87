"""Flat views of git trees (path -> entry) and building trees from them."""

from __future__ import annotations

import os
from dataclasses import dataclass

import pygit2
from pygit2.enums import FileMode

from bgit.repo.paths import check_tree_path, resolve_link


@dataclass(frozen=True)
class Entry:
    oid: str
    mode: int

    @property
    def is_file(self) -> bool:
        return self.mode in (FileMode.BLOB, FileMode.BLOB_EXECUTABLE)


def flatten_tree(tree: pygit2.Tree | None, prefix: str = "", check: bool = True) -> dict[str, Entry]:
    """Every blob/link/submodule under ``tree`` keyed by its posix path, each checked to
    stay inside the work tree unless ``check`` is off (fsck reports instead of raising)."""
    out: dict[str, Entry] = {}
    if tree is None:
        return out
    for obj in tree:
        path = f"{prefix}{obj.name}"
        if obj.filemode == FileMode.TREE:
            out.update(flatten_tree(obj, path + "/", check))
        else:
            out[check_tree_path(path) if check else path] = Entry(str(obj.id), int(obj.filemode))
    return out


def build_tree(git: pygit2.Repository, entries: dict[str, Entry]) -> pygit2.Oid:
    index = pygit2.Index()
    for path, entry in entries.items():
        index.add(pygit2.IndexEntry(check_tree_path(path), pygit2.Oid(hex=entry.oid), entry.mode))
    return index.write_tree(git)


def index_entries(index: pygit2.Index) -> dict[str, Entry]:
    return {e.path: Entry(str(e.id), int(e.mode)) for e in index}


def link_targets(git: pygit2.Repository, entries: dict[str, Entry]) -> dict[str, str]:
    """tree path -> target of every symlink among ``entries``."""
    return {p: os.fsdecode(git[e.oid].data)
            for p, e in entries.items() if e.mode == FileMode.LINK}


def check_tree_links(git: pygit2.Repository, entries: dict[str, Entry]) -> dict[str, str]:
    """Resolve every symlink of a tree through the tree's other symlinks; UnsafePathError
    names the first whose chain leaves the work tree. -> the link targets."""
    links = link_targets(git, entries)
    for path in sorted(links):
        resolve_link(path, links)
    return links
