"""Which payload objects a set of commits needs: the pieces named by the manifests in
their trees. Manifests are small git blobs, so this reads no payload.

Refs may name annotated tags (git's ``refs/tags/v1`` points at a tag object, which points
at a commit): every id that stands for a commit is peeled first (:func:`peel_commit`).
"""

from __future__ import annotations

from typing import Iterable, Iterator

import pygit2

from bgit.repo.errors import CorruptManifestError
from bgit.repo.integrity import manifest_in_blob

TREE = pygit2.enums.ObjectType.TREE
BLOB = pygit2.enums.ObjectType.BLOB


def peel_commit(git: pygit2.Repository, oid) -> pygit2.Commit | None:
    """The commit ``oid`` (a commit, or a chain of annotated tags) stands for; None when it
    is not in this repository or names a tree or blob."""
    try:
        obj = oid if isinstance(oid, pygit2.Object) else git[pygit2.Oid(hex=str(oid))]
        return obj.peel(pygit2.Commit)
    except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
        return None


class NeedsScanner:
    """Collects object id -> uncompressed size; remembers trees and blobs already seen, so
    commits that share most of their tree (the usual case) cost little.

    A malformed manifest raises CorruptManifestError naming the file, unless ``skip_bad``
    (look-ups across history, where another commit's bad file is not the caller's concern)."""

    def __init__(self, git: pygit2.Repository, skip_bad: bool = False) -> None:
        self.git = git
        self.skip_bad = skip_bad
        self._seen: set[str] = set()
        self.sizes: dict[str, int] = {}

    def add_commit(self, commit_id) -> None:
        commit = peel_commit(self.git, commit_id)
        if commit is not None:
            self._add_tree(commit.tree, "", str(commit.id)[:8])

    def _add_tree(self, tree: pygit2.Tree, prefix: str, short: str) -> None:
        if str(tree.id) in self._seen:
            return
        self._seen.add(str(tree.id))
        for entry in tree:
            if entry.type == TREE:
                self._add_tree(self.git[entry.id], f"{prefix}{entry.name}/", short)
            elif entry.type == BLOB and str(entry.id) not in self._seen:
                self._seen.add(str(entry.id))
                try:
                    manifest = manifest_in_blob(self.git[entry.id].data, f"{short}:{prefix}{entry.name}")
                except CorruptManifestError:
                    if not self.skip_bad:
                        raise
                    continue
                if manifest is not None:
                    for oid, size in manifest.pieces:
                        self.sizes[oid] = size

    def object_ids(self) -> set[str]:
        return set(self.sizes)


def commit_needs(git: pygit2.Repository, commit) -> dict[str, int]:
    """object id -> uncompressed size for every piece the commit's files need."""
    scanner = NeedsScanner(git)
    scanner.add_commit(commit)
    return scanner.sizes


def new_commits(git: pygit2.Repository, tips, hide) -> list[pygit2.Oid]:
    """Commits reachable from ``tips`` but not from ``hide`` (both: iterables of ids of
    commits or annotated tags)."""
    tips = [c.id for c in (peel_commit(git, t) for t in tips) if c is not None]
    if not tips:
        return []
    walker = git.walk(tips[0], pygit2.enums.SortMode.TOPOLOGICAL)
    for tip in tips[1:]:
        walker.push(tip)
    for h in hide:
        commit = peel_commit(git, h)  # a ref we do not have locally hides nothing
        if commit is not None:
            walker.hide(commit.id)
    return [c.id for c in walker]


def push_needs(git: pygit2.Repository, tips, remote_tips) -> dict[str, int]:
    """Objects the commits being pushed need that the remote's own commits do not.

    Invariant this relies on: a remote ref only ever points at a commit whose objects are
    all in the remote's store, because bgit uploads objects before it updates refs.
    """
    ours = NeedsScanner(git)
    for commit_id in new_commits(git, tips, remote_tips):
        ours.add_commit(commit_id)
    theirs = NeedsScanner(git)
    for tip in remote_tips:
        theirs.add_commit(tip)
    return {oid: size for oid, size in ours.sizes.items() if oid not in theirs.sizes}


def all_tips(git: pygit2.Repository) -> list[pygit2.Oid]:
    """The commit every ref (and HEAD) points at, each once."""
    names = list(git.references) + ([] if git.head_is_unborn else ["HEAD"])
    tips = {}
    for name in names:
        try:
            commit = peel_commit(git, git.references[name].resolve().target)
        except (KeyError, ValueError, pygit2.GitError):
            continue
        if commit is not None:
            tips[commit.id] = None
    return list(tips)


def _walk(git: pygit2.Repository, tips) -> Iterator[pygit2.Commit]:
    tips = list(tips)
    if not tips:
        return
    walker = git.walk(tips[0], pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME)
    for tip in tips[1:]:
        walker.push(tip)
    yield from walker


def history_needs(git: pygit2.Repository, tips) -> set[str]:
    """Every object the commits reachable from ``tips`` need (malformed manifests skipped)."""
    scanner = NeedsScanner(git, skip_bad=True)
    for commit in _walk(git, [c.id for c in (peel_commit(git, t) for t in tips) if c is not None]):
        scanner.add_commit(commit)
    return scanner.object_ids()


def object_sizes(git: pygit2.Repository, oids: Iterable[str]) -> dict[str, int]:
    """The sizes that manifests of commits reachable from any ref record for ``oids``,
    newest commits first, stopping once every id is found."""
    remaining = set(oids)
    scanner = NeedsScanner(git, skip_bad=True)
    found: dict[str, int] = {}
    for commit in _walk(git, all_tips(git)):
        scanner.add_commit(commit)
        for oid in [o for o in remaining if o in scanner.sizes]:
            found[oid] = scanner.sizes[oid]
            remaining.discard(oid)
        if not remaining:
            break
    return found


def files_needing(git: pygit2.Repository, commits, oid: str, limit: int = 3) -> list[str]:
    """Up to ``limit`` files ("<short>:<path>", newest commit first) whose manifests name
    ``oid``, among ``commits``; for error messages."""
    labels: dict[str, str] = {}
    seen: set[str] = set()
    for commit in (peel_commit(git, c) for c in commits):
        if commit is None:
            continue
        for path, blob_id in _blobs(git, commit.tree, ""):
            if path in labels or str(blob_id) in seen:
                continue
            seen.add(str(blob_id))
            try:
                manifest = manifest_in_blob(git[blob_id].data, f"{str(commit.id)[:8]}:{path}")
            except CorruptManifestError:
                continue
            if manifest is not None and oid in manifest.object_ids():
                labels[path] = f"{str(commit.id)[:8]}:{path}"
                if len(labels) == limit:
                    return list(labels.values())
    return list(labels.values())


def _blobs(git: pygit2.Repository, tree: pygit2.Tree, prefix: str):
    for entry in tree:
        if entry.type == TREE:
            yield from _blobs(git, git[entry.id], f"{prefix}{entry.name}/")
        elif entry.type == BLOB:
            yield f"{prefix}{entry.name}", entry.id
