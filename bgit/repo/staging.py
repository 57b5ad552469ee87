"""Staging: ``add`` writes payload files to the store and their manifests (or plain files)
as git blobs in the index, under the repository lock. A stat cache keeps unchanged payloads
from being hashed again; a manifest is reused only while the store holds its objects."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Iterable, Iterator

import pygit2
from pygit2.enums import FileMode

from bgit.errors import OsOperationError
from bgit.repo.errors import PathspecError, UnsafePathError
from bgit.repo.paths import check_link_on_disk, check_tree_path, is_under, repo_relative
from bgit.repo.payload import is_payload
from bgit.repo.worktree import walk_files
from bgit.store import Manifest, is_manifest
from bgit.store.errors import ManifestError


class StagingMixin:
    """The staging half of :class:`bgit.repo.Repository`."""

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


def _failed_step(error: OSError, src: Path) -> str:
    """'read' when the OS refused the source file itself, else 'store' (the store's write)."""
    try:
        return "read" if error.filename is not None and os.fspath(error.filename) == os.fspath(src) else "store"
    except TypeError:
        return "store"
