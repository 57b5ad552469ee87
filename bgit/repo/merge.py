"""Merges at the repository level: the merge base, a three-way merge of trees path by path,
and the merge in progress that plain git sees.

Knows nothing of bakes: the layer above resolves the paths it understands (input.yml merged
key by key, the bake's own files made anew) and hands the rest to :func:`three_way`.

A merge in progress is git's own state, so ``git status`` and ``git rev-parse MERGE_HEAD``
see it::

    .git/MERGE_HEAD        the commit being merged
    .git/MERGE_MSG         the message the merge commit will have
    .git/ORIG_HEAD         HEAD before the merge
    .git/bgit/merge.json   what bgit needs to finish it (options of the layer above)
    index                  resolved paths at stage 0; conflicts at stages 1-3 (base/ours/theirs)

Order: the state files first, then the work tree and the index; HEAD moves only when the
merge commit is made. A crash leaves a merge in progress that ``merge --abort`` undoes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Mapping

import pygit2

from bgit.repo.errors import LocalChangesError, MergeError, MergeInProgressError
from bgit.repo.paths import work_path
from bgit.repo.sync import conflicted_paths, sync_worktree, uncommitted_paths, untracked_in_the_way
from bgit.repo.trees import Entry, flatten_tree
from bgit.store import is_manifest
from bgit.util.files import write_atomic

if TYPE_CHECKING:
    from bgit.repo.repository import Repository

Sides = tuple[Entry | None, Entry | None, Entry | None]   # base, ours, theirs


@dataclass
class TreeMerge:
    entries: dict[str, Entry] = field(default_factory=dict)     # merged cleanly
    conflicts: dict[str, Sides] = field(default_factory=dict)   # changed differently on both sides


def three_way(base: Mapping[str, Entry], ours: Mapping[str, Entry], theirs: Mapping[str, Entry]) -> TreeMerge:
    """Path by path: a path changed on one side takes that side; changed the same way on both,
    that; changed differently on both (or deleted on one, changed on the other), a conflict."""
    out = TreeMerge()
    for path in sorted(set(base) | set(ours) | set(theirs)):
        b, o, t = base.get(path), ours.get(path), theirs.get(path)
        if o == t or t == b:
            chosen = o
        elif o == b:
            chosen = t
        else:
            out.conflicts[path] = (b, o, t)
            continue
        if chosen is not None:
            out.entries[path] = chosen
    for path in [p for p in out.entries if any(q.startswith(p + "/") for q in out.entries)]:
        out.conflicts[path] = (base.get(path), ours.get(path), theirs.get(path))  # a file where a directory goes
        del out.entries[path]
    return out


def merge_base(repo: "Repository", a: pygit2.Commit, b: pygit2.Commit) -> pygit2.Commit | None:
    oid = repo.git.merge_base(a.id, b.id)
    return None if oid is None else repo.git[oid]


# -- the merge in progress -----------------------------------------------------------------

@dataclass
class MergeState:
    head: str                  # HEAD when the merge began (ORIG_HEAD)
    theirs: str                # MERGE_HEAD
    message: str               # MERGE_MSG
    options: dict = field(default_factory=dict)   # the layer above's own (strategy, ...)


def _state_file(repo: "Repository") -> Path:
    return repo.bgit_dir / "merge.json"


def read_state(repo: "Repository") -> MergeState | None:
    """The merge in progress, or None. A MERGE_HEAD that git made (no merge.json) counts too."""
    heads = repo.git.listall_mergeheads()
    if not heads:
        return None
    git_dir = Path(repo.git.path)
    message = _read_text(git_dir / "MERGE_MSG") or f"Merge commit '{str(heads[0])[:8]}'"
    orig = (_read_text(git_dir / "ORIG_HEAD") or "").strip()
    options = {}
    try:
        options = json.loads(_state_file(repo).read_text())
    except (OSError, ValueError):
        pass
    head = repo.head_commit()
    return MergeState(orig or (str(head.id) if head else ""), str(heads[0]), message,
                      options if isinstance(options, dict) else {})


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None


def _write_state(repo: "Repository", state: MergeState) -> None:
    git_dir = Path(repo.git.path)
    write_atomic(_state_file(repo), json.dumps(state.options, indent=1, sort_keys=True))
    write_atomic(git_dir / "ORIG_HEAD", state.head + "\n")
    write_atomic(git_dir / "MERGE_MSG", state.message.rstrip("\n") + "\n")
    write_atomic(git_dir / "MERGE_MODE", "no-ff")
    write_atomic(git_dir / "MERGE_HEAD", state.theirs + "\n")   # last: it is what marks the merge


def clear_state(repo: "Repository") -> None:
    """Forget the merge in progress (MERGE_HEAD, MERGE_MSG, ...; ORIG_HEAD stays, as in git)."""
    repo.git.state_cleanup()
    _state_file(repo).unlink(missing_ok=True)


def begin_merge(repo: "Repository", state: MergeState, merged: TreeMerge,
                writes: Mapping[str, bytes] | None = None, labels: tuple[str, str] = ("HEAD", "theirs")) -> list[str]:
    """Record the merge in progress and bring the index and work tree to ``merged``:
    resolved paths at stage 0, conflicts at stages 1-3 with ours (or text with conflict
    markers) in the work tree. ``writes``: resolved paths given as bytes (e.g. input.yml
    merged above this layer, with or without markers). -> the conflicted paths."""
    writes = dict(writes or {})
    with repo.lock("bgit merge"):
        if read_state(repo) is not None:
            raise MergeInProgressError()
        head = repo.head_commit()
        if head is None or str(head.id) != state.head:
            raise MergeError("HEAD moved while the merge was being prepared; nothing was changed")
        old = flatten_tree(head.tree)
        _refuse_local_changes(repo, old, merged, writes)
        resolved = {p: _blob_entry(repo, data) for p, data in writes.items() if p not in merged.conflicts}
        stage0 = {**merged.entries, **resolved}
        in_work_tree = {p: e for p, e in stage0.items() if p not in writes}
        conflict_text = {}
        for path, (b, o, t) in merged.conflicts.items():
            if path in writes:
                conflict_text[path] = writes[path]
            elif (text := _marked_text(repo, path, b, o, t, labels)) is not None:
                conflict_text[path] = text
            elif (o or t) is not None:
                in_work_tree[path] = o or t
        _write_state(repo, state)
        sync_worktree(repo, old, in_work_tree, {**{p: writes[p] for p in resolved}, **conflict_text})
        _write_index(repo, stage0, merged.conflicts)
        return sorted(merged.conflicts)


def _refuse_local_changes(repo, old, merged: TreeMerge, writes) -> None:
    dirty = uncommitted_paths(repo)
    if dirty:
        raise LocalChangesError("merge", dirty, "commit them or 'bgit reset --hard' first")
    new = {**merged.entries, **{p: Entry("", 0) for p in [*writes, *merged.conflicts]}}
    in_the_way = untracked_in_the_way(repo, old, new)
    if in_the_way:
        raise LocalChangesError("merge", in_the_way, "untracked files: move or remove them first")


def _blob_entry(repo, data: bytes) -> Entry:
    return Entry(str(repo.git.create_blob(data)), int(pygit2.enums.FileMode.BLOB))


def _marked_text(repo, path: str, b, o, t, labels: tuple[str, str]) -> bytes | None:
    """Text with git's conflict markers for a text file changed on both sides; None for
    payloads, links and modify/delete conflicts (ours, or theirs, stays in the work tree)."""
    sides = (b, o, t)
    if o is None or t is None or any(e is not None and not e.is_file for e in sides):
        return None
    if any(e is not None and is_manifest(repo.blob_data(e.oid)) for e in sides):
        return None
    entries = [None if e is None else pygit2.IndexEntry(path, pygit2.Oid(hex=e.oid), e.mode) for e in sides]
    result = repo.git.merge_file_from_index(*entries)
    text = result.contents if isinstance(result.contents, str) else result.contents.decode("utf-8", "replace")
    lines = [f"<<<<<<< {labels[0]}" if line == f"<<<<<<< {path}" else
             f">>>>>>> {labels[1]}" if line == f">>>>>>> {path}" else line for line in text.split("\n")]
    return "\n".join(lines).encode("utf-8")


def _write_index(repo, stage0: Mapping[str, Entry], conflicts: Mapping[str, Sides]) -> None:
    index = repo.git.index
    index.clear()
    for path, entry in sorted(stage0.items()):
        index.add(pygit2.IndexEntry(path, pygit2.Oid(hex=entry.oid), entry.mode))
    for path, sides in sorted(conflicts.items()):
        index.add_conflict(*[None if e is None else pygit2.IndexEntry(path, pygit2.Oid(hex=e.oid), e.mode)
                             for e in sides])
    index.write()


def unmerged_paths(repo: "Repository") -> list[str]:
    index = repo.git.index
    index.read()
    return sorted(conflicted_paths(index))


def mark_resolved(repo: "Repository", paths) -> list[str]:
    """Drop the conflict stages of ``paths`` whose resolution is staged (``bgit add`` does this
    during a merge); -> the paths resolved."""
    with repo.lock("bgit add"):
        index = repo.git.index
        index.read()
        conflicted = conflicted_paths(index)
        done = [p for p in paths if p in conflicted]
        for path in done:
            del index.conflicts[path]
        if done:
            index.write()
        return done


def stage_resolution(repo: "Repository", path: str, data: bytes) -> None:
    """Resolve ``path`` with ``data`` (written to the work tree and staged at stage 0)."""
    with repo.lock("bgit merge"):
        write_atomic(work_path(repo.root, path), data)
        index = repo.git.index
        index.read()
        if index.conflicts is not None and path in conflicted_paths(index):
            del index.conflicts[path]
        index.add(pygit2.IndexEntry(path, repo.git.create_blob(data), pygit2.enums.FileMode.BLOB))
        index.write()


def fast_forward(repo: "Repository", target: pygit2.Commit, label: str) -> None:
    """Move the current branch (or detached HEAD) forward to ``target`` and bring the index
    and work tree there; refuses when that would overwrite uncommitted changes."""
    with repo.lock("bgit merge"):
        head = repo.head_commit()
        old, new = flatten_tree(head.tree), flatten_tree(target.tree)
        changed = [p for p in set(old) | set(new) if old.get(p) != new.get(p)]
        dirty = uncommitted_paths(repo, changed)
        in_the_way = untracked_in_the_way(repo, old, new)
        if dirty or in_the_way:
            raise LocalChangesError("merge", dirty + in_the_way, "commit them or 'bgit reset --hard' first")
        sync_worktree(repo, old, new)
        index = repo.git.index
        index.read()
        for path in changed:
            if path in new:
                index.add(pygit2.IndexEntry(path, pygit2.Oid(hex=new[path].oid), new[path].mode))
            elif path in index:
                index.remove(path)
        index.write()
        write_atomic(Path(repo.git.path) / "ORIG_HEAD", f"{head.id}\n")
        repo.move_head(target.id, expected=head.id, reflog=f"merge {label}: Fast-forward")


def refuse_during_merge(repo: "Repository") -> None:
    """For commands that would ignore or lose a merge in progress (bake, checkout, pull)."""
    if read_state(repo) is not None:
        raise MergeInProgressError()
