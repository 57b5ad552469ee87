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

import os
import stat
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Mapping, Sequence

import pygit2
from pygit2.enums import FileMode

from bgit.errors import OsOperationError, os_errors
from bgit.repo.errors import (
    AlreadyARepositoryError,
    CorruptManifestError,
    GitOperationError,
    NoCommitsError,
    NotARepositoryError,
    NothingToCommitError,
    PathspecError,
    RepoError,
    UnknownRevisionError,
    UnsafePathError,
)
from bgit.repo.integrity import check_commit_tree
from bgit.repo.paths import check_link_on_disk, check_tree_path, is_under, repo_relative, work_path
from bgit.repo.payload import DEFAULT_THRESHOLD, StatCache, is_payload, parse_size
from bgit.repo.trees import Entry, build_tree, flatten_tree, index_entries
from bgit.repo.worktree import copy_atomic, prepare_parent, remove_file, remove_stale_temporaries, walk_files
from bgit.store import Manifest, Store, is_manifest
from bgit.store.errors import ManifestError
from bgit.util.files import hash_file, write_atomic

FALLBACK_NAME, FALLBACK_EMAIL = "bgit", "bgit@localhost"



@dataclass(frozen=True)
class Change:
    path: str
    kind: str  # added | modified | deleted


@dataclass
class Status:
    branch: str | None  # None when HEAD is detached
    head: str | None  # None before the first commit
    staged: list[Change] = field(default_factory=list)
    modified: list[Change] = field(default_factory=list)
    untracked: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not (self.staged or self.modified or self.untracked)

    def to_json(self) -> dict:
        return {
            "branch": self.branch,
            "head": self.head,
            "staged": [{"path": c.path, "change": c.kind} for c in self.staged],
            "modified": [{"path": c.path, "change": c.kind} for c in self.modified],
            "untracked": list(self.untracked),
        }


class Repository:
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

    def add(self, paths: Iterable[Path | str] = (), all: bool = False) -> list[str]:
        """Stage files (payloads go to the store) and deletions; returns the staged paths.
        Relative paths are relative to the work tree root."""
        with self.writing("bgit add"):
            index = self.git.index
            index.read()
            tracked = {e.path for e in index}
            present: set[str] = set()
            gone: set[str] = set()
            targets = [""] if all else [repo_relative(self.root, p) for p in paths]
            for rel in targets:
                full = self.root / rel if rel else self.root
                if rel and (full.is_symlink() or full.is_file()):
                    present.add(check_tree_path(rel))
                elif full.is_dir():
                    present.update(p for p in self._walk() if is_under(p, rel))
                    gone.update(p for p in tracked if is_under(p, rel) and not os.path.lexists(self.root / p))
                elif rel in tracked or any(is_under(p, rel) for p in tracked):
                    gone.update(p for p in tracked if is_under(p, rel))
                else:
                    raise PathspecError(rel)
            for rel in sorted(present):
                src = self.root / rel
                try:
                    oid, mode = self._stage_blob(rel, src)
                except OSError as error:
                    raise OsOperationError.wrap(_failed_step(error, src), rel, error) from error
                index.add(pygit2.IndexEntry(rel, oid, mode))
            for rel in sorted(gone - present):
                index.remove(rel)
                self.stat_cache.forget(rel)
            index.write()
            self.stat_cache.save()
            return sorted(present | gone)

    def _walk(self) -> Iterator[str]:
        return walk_files(self.root, self._is_ignored)

    def _is_ignored(self, path: str) -> bool:
        try:
            return self.git.path_is_ignored(path)
        except pygit2.GitError:
            return False

    def _stage_blob(self, rel: str, src: Path) -> tuple[pygit2.Oid, int]:
        """Write ``src`` as the git blob for ``rel``: the file itself, or its manifest."""
        st = os.lstat(src)
        if stat.S_ISLNK(st.st_mode):
            check_link_on_disk(self.root, rel)
            return self.git.create_blob(os.fsencode(os.readlink(src))), FileMode.LINK
        if not stat.S_ISREG(st.st_mode):
            raise UnsafePathError(rel, "not a regular file (device, FIFO or socket)")
        if self._is_payload_file(rel, src, st.st_size):
            return self._store_payload(rel, src, st), FileMode.BLOB
        mode = FileMode.BLOB_EXECUTABLE if st.st_mode & 0o100 else FileMode.BLOB
        return self.git.create_blob(Path(src).read_bytes()), mode

    def _is_payload_file(self, rel: str, src: Path, size: int) -> bool:
        if is_payload(rel, size, self.threshold):
            return True
        # A small file that looks like a manifest must not be mistaken for one on checkout.
        with open(src, "rb") as handle:
            return is_manifest(handle.read(64))

    def _store_payload(self, rel: str, src: Path, st: os.stat_result | None = None) -> pygit2.Oid:
        in_work_tree = st is not None
        if in_work_tree:
            cached = self.stat_cache.lookup(rel, st)
            if cached is not None and self._manifest_complete(cached):
                return pygit2.Oid(hex=cached)
        manifest = self.store.store_file(src)
        oid = self.git.create_blob(manifest.to_bytes())
        if in_work_tree:
            self.stat_cache.record(rel, st, str(oid))
        return oid

    def _manifest_complete(self, oid: str) -> bool:
        """The manifest blob exists and the store holds every object it names."""
        try:
            manifest = Manifest.from_bytes(self.git[oid].data)
        except (KeyError, ValueError, ManifestError):
            return False
        return all(self.store.has(o) for o in manifest.object_ids())

    # -- committing ----------------------------------------------------------------------

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

    # -- status --------------------------------------------------------------------------

    def status(self) -> Status:
        index = self.git.index
        index.read()
        head = self.head_commit()
        head_entries = flatten_tree(head.tree) if head else {}
        staged_entries = index_entries(index)
        result = Status(self.current_branch(), str(head.id) if head else None)
        for path in sorted(set(head_entries) | set(staged_entries)):
            before, after = head_entries.get(path), staged_entries.get(path)
            if before != after:
                kind = "added" if before is None else "deleted" if after is None else "modified"
                result.staged.append(Change(path, kind))
        for path, entry in sorted(staged_entries.items()):
            if not os.path.lexists(self.root / path):
                result.modified.append(Change(path, "deleted"))
            elif not self.matches_worktree(path, entry):
                result.modified.append(Change(path, "modified"))
        result.untracked = sorted(p for p in self._walk() if p not in staged_entries)
        self.stat_cache.save()
        return result

    def matches_worktree(self, path: str, entry: Entry) -> bool:
        """Whether the work-tree file at ``path`` holds exactly what ``entry`` records
        (payloads via the stat cache, else by whole-file BLAKE3 against the manifest)."""
        full = self.root / path
        try:
            st = os.lstat(full)
        except OSError:
            return False
        if stat.S_ISLNK(st.st_mode):
            return entry.mode == FileMode.LINK and str(pygit2.hash(os.fsencode(os.readlink(full)))) == entry.oid
        if not stat.S_ISREG(st.st_mode) or not entry.is_file:
            return False
        blob = self.git[entry.oid]
        if not is_manifest(blob.data):
            executable = bool(st.st_mode & 0o100)
            if executable != (entry.mode == FileMode.BLOB_EXECUTABLE) or blob.size != st.st_size:
                return False
            with os_errors("read", path):
                return str(pygit2.hash(full.read_bytes())) == entry.oid
        if self.stat_cache.lookup(path, st) == entry.oid:
            return True
        try:
            manifest = Manifest.from_bytes(blob.data)
        except ManifestError:
            return False
        if manifest.size != st.st_size:
            return False
        with os_errors("read", path):
            if hash_file(full) != manifest.blake3:
                return False
        self.stat_cache.record(path, st, entry.oid)
        return True

    # -- the rest lives in sibling modules -------------------------------------------------

    def checkout(self, ref: str, force: bool = False, new_branch: str | None = None, progress=None):
        """-> CheckoutResult (commit, branch, left_behind: commits only the old detached
        HEAD reached, which git would warn about)."""
        from bgit.repo.checkout import checkout

        return checkout(self, ref, force=force, new_branch=new_branch, progress=progress)

    def reachable_object_ids(self) -> set[str]:
        from bgit.repo.integrity import reachable_object_ids

        return reachable_object_ids(self)

    def fsck(self, all_objects: bool = False):
        from bgit.repo.integrity import fsck

        return fsck(self, all_objects)

    def gc(self, grace_seconds: float = 3600.0):
        from bgit.repo.integrity import gc

        return gc(self, grace_seconds)

    def log(self, ref: str = "HEAD", n: int | None = None):
        from bgit.repo.history import log

        return log(self, ref, n)

    def show(self, ref: str = "HEAD"):
        from bgit.repo.history import show

        return show(self, ref)

    def create_branch(self, name: str, start: str = "HEAD"):
        from bgit.repo.refs import create_branch

        return create_branch(self, name, start)

    def delete_branch(self, name: str) -> None:
        from bgit.repo.refs import delete_branch

        delete_branch(self, name)

    def branches(self):
        from bgit.repo.refs import list_branches

        return list_branches(self)

    def create_tag(self, name: str, ref: str = "HEAD", message: str | None = None):
        from bgit.repo.refs import create_tag

        return create_tag(self, name, ref, message)

    def delete_tag(self, name: str) -> None:
        from bgit.repo.refs import delete_tag

        delete_tag(self, name)

    def tags(self):
        from bgit.repo.refs import list_tags

        return list_tags(self)


def _failed_step(error: OSError, src: Path) -> str:
    """'read' when the OS refused the source file itself, else 'store' (the store's write)."""
    try:
        return "read" if error.filename is not None and os.fspath(error.filename) == os.fspath(src) else "store"
    except TypeError:
        return "store"
