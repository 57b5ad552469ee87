"""The bgit repository: a plain git repository (pygit2) whose payload files live in the
content-addressed store, with a manifest at the file's path in the git tree.

    <work tree>/
      input.yml, bake.yml, metrics.jsonl   real files (payloads materialised)
      adapter/..., targets/<name>/...
      .git/                                plain git: objects, refs, index, reflogs
        bgit/                              the payload store (see bgit.store), plus
          statcache.json                   path -> (size, mtime_ns, ctime_ns, inode, manifest oid)

Every mutating operation holds the store's lock and first sweeps up the temporary files
of killed processes. A commit writes payloads, then the tree and commit objects, then
moves the branch with one atomic compare-and-swap ref update, and only then touches the
index and work tree: a crash at any point leaves either the old or the new commit at the
branch tip, never a half-written one. A commit never records a manifest whose objects the
store lacks, and OS errors (full disk, permissions) surface as one-line
:class:`bgit.errors.OsOperationError` naming the operation and the work-tree path.
"""

from __future__ import annotations

from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Callable, Iterator, Mapping

import pygit2

from bgit.errors import os_errors
from bgit.repo import checkout as checkouts
from bgit.repo import history, integrity, refs
from bgit.repo.committing import CommittingMixin
from bgit.repo.errors import (
    AlreadyARepositoryError,
    CorruptManifestError,
    GitOperationError,
    NoCommitsError,
    NotARepositoryError,
    UnknownRevisionError,
)
from bgit.repo.paths import check_tree_path, work_path
from bgit.repo.payload import DEFAULT_THRESHOLD, StatCache, parse_size
from bgit.repo.staging import StagingMixin
from bgit.repo.status import Change, Status, StatusMixin
from bgit.repo.trees import Entry, flatten_tree
from bgit.repo.worktree import remove_stale_temporaries
from bgit.store import Manifest, Store, is_manifest
from bgit.store.errors import ManifestError
from bgit.util.files import write_atomic

__all__ = ["Repository", "Change", "Status"]

FALLBACK_NAME, FALLBACK_EMAIL = "bgit", "bgit@localhost"



class Repository(StagingMixin, CommittingMixin, StatusMixin):
    """A bgit repository; ``Repository.open()`` finds the one around the current directory."""

    def __init__(self, git: pygit2.Repository) -> None:
        if git.is_bare or git.workdir is None:
            raise NotARepositoryError(git.path)
        self.git = git
        self.root = Path(git.workdir).resolve()
        self.bgit_dir = Path(git.path) / "bgit"
        self.store = Store(self.bgit_dir)
        self.stat_cache = StatCache(self.bgit_dir / "statcache.json")
        # The remote layer may set this to fetch missing store objects (a set of ids)
        # before a checkout materialises payloads.
        self.object_fetcher: Callable[[set[str]], None] | None = None

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def init(cls, path: Path | str = ".", example: Mapping[str, bytes] | None = None) -> "Repository":
        """Create a git repository (branch ``main``) with a store, and write the example
        files (``{"input.yml": ...}``) where nothing stands yet. Nothing is committed. An
        existing git repository without a store is adopted."""
        root = Path(path).resolve()
        if (root / ".git" / "bgit").exists():
            raise AlreadyARepositoryError(root)
        with os_errors("create", root):
            root.mkdir(parents=True, exist_ok=True)
            try:
                git = pygit2.init_repository(str(root), initial_head="main")
            except pygit2.GitError as error:
                raise GitOperationError(str(error), root / ".git") from error
            Store.init(Path(git.path) / "bgit")
        for rel, data in (example or {}).items():
            dest = work_path(root, check_tree_path(rel))
            if not dest.exists():
                with os_errors("write", dest):
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    write_atomic(dest, data)
        return cls(git)

    @classmethod
    def open(cls, path: Path | str = ".") -> "Repository":
        start = Path(path).resolve()
        found = pygit2.discover_repository(str(start))
        if found is None:
            raise NotARepositoryError(start)
        git = pygit2.Repository(found)
        if git.is_bare or not (Path(git.path) / "bgit").is_dir():
            raise NotARepositoryError(start)
        return cls(git)

    # -- locking -------------------------------------------------------------------------

    @contextmanager
    def lock(self, holder: str) -> Iterator[None]:
        """Hold the single-writer lock (re-entrant within a process, so a bake holding it
        can call commit_files); LockedError names the holder. libgit2 failures inside
        (e.g. an index.lock left by a killed git) become one-line GitOperationErrors."""
        with ExitStack() as held:
            with os_errors("lock", self.bgit_dir / "lock"):  # the holder record needs a byte of disk
                held.enter_context(self.store.lock(holder))
            try:
                yield
            except pygit2.GitError as error:
                raise GitOperationError(str(error), Path(self.git.path).as_posix().rstrip("/")) from error

    @contextmanager
    def writing(self, holder: str) -> Iterator[None]:
        """The lock of a mutating operation, which first removes what killed writers left."""
        with self.lock(holder):
            self.sweep_temporaries()
            yield

    def sweep_temporaries(self) -> list[Path]:
        """Remove temporary files of processes that no longer run (work tree, .git/bgit,
        the store's tmp/). Needs the lock: no live bgit writer can own one then."""
        try:
            return remove_stale_temporaries(self.root, self.bgit_dir, self._is_ignored)
        except OSError:
            return []  # leftovers are harmless (hidden from status); never fail a command for them

    # -- settings ------------------------------------------------------------------------

    @property
    def threshold(self) -> int:
        """Files above this many bytes go to the store (git config ``bgit.threshold``)."""
        try:
            return parse_size(self.git.config["bgit.threshold"])
        except (KeyError, ValueError):
            return DEFAULT_THRESHOLD

    def signature(self) -> pygit2.Signature:
        try:
            return self.git.default_signature
        except (KeyError, pygit2.GitError):
            return pygit2.Signature(FALLBACK_NAME, FALLBACK_EMAIL)

    # -- refs and objects ----------------------------------------------------------------

    def current_branch(self) -> str | None:
        """The branch HEAD points to (also when it has no commits yet); None when detached."""
        if self.git.head_is_detached:
            return None
        target = self.git.references["HEAD"].target
        return target.removeprefix("refs/heads/") if isinstance(target, str) else None

    def head_commit(self) -> pygit2.Commit | None:
        if self.git.head_is_unborn:
            return None
        return self.git.head.peel(pygit2.Commit)

    def resolve(self, ref: str) -> pygit2.Commit:
        if ref == "HEAD" and self.git.head_is_unborn:
            raise NoCommitsError(self.current_branch() or "HEAD")
        try:
            obj = self.git.revparse_single(ref)
            return obj.peel(pygit2.Commit)
        except (KeyError, ValueError, pygit2.GitError, pygit2.InvalidSpecError):
            raise UnknownRevisionError(ref) from None

    def tree_entries(self, ref: str | pygit2.Commit | None = "HEAD") -> dict[str, Entry]:
        if ref is None:
            return {}
        commit = ref if isinstance(ref, pygit2.Commit) else self.resolve(ref)
        return flatten_tree(commit.tree)

    def blob_data(self, oid: str) -> bytes:
        return self.git[oid].data

    def manifest_of(self, oid: str, label: str) -> Manifest | None:
        """The manifest in blob ``oid`` (None for a plain file); CorruptManifestError names
        ``label`` when the blob claims to be a manifest but is not a valid one."""
        data = self.blob_data(oid)
        if not is_manifest(data):
            return None
        try:
            return Manifest.from_bytes(data)
        except ManifestError as error:
            raise CorruptManifestError(label, error.reason) from None

    def read_manifest(self, ref: str, path: str) -> Manifest | None:
        commit = self.resolve(ref)
        entry = flatten_tree(commit.tree).get(path)
        if entry is None or not entry.is_file:
            return None
        return self.manifest_of(entry.oid, f"{str(commit.id)[:8]}:{path}")

    def read_file(self, ref: str, path: str) -> bytes | None:
        """The committed bytes of ``path`` at ``ref`` (payloads come from the store)."""
        commit = self.resolve(ref)
        entry = flatten_tree(commit.tree).get(path)
        if entry is None or not entry.is_file:
            return None
        manifest = self.manifest_of(entry.oid, f"{str(commit.id)[:8]}:{path}")
        if manifest is None:
            return self.blob_data(entry.oid)
        return b"".join(self.store.get_bytes(oid) for oid, _ in manifest.pieces)

    # -- staging -------------------------------------------------------------------------

    # -- the rest lives in sibling modules -------------------------------------------------

    def checkout(self, ref: str, force: bool = False, new_branch: str | None = None, progress=None):
        """-> CheckoutResult (commit, branch, left_behind: commits only the old detached
        HEAD reached, which git would warn about)."""
        return checkouts.checkout(self, ref, force=force, new_branch=new_branch, progress=progress)

    def reachable_object_ids(self) -> set[str]:
        return integrity.reachable_object_ids(self)

    def fsck(self, all_objects: bool = False):
        return integrity.fsck(self, all_objects)

    def gc(self, grace_seconds: float = 3600.0):
        return integrity.gc(self, grace_seconds)

    def log(self, ref: str = "HEAD", n: int | None = None):
        return history.log(self, ref, n)

    def show(self, ref: str = "HEAD"):
        return history.show(self, ref)

    def create_branch(self, name: str, start: str = "HEAD"):
        return refs.create_branch(self, name, start)

    def delete_branch(self, name: str) -> None:
        refs.delete_branch(self, name)

    def branches(self):
        return refs.list_branches(self)

    def create_tag(self, name: str, ref: str = "HEAD", message: str | None = None):
        return refs.create_tag(self, name, ref, message)

    def delete_tag(self, name: str) -> None:
        refs.delete_tag(self, name)

    def tags(self):
        return refs.list_tags(self)
