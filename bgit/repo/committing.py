"""Committing: the index (``commit``) or a set of files (``commit_files``, how a bake lands)
becomes a commit. Order: payloads into the store, tree and commit objects, one
compare-and-swap update of the branch, and only then the index and work tree; a manifest
whose objects the store lacks is never recorded."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import pygit2
from pygit2.enums import FileMode

from bgit.errors import OsOperationError, os_errors
from bgit.repo.errors import NothingToCommitError, RepoError, UnsafePathError
from bgit.repo.integrity import check_commit_tree
from bgit.repo.paths import check_tree_path, is_under, work_path
from bgit.repo.staging import _failed_step
from bgit.repo.trees import Entry, build_tree, flatten_tree, index_entries
from bgit.repo.worktree import copy_atomic, prepare_parent, remove_file
from bgit.store import is_manifest


class CommittingMixin:
    """The committing half of :class:`bgit.repo.Repository`."""


    def commit(self, message: str) -> str:
        """Commit the index on the current branch (or detached HEAD); returns the commit id."""
        with self.writing("bgit commit"):
            index = self.git.index
            index.read()
            parent = self.head_commit()
            if parent is None and len(index) == 0:
                raise NothingToCommitError()
            tree = index.write_tree()
            if parent is not None and parent.tree_id == tree:
                raise NothingToCommitError()
            check_commit_tree(self, self.git[tree], parent)
            return self._commit_tree(tree, message, parent)

    def commit_files(
        self, files: Mapping[str, Path | str], message: str, replace_dirs: Iterable[str] = (),
        parents: Sequence[str] = (),
    ) -> str:
        """Commit HEAD's tree minus everything under ``replace_dirs`` plus ``files``
        (tree path -> source file), then write those files into the work tree and index.
        ``parents``: further parents (a merge); the tree then starts from the merge in the index."""
        with self.writing("bgit commit"):
            parent = self.head_commit()
            self.git.index.read()
            old = index_entries(self.git.index) if parents else flatten_tree(parent.tree) if parent else {}
            dropped = [check_tree_path(d.strip("/")) for d in replace_dirs]
            new = {p: e for p, e in old.items() if not any(is_under(p, d) for d in dropped)}
            sources = {check_tree_path(rel): Path(src) for rel, src in files.items()}
            for rel, src in sources.items():
                # A new file replaces whatever stands where it or its directories go.
                for other in [p for p in new if is_under(p, rel) or is_under(rel, p)]:
                    del new[other]
                try:
                    oid, mode = self._stage_blob_from(rel, src)
                except OSError as error:
                    step = _failed_step(error, src)
                    raise OsOperationError.wrap(step, src if step == "read" else rel, error) from error
                new[rel] = Entry(str(oid), int(mode))
            tree = build_tree(self.git, new)
            check_commit_tree(self, self.git[tree], parent)
            commit_id = self._commit_tree(tree, message, parent, extra_parents=parents)
            self._land_files(old, new, sources)
            return commit_id

    def _stage_blob_from(self, rel: str, src: Path) -> tuple[pygit2.Oid, int]:
        st = os.stat(src)
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(rel, f"source {src} is not a regular file")
        if self._is_payload_file(rel, src, st.st_size):
            return self._store_payload(rel, src), FileMode.BLOB
        mode = FileMode.BLOB_EXECUTABLE if st.st_mode & 0o100 else FileMode.BLOB
        return self.git.create_blob(Path(src).read_bytes()), mode

    def _land_files(self, old: dict[str, Entry], new: dict[str, Entry], sources: dict[str, Path]) -> None:
        """After a commit_files commit: bring the work tree and index up to the new tree."""
        index = self.git.index
        index.read()
        for rel in sorted(set(old) - set(new)):
            dest = work_path(self.root, rel)
            if os.path.lexists(dest) and self.matches_worktree(rel, old[rel]):
                with os_errors("remove", rel):
                    remove_file(self.root, dest)
            if rel in index:
                index.remove(rel)
            self.stat_cache.forget(rel)
        for rel, src in sources.items():
            dest = work_path(self.root, rel)
            with os_errors("write", rel):
                prepare_parent(dest)
                if not (dest.exists() and os.path.samefile(src, dest)):
                    copy_atomic(src, dest)
            entry = new[rel]
            index.add(pygit2.IndexEntry(rel, pygit2.Oid(hex=entry.oid), entry.mode))
            if is_manifest(self.blob_data(entry.oid)):
                self.stat_cache.record(rel, os.stat(dest), entry.oid)
        index.write()
        self.stat_cache.save()

    def _commit_tree(self, tree: pygit2.Oid, message: str, parent: pygit2.Commit | None,
                     extra_parents: Sequence[str] = ()) -> str:
        signature = self.signature()
        parents = [parent.id] if parent is not None else []
        parents += [self.resolve(p).id for p in extra_parents]
        commit_id = self.git.create_commit(None, signature, signature, message, tree, parents)
        summary = message.splitlines()[0] if message.strip() else ""
        kind = "commit (initial)" if parent is None else "commit (merge)" if extra_parents else "commit"
        self.move_head(commit_id, expected=parent.id if parent is not None else None,
                       reflog=f"{kind}: {summary}")
        return str(commit_id)

    def move_head(self, new: pygit2.Oid, expected: pygit2.Oid | None, reflog: str) -> None:
        """Point the current branch (or detached HEAD) at ``new`` if it still points at
        ``expected``: one atomic ref update under the ref's lock file."""
        ref_name = "HEAD" if self.git.head_is_detached else self.git.references["HEAD"].target
        with self.git.transaction() as txn:
            txn.lock_ref(ref_name)
            current = self.git.references.get(ref_name)
            current_id = current.resolve().target if current is not None else None
            if current_id != expected:
                raise RepoError(f"{ref_name} moved during the commit; nothing was changed")
            txn.set_target(ref_name, new, message=reflog)
