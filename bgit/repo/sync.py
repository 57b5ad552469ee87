"""Bringing the work tree to a tree: what reset --hard, merges, reverts and merge --abort share.

Checks come first (nothing uncommitted may be lost, store objects present or fetched), then
removals, then writes; the caller holds the lock and updates the index and refs afterwards,
so a crash in the middle leaves the refs where they were and the same command can be rerun.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Iterable, Mapping

from bgit.repo.checkout import _ensure_objects, _write_entry
from bgit.repo.paths import work_path
from bgit.repo.trees import Entry, flatten_tree
from bgit.repo.worktree import remove_file, write_atomic

if TYPE_CHECKING:
    from bgit.repo.repository import Repository


def stage_zero(index) -> dict[str, Entry]:
    """The index's resolved entries (conflicted paths, which have stages 1-3, left out)."""
    conflicted = conflicted_paths(index)
    return {e.path: Entry(str(e.id), int(e.mode)) for e in index if e.path not in conflicted}


def conflicted_paths(index) -> set[str]:
    if index.conflicts is None:
        return set()
    return {next(e for e in sides if e is not None).path for sides in index.conflicts}


def uncommitted_paths(repo: "Repository", paths: Iterable[str] | None = None) -> list[str]:
    """Tracked paths whose index differs from HEAD or whose work-tree file differs from the
    index (all tracked paths, or only ``paths``)."""
    index = repo.git.index
    index.read()
    head = repo.head_commit()
    committed = flatten_tree(head.tree) if head else {}
    staged = stage_zero(index)
    conflicted = conflicted_paths(index)
    wanted = set(committed) | set(staged) | conflicted if paths is None else set(paths)
    out = []
    for path in sorted(wanted):
        entry = staged.get(path)
        if path in conflicted or entry != committed.get(path):
            out.append(path)
        elif entry is not None and not repo.matches_worktree(path, entry):
            out.append(path)
    repo.stat_cache.save()
    return out


def untracked_in_the_way(repo: "Repository", tracked: Mapping[str, Entry], new: Mapping[str, Entry]) -> list[str]:
    """Untracked files standing where ``new`` puts a file ``tracked`` does not have."""
    return sorted(p for p in new if p not in tracked and os.path.lexists(repo.root / p))


def sync_worktree(repo: "Repository", old: Mapping[str, Entry], new: Mapping[str, Entry],
                  writes: Mapping[str, bytes] | None = None) -> None:
    """Make the work tree hold ``new`` (plus ``writes``: raw bytes at paths, e.g. a file with
    conflict markers), removing the files of ``old`` that ``new`` lacks. Payloads come from
    the store (fetched through ``repo.object_fetcher`` when missing)."""
    writes = dict(writes or {})
    removals = [p for p in old if p not in new and p not in writes and os.path.lexists(repo.root / p)]
    changed = {p: e for p, e in new.items() if p not in writes and not repo.matches_worktree(p, e)}
    dests = {p: work_path(repo.root, p) for p in [*removals, *changed, *writes]}
    manifests = {p: repo.manifest_of(e.oid, p) for p, e in changed.items() if e.is_file}
    _ensure_objects(repo, {p: m for p, m in manifests.items() if m is not None})
    for path in removals:
        remove_file(repo.root, dests[path])
        repo.stat_cache.forget(path)
    for path in sorted(changed):
        manifest = manifests.get(path)
        _write_entry(repo, dests[path], changed[path], manifest)
        if manifest is not None:
            repo.stat_cache.record(path, os.stat(dests[path]), changed[path].oid)
    for path, data in sorted(writes.items()):
        write_atomic(dests[path], data)
        repo.stat_cache.forget(path)
    repo.stat_cache.save()


def ensure_payloads(repo: "Repository", commit, prefixes: Iterable[str] = ("",)) -> None:
    """Have the store hold every payload of ``commit`` under ``prefixes`` (fetched through
    ``repo.object_fetcher`` when missing; MissingObjectError otherwise)."""
    short = str(commit.id)[:8]
    manifests = {}
    for path, entry in flatten_tree(commit.tree).items():
        if entry.is_file and any(p == "" or path == p or path.startswith(p + "/") for p in prefixes):
            manifest = repo.manifest_of(entry.oid, f"{short}:{path}")
            if manifest is not None:
                manifests[f"{short}:{path}"] = manifest
    _ensure_objects(repo, manifests)
