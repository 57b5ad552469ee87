"""Checkout: move HEAD to another commit and materialise its files.

Order: plan and check everything (paths, symlink chains, dirty files, manifests, store
objects) before the first write; then remove, write, update the index, and move HEAD last.
A crash or an OS error (full disk, read-only file system) in the middle leaves HEAD,
the index and every committed byte as they were; running the same checkout again
finishes the job (files already written match the target, so they are not in the way).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable

import pygit2
from pygit2.enums import FileMode

from bgit.errors import os_errors
from bgit.repo.errors import BranchError, DirtyWorkTreeError, MissingObjectError
from bgit.repo.paths import work_path
from bgit.repo.trees import Entry, check_tree_links, flatten_tree, index_entries
from bgit.repo.worktree import prepare_parent, remove_file, temp_path, write_atomic

if TYPE_CHECKING:
    from bgit.repo.repository import Repository

# progress(bytes_of_this_file, total_bytes, path=path) after each payload file is written
# (the bgit.util.progress Task protocol)
Progress = Callable[..., None]

# git lists at most this many of the commits a checkout leaves behind
SHOWN_LEFT_BEHIND = 4


@dataclass(frozen=True)
class LeftCommit:
    id: str
    summary: str


@dataclass
class CheckoutResult:
    commit: str                       # the commit HEAD now points at
    branch: str | None                # None: detached
    # Commits reachable from the previous (detached) HEAD and from no ref: git warns that
    # they are left behind. Newest first; at most SHOWN_LEFT_BEHIND, ``left_behind_count`` all.
    left_behind: list[LeftCommit] = field(default_factory=list)
    left_behind_count: int = 0

    def to_json(self) -> dict:
        return {"commit": self.commit, "branch": self.branch, "left_behind_count": self.left_behind_count,
                "left_behind": [{"id": c.id, "summary": c.summary} for c in self.left_behind]}


def checkout(
    repo: "Repository",
    ref: str,
    force: bool = False,
    new_branch: str | None = None,
    progress: Progress | None = None,
) -> CheckoutResult:
    with repo.writing("bgit checkout"):
        target = repo.resolve(ref)
        head_ref = _head_destination(repo, ref, new_branch)
        head = repo.head_commit()
        was_detached = head is not None and repo.git.head_is_detached
        old = flatten_tree(head.tree) if head else {}
        new = flatten_tree(target.tree)
        check_tree_links(repo.git, new)
        index = repo.git.index
        index.read()
        staged = index_entries(index)
        changed = {p for p in set(old) | set(new) if old.get(p) != new.get(p)}

        if not force:
            conflicts = _conflicts(repo, old, new, staged, changed)
            if conflicts:
                raise DirtyWorkTreeError(sorted(conflicts))

        candidates = new if force else {p: new[p] for p in changed if p in new}
        writes = {p: e for p, e in candidates.items() if not repo.matches_worktree(p, e)}
        removals = [p for p in old if p not in new and os.path.lexists(repo.root / p)]
        if force:
            removals += [p for p in staged if p not in new and p not in old and os.path.lexists(repo.root / p)]
        short = str(target.id)[:8]
        dests = {p: work_path(repo.root, p) for p in [*writes, *removals]}
        manifests = {p: repo.manifest_of(e.oid, f"{short}:{p}") for p, e in writes.items() if e.is_file}
        _ensure_objects(repo, {p: m for p, m in manifests.items() if m is not None})

        try:
            _write_work_tree(repo, removals, writes, manifests, dests, progress)
        finally:
            repo.stat_cache.save()  # also after a failure: a rerun need not rehash what was written

        _update_index(repo, index, target, old, new, staged, force)
        _move_head(repo, target, head_ref, new_branch)
        left, count = _left_behind(repo, head) if was_detached else ([], 0)
        return CheckoutResult(str(target.id), repo.current_branch(), left, count)


def _write_work_tree(repo, removals, writes, manifests, dests, progress) -> None:
    for path in removals:
        with os_errors("remove", path):
            remove_file(repo.root, dests[path])
        repo.stat_cache.forget(path)
    total = sum(m.size if m is not None else 0 for m in manifests.values())
    for path in sorted(writes):
        entry, manifest = writes[path], manifests.get(path)
        try:
            with os_errors("write", path):
                _write_entry(repo, dests[path], entry, manifest)
        except BaseException:
            if not os.path.lexists(dests[path]):
                remove_file(repo.root, dests[path])  # and the directories made for it
            raise
        if manifest is not None:
            repo.stat_cache.record(path, os.stat(dests[path]), entry.oid)
            if progress is not None:
                progress(manifest.size, total, path=path)


def _left_behind(repo: "Repository", old_head: pygit2.Commit) -> tuple[list[LeftCommit], int]:
    """Commits the old detached HEAD reached that no ref (nor the new HEAD) reaches."""
    walker = repo.git.walk(old_head.id, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME)
    for name in list(repo.git.references):
        try:
            walker.hide(repo.git.references[name].peel(pygit2.Commit).id)
        except (ValueError, KeyError, pygit2.GitError):
            continue  # refs to trees/blobs, dangling symbolic refs
    if not repo.git.head_is_unborn:
        walker.hide(repo.git.head.peel(pygit2.Commit).id)
    shown, count = [], 0
    for commit in walker:
        count += 1
        if len(shown) < SHOWN_LEFT_BEHIND:
            summary = commit.message.splitlines()[0] if commit.message.strip() else ""
            shown.append(LeftCommit(str(commit.id), summary))
    return shown, count


def _head_destination(repo: "Repository", ref: str, new_branch: str | None) -> str | None:
    """The branch HEAD will point to (None = detached); checked before anything changes."""
    if new_branch is not None:
        if not new_branch or new_branch.startswith("-") or not pygit2.reference_is_valid_name(
            f"refs/heads/{new_branch}"
        ):
            raise BranchError(f"'{new_branch}' is not a valid branch name")
        if repo.git.branches.local.get(new_branch) is not None:
            raise BranchError(f"a branch named '{new_branch}' already exists")
        return f"refs/heads/{new_branch}"
    if ref == "HEAD" and repo.current_branch() is not None:
        return f"refs/heads/{repo.current_branch()}"  # re-checking out HEAD keeps the branch
    if repo.git.branches.local.get(ref) is not None:
        return f"refs/heads/{ref}"
    return None


def _conflicts(repo, old, new, staged, changed) -> list[str]:
    """Paths whose uncommitted content the switch would overwrite or delete."""
    out = set()
    for path in changed:
        target = new.get(path)
        if path in old or path in staged:
            index_entry = staged.get(path)
            if index_entry != old.get(path) and index_entry != target:
                out.add(path)  # a staged change
            elif index_entry is not None and os.path.lexists(repo.root / path):
                if not repo.matches_worktree(path, index_entry) and not (
                    target is not None and repo.matches_worktree(path, target)
                ):
                    out.add(path)
        elif target is not None and os.path.lexists(repo.root / path):
            if not repo.matches_worktree(path, target):
                out.add(path)  # an untracked file in the way
        if target is not None:
            out.update(_blocking_ancestors(repo, path, old, staged))
            if os.path.isdir(repo.root / path) and not os.path.islink(repo.root / path):
                out.update(p for p in _files_under(repo, path) if p not in old and p not in staged)
    return sorted(out)


def _blocking_ancestors(repo, path, old, staged) -> list[str]:
    """Untracked files standing where one of ``path``'s directories must go."""
    parts = path.split("/")
    out = []
    for i in range(1, len(parts)):
        ancestor = "/".join(parts[:i])
        full = repo.root / ancestor
        if (full.is_symlink() or full.is_file()) and ancestor not in old and ancestor not in staged:
            out.append(ancestor)
    return out


def _files_under(repo, directory: str) -> list[str]:
    prefix = directory + "/"
    return [p for p in repo._walk() if p.startswith(prefix)]


def _ensure_objects(repo, manifests) -> None:
    missing = {oid: path for path, m in manifests.items() for oid in m.object_ids() if not repo.store.has(oid)}
    if missing and repo.object_fetcher is not None:
        repo.object_fetcher(set(missing))
        missing = {oid: path for oid, path in missing.items() if not repo.store.has(oid)}
    if missing:
        oid, path = sorted(missing.items(), key=lambda item: item[1])[0]
        raise MissingObjectError(path, oid)


def _write_entry(repo, dest, entry: Entry, manifest) -> None:
    if manifest is not None:
        prepare_parent(dest)
        repo.store.materialise(manifest, dest)
    elif entry.mode == FileMode.LINK:
        _write_link(repo, dest, os.fsdecode(repo.blob_data(entry.oid)))
    elif entry.is_file:
        prepare_parent(dest)
        write_atomic(dest, repo.blob_data(entry.oid), executable=entry.mode == FileMode.BLOB_EXECUTABLE)
    # submodule entries (gitlinks) have no content to write


def _write_link(repo, dest, target: str) -> None:
    """A symlink whose whole chain was resolved inside the work tree (check_tree_links)."""
    prepare_parent(dest)
    tmp = temp_path(dest)
    tmp.unlink(missing_ok=True)
    try:
        os.symlink(target, tmp)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _update_index(repo, index, target, old, new, staged, force) -> None:
    """The new tree, keeping (unless forced) staged entries the switch did not touch."""
    index.read_tree(target.tree)
    if not force:
        for path, entry in staged.items():
            if old.get(path) == new.get(path) and entry != new.get(path):
                index.add(pygit2.IndexEntry(path, pygit2.Oid(hex=entry.oid), entry.mode))
    index.write()


def _move_head(repo, target, head_ref, new_branch) -> None:
    if new_branch is not None:
        repo.git.branches.local.create(new_branch, target)
    if head_ref is None:
        repo.git.set_head(target.id)
    else:
        repo.git.set_head(head_ref)
