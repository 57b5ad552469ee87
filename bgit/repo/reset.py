"""``reset``: move the current branch (git's --soft / --mixed / --hard), ``rm`` and the
commit of a computed tree that ``revert`` makes.

    soft   the branch moves; index and work tree stay (refused during a merge, as in git)
    mixed  the branch moves and the index becomes REF's tree; the work tree stays. Refused when
           a staged version would be lost (it differs from HEAD, REF and the work-tree file).
    hard   branch, index and work tree become REF (payloads materialised, fetched when missing);
           uncommitted changes are discarded: that is what --hard asks for.

The branch moves last, with a reflog entry ("reset: moving to REF") and ORIG_HEAD set, so a
crash leaves it where it was; rerunning the reset finishes the job.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterable, Mapping

from bgit.repo.errors import LocalChangesError, MergeError, NoCommitsError, PathspecError, RemoveError
from bgit.repo.merge import clear_state, read_state
from bgit.repo.paths import is_under, repo_relative, work_path
from bgit.repo.sync import conflicted_paths, stage_zero, sync_worktree, uncommitted_paths
from bgit.repo.trees import Entry, build_tree, flatten_tree
from bgit.repo.worktree import remove_file
from bgit.util.files import write_atomic

if TYPE_CHECKING:
    from bgit.repo.repository import Repository

MODES = ("soft", "mixed", "hard")


@dataclass
class ResetResult:
    mode: str
    old: str          # where the branch (or detached HEAD) was
    new: str          # where it is now
    branch: str | None

    def to_json(self) -> dict:
        return vars(self).copy()


def reset(repo: "Repository", ref: str = "HEAD", mode: str = "mixed") -> ResetResult:
    if mode not in MODES:
        raise MergeError(f"unknown reset mode '{mode}' (soft, mixed or hard)")
    with repo.lock("bgit reset"):
        head = repo.head_commit()
        if head is None:
            raise NoCommitsError(repo.current_branch() or "HEAD")
        target = repo.resolve(ref)
        merging = read_state(repo) is not None
        if mode == "soft" and merging:
            raise MergeError("cannot do a soft reset in the middle of a merge (use --mixed or --hard)")
        index = repo.git.index
        index.read()
        if mode == "mixed":
            _refuse_losing_staged(repo, index, head, target)
        if mode == "hard":
            tracked = {**flatten_tree(head.tree), **stage_zero(index), **{p: None for p in conflicted_paths(index)}}
            sync_worktree(repo, tracked, flatten_tree(target.tree))
        if mode != "soft":
            index.read_tree(target.tree)
            index.write()
        write_atomic(os.path.join(repo.git.path, "ORIG_HEAD"), f"{head.id}\n")
        if str(target.id) != str(head.id):
            repo.move_head(target.id, expected=head.id, reflog=f"reset: moving to {ref}")
        if merging:
            clear_state(repo)
        return ResetResult(mode, str(head.id), str(target.id), repo.current_branch())


def _refuse_losing_staged(repo, index, head, target) -> None:
    committed, wanted = flatten_tree(head.tree), flatten_tree(target.tree)
    lost = []
    for path, entry in stage_zero(index).items():
        if entry in (committed.get(path), wanted.get(path)):
            continue
        if not repo.matches_worktree(path, entry):
            lost.append(path)
    if lost:
        raise LocalChangesError("reset", sorted(lost), "staged versions that are nowhere else; "
                                "commit them, or use --hard to discard them")


# -- rm --------------------------------------------------------------------------------------

def rm(repo: "Repository", paths: Iterable[str], cached: bool = False, recursive: bool = False,
       force: bool = False) -> list[str]:
    """Stop tracking ``paths`` (and delete them from the work tree unless ``cached``); -> the
    removed paths. Refuses, as git does, to lose changes that are not committed."""
    with repo.lock("bgit rm"):
        index = repo.git.index
        index.read()
        staged = stage_zero(index)
        chosen = _rm_targets(repo, staged, paths, recursive)
        if not force:
            _refuse_rm_changes(repo, staged, chosen, cached)
        for path in chosen:
            index.remove(path)
            repo.stat_cache.forget(path)
            if not cached:
                dest = work_path(repo.root, path)
                if os.path.lexists(dest):
                    remove_file(repo.root, dest)
        index.write()
        repo.stat_cache.save()
        return chosen


def _rm_targets(repo, staged: Mapping[str, Entry], paths, recursive: bool) -> list[str]:
    chosen: list[str] = []
    for user_path in paths:
        rel = repo_relative(repo.root, user_path)
        if rel in staged:
            chosen.append(rel)
            continue
        under = sorted(p for p in staged if is_under(p, rel))
        if not under:
            raise PathspecError(rel or ".")
        if not recursive:
            raise RemoveError(f"not removing '{rel or '.'}' recursively without -r")
        chosen += under
    return sorted(set(chosen))


def _refuse_rm_changes(repo, staged, chosen: list[str], cached: bool) -> None:
    head = repo.head_commit()
    committed = flatten_tree(head.tree) if head else {}
    for path in chosen:
        staged_change = staged[path] != committed.get(path)
        exists = os.path.lexists(repo.root / path)
        local_change = exists and not repo.matches_worktree(path, staged[path])
        if cached and staged_change and local_change:
            why = "has staged content different from both the file and HEAD"
        elif not cached and staged_change:
            why = "has changes staged in the index (use --cached to keep the file, or -f to force removal)"
        elif not cached and local_change:
            why = "has local modifications (use --cached to keep the file, or -f to force removal)"
        else:
            continue
        raise RemoveError(f"'{path}' {why}")


# -- committing a computed tree (revert) -----------------------------------------------------

def commit_tree_entries(repo: "Repository", entries: Mapping[str, Entry], message: str) -> str:
    """Commit ``entries`` on HEAD, bringing the work tree and index there first; refuses when a
    path it changes has uncommitted changes."""
    with repo.lock("bgit commit"):
        head = repo.head_commit()
        if head is None:
            raise NoCommitsError(repo.current_branch() or "HEAD")
        old = flatten_tree(head.tree)
        changed = [p for p in set(old) | set(entries) if old.get(p) != entries.get(p)]
        index = repo.git.index
        index.read()
        staged = {p for p, e in stage_zero(index).items() if old.get(p) != e} | (set(old) - set(stage_zero(index)))
        dirty = sorted(set(uncommitted_paths(repo, changed)) | staged)
        if dirty:
            raise LocalChangesError("revert", dirty, "commit them or 'bgit reset --hard' first")
        in_the_way = sorted(p for p in entries if p not in old and os.path.lexists(repo.root / p))
        if in_the_way:
            raise LocalChangesError("revert", in_the_way, "untracked files: move or remove them first")
        sync_worktree(repo, old, entries)
        index.read_tree(repo.git[build_tree(repo.git, dict(entries))])
        index.write()
        return repo.commit(message)
