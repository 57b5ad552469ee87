"""Which payload objects a set of commits needs: the pieces named by the manifests in
their trees. Manifests are small git blobs, so this reads no payload."""

from __future__ import annotations

import pygit2

from bgit.store.manifest import Manifest, is_manifest

TREE = pygit2.enums.ObjectType.TREE
BLOB = pygit2.enums.ObjectType.BLOB


class NeedsScanner:
    """Collects object id -> uncompressed size; remembers trees and blobs already seen, so
    commits that share most of their tree (the usual case) cost little."""

    def __init__(self, git: pygit2.Repository) -> None:
        self.git = git
        self._seen: set[str] = set()
        self.sizes: dict[str, int] = {}

    def add_commit(self, commit_id) -> None:
        commit = self.git[commit_id] if not isinstance(commit_id, pygit2.Commit) else commit_id
        self._add_tree(commit.tree)

    def _add_tree(self, tree: pygit2.Tree) -> None:
        if str(tree.id) in self._seen:
            return
        self._seen.add(str(tree.id))
        for entry in tree:
            if entry.type == TREE:
                self._add_tree(self.git[entry.id])
            elif entry.type == BLOB and str(entry.id) not in self._seen:
                self._seen.add(str(entry.id))
                data = self.git[entry.id].data
                if is_manifest(data):
                    for oid, size in Manifest.from_bytes(data).pieces:
                        self.sizes[oid] = size

    def object_ids(self) -> set[str]:
        return set(self.sizes)


def commit_needs(git: pygit2.Repository, commit) -> dict[str, int]:
    """object id -> uncompressed size for every piece the commit's files need."""
    scanner = NeedsScanner(git)
    scanner.add_commit(commit)
    return scanner.sizes


def new_commits(git: pygit2.Repository, tips, hide) -> list[pygit2.Oid]:
    """Commits reachable from ``tips`` but not from ``hide`` (both: iterables of ids)."""
    tips = [pygit2.Oid(hex=str(t)) for t in tips]
    if not tips:
        return []
    walker = git.walk(tips[0], pygit2.enums.SortMode.TOPOLOGICAL)
    for tip in tips[1:]:
        walker.push(tip)
    for h in hide:
        try:
            walker.hide(pygit2.Oid(hex=str(h)))
        except (KeyError, ValueError, pygit2.GitError):
            pass  # a ref we do not have locally hides nothing
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
        try:
            theirs.add_commit(pygit2.Oid(hex=str(tip)))
        except (KeyError, ValueError):
            pass
    return {oid: size for oid, size in ours.sizes.items() if oid not in theirs.sizes}
