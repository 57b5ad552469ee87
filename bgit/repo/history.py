"""Reading history: log entries, a text graph, show. (What a commit means as a bake is read
above this layer: bgit.api.log adds bake summaries and eval notes.)"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pygit2
from pygit2.enums import SortMode

from bgit.repo.trees import flatten_tree

if TYPE_CHECKING:
    from bgit.repo.repository import Repository

@dataclass
class LogEntry:
    id: str
    parents: list[str]
    author: str
    email: str
    time: int  # unix seconds
    offset: int  # minutes east of UTC
    message: str
    refs: list[str] = field(default_factory=list)

    @property
    def summary(self) -> str:
        return self.message.splitlines()[0] if self.message.strip() else ""

    def date(self) -> str:
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.time + 60 * self.offset)) + _tz(self.offset)

    def to_json(self) -> dict:
        return {"id": self.id, "parents": self.parents, "author": self.author, "email": self.email,
                "time": self.time, "date": self.date(), "message": self.message, "refs": self.refs}


def _tz(offset: int) -> str:
    sign = "+" if offset >= 0 else "-"
    return f" {sign}{abs(offset) // 60:02d}{abs(offset) % 60:02d}"


def log(repo: "Repository", ref: str = "HEAD", n: int | None = None, all_refs: bool = False) -> list[LogEntry]:
    """History from ``ref``, newest first; ``all_refs``: from every branch, tag,
    remote-tracking branch and HEAD (``git log --branches --tags --remotes HEAD``; the notes
    refs that hold evals are not history)."""
    starts = _all_starts(repo) if all_refs else [repo.resolve(ref).id]
    decorations = _decorations(repo)
    out: list[LogEntry] = []
    if not starts:
        return out
    walker = repo.git.walk(None, SortMode.TOPOLOGICAL | SortMode.TIME)
    for oid in starts:
        walker.push(oid)
    for commit in walker:
        if n is not None and len(out) >= n:
            break
        out.append(_entry(repo, commit, decorations))
    return out


def _all_starts(repo) -> list[pygit2.Oid]:
    starts = [] if repo.git.head_is_unborn else [repo.git.head.peel(pygit2.Commit).id]
    for name in repo.git.references:
        if name.startswith(("refs/heads/", "refs/tags/", "refs/remotes/")):
            try:
                oid = repo.git.references[name].peel(pygit2.Commit).id
            except (ValueError, KeyError, pygit2.GitError):
                continue  # a tag of a tree or blob, or a dangling symbolic ref
            if oid not in starts:
                starts.append(oid)
    return starts


def _entry(repo, commit: pygit2.Commit, decorations) -> LogEntry:
    return LogEntry(
        id=str(commit.id), parents=[str(p) for p in commit.parent_ids], author=commit.author.name,
        email=commit.author.email, time=commit.commit_time, offset=commit.commit_time_offset,
        message=commit.message, refs=decorations.get(str(commit.id), []),
    )


def _decorations(repo) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    head = repo.head_commit()
    branch = repo.current_branch()
    if head is not None and branch is None:
        out.setdefault(str(head.id), []).append("HEAD")
    for ref_name in repo.git.references:
        try:
            target = str(repo.git.references[ref_name].peel(pygit2.Commit).id)
        except (ValueError, pygit2.GitError, KeyError):
            continue
        short = ref_name.removeprefix("refs/heads/").removeprefix("refs/remotes/")
        if ref_name.startswith("refs/tags/"):
            short = "tag: " + ref_name.removeprefix("refs/tags/")
        if ref_name == f"refs/heads/{branch}":
            short = f"HEAD -> {branch}"
        out.setdefault(target, []).append(short)
    for names in out.values():
        names.sort(key=lambda s: (not s.startswith("HEAD"), s))
    return out


def graph_lines(entries: list[LogEntry]) -> list[tuple[str, LogEntry | None]]:
    """An ASCII graph as git draws it: (prefix, entry) rows for commits and (prefix, None)
    connector rows. ``columns`` holds, left to right, the commit each open line is waiting
    for; two lines waiting for the same commit join at once, the right one moving left one
    column per row ('/')."""
    columns: list[str] = []
    rows: list[tuple[str, LogEntry | None]] = []
    for entry in entries:
        if entry.id not in columns:
            columns.append(entry.id)
        col = columns.index(entry.id)
        rows.append((_cells(len(columns), {2 * col: "*"}), entry))
        extra = [p for p in entry.parents[1:] if p not in columns]
        columns[col:col + 1] = entry.parents[:1]
        if extra:
            rows.append((_cells(len(columns), {2 * (col + k) + 1: "\\" for k in range(len(extra))}), None))
            columns[col + 1:col + 1] = extra
        columns = _join_duplicates(columns, rows)
    return rows


def _join_duplicates(columns: list[str], rows: list) -> list[str]:
    """Lines waiting for a commit another line already waits for move left into it."""
    while True:
        dup = next((j for j in range(len(columns) - 1, 0, -1) if columns[j] in columns[:j]), None)
        if dup is None:
            return columns
        target = columns.index(columns[dup])
        for k in range(dup, target, -1):
            rows.append((_cells(len(columns), {2 * k - 1: "/"}, skip=[dup]), None))
        columns = columns[:dup] + columns[dup + 1:]


def _cells(n: int, marks: dict[int, str], skip: list[int] = ()) -> str:
    """n column lines ('|'), with ``marks`` placed at character positions (2*column for a
    column, odd positions between columns)."""
    chars = [" "] * max(2 * n - 1, max(marks, default=0) + 1)
    for i in range(n):
        if i not in skip:
            chars[2 * i] = "|"
    for pos, mark in marks.items():
        chars[pos] = mark
    return "".join(chars).rstrip()


@dataclass
class FileInfo:
    path: str
    size: int
    mode: int
    kind: str  # file | safetensors | chunks | blob (the manifest kinds) | link | submodule
    payload: bool
    tensors: int | None = None
    objects: int | None = None

    def to_json(self) -> dict:
        return {"path": self.path, "size": self.size, "kind": self.kind, "payload": self.payload,
                "tensors": self.tensors, "objects": self.objects}


@dataclass
class ShowResult:
    entry: LogEntry
    files: list[FileInfo]

    def to_json(self) -> dict:
        return {**self.entry.to_json(), "files": [f.to_json() for f in self.files]}


def show(repo: "Repository", ref: str = "HEAD") -> ShowResult:
    commit = repo.resolve(ref)
    entry = _entry(repo, commit, _decorations(repo))
    files = []
    short = str(commit.id)[:8]
    for path, e in sorted(flatten_tree(commit.tree).items()):
        if e.mode == pygit2.enums.FileMode.LINK:
            files.append(FileInfo(path, repo.git[e.oid].size, e.mode, "link", False))
            continue
        if not e.is_file:
            files.append(FileInfo(path, 0, e.mode, "submodule", False))
            continue
        manifest = repo.manifest_of(e.oid, f"{short}:{path}")
        if manifest is None:
            files.append(FileInfo(path, repo.git[e.oid].size, e.mode, "file", False))
        else:
            tensors = len(manifest.tensors) if manifest.kind == "safetensors" else None
            files.append(FileInfo(path, manifest.size, e.mode, manifest.kind, True, tensors,
                                  len(manifest.object_ids())))
    return ShowResult(entry, files)


__all__ = ["LogEntry", "FileInfo", "ShowResult", "log", "show", "graph_lines"]
