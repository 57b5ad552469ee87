"""Checkout: move HEAD to another commit and materialise its files.

Order: plan and check everything (paths, dirty files, manifests, store objects) before
the first write; then remove, write, update the index, and move HEAD last. A crash in
the middle leaves HEAD at the old commit; ``checkout --force`` finishes the job.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Callable

import pygit2
from pygit2.enums import FileMode

from bgit.repo.errors import BranchError, DirtyWorkTreeError, MissingObjectError, UnsafePathError
from bgit.repo.paths import work_path
from bgit.repo.trees import Entry, flatten_tree, index_entries
from bgit.repo.worktree import prepare_parent, remove_file, write_atomic

if TYPE_CHECKING:
    from bgit.repo.repository import Repository

# progress(bytes_of_this_file, total_bytes, path=path) after each payload file is written
# (the bgit.util.progress Task protocol)
Progress = Callable[..., None]


def checkout(
    repo: "Repository",
    ref: str,
    force: bool = False,
    new_branch: str | None = None,
    progress: Progress | None = None,
) -> None:
    with repo.lock("bgit checkout"):
        target = repo.resolve(ref)
        head_ref = _head_destination(repo, ref, new_branch)
        head = repo.head_commit()
        old = flatten_tree(head.tree) if head else {}
        new = flatten_tree(target.tree)
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

        for path in removals:
            remove_file(repo.root, dests[path])
            repo.stat_cache.forget(path)
        total = sum(m.size if m is not None else 0 for m in manifests.values())
        for path in sorted(writes):
            entry, manifest = writes[path], manifests.get(path)
            _write_entry(repo, dests[path], entry, manifest)
            if manifest is not None:
                repo.stat_cache.record(path, os.stat(dests[path]), entry.oid)
                if progress is not None:
                    progress(manifest.size, total, path=path)
        repo.stat_cache.save()

        _update_index(repo, index, target, old, new, staged, force)
        _move_head(repo, target, head_ref, new_branch)


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
        _write_link(repo, dest, repo.blob_data(entry.oid).decode())
    elif entry.is_file:
        write_atomic(dest, repo.blob_data(entry.oid), entry.mode)
    # submodule entries (gitlinks) have no content to write


def _write_link(repo, dest, target: str) -> None:
    resolved = os.path.normpath(os.path.join(os.path.dirname(dest), target))
    root = str(repo.root)
    if os.path.isabs(target) or not (resolved == root or resolved.startswith(root + os.sep)):
        raise UnsafePathError(str(dest.relative_to(repo.root)), f"symlink target {target!r} leaves the work tree")
    prepare_parent(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.bgit-tmp")
    tmp.unlink(missing_ok=True)
    os.symlink(target, tmp)
    os.replace(tmp, dest)


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
