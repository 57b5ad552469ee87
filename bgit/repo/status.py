"""Status: what is staged, modified or untracked, comparing HEAD, the index and the work
tree (payloads through the stat cache, else by BLAKE3 against the manifest)."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass, field

import pygit2
from pygit2.enums import FileMode

from bgit.errors import os_errors
from bgit.repo.trees import Entry, flatten_tree, index_entries
from bgit.store import Manifest, is_manifest
from bgit.store.errors import ManifestError
from bgit.util.files import hash_file


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


class StatusMixin:
    """The status half of :class:`bgit.repo.Repository`."""


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
