"""What the refs reach (commits -> manifests -> store objects), fsck and gc.

gc's roots are every ref and HEAD, plus every index file in .git (``index``, a
``index.lock`` that git is writing, temporary ``*index*`` files of git commands): staged
payloads have no commit yet, and losing them would make the next commit record objects
that no longer exist.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

import time

import pygit2

from bgit.repo.errors import CorruptManifestError, UnsafePathError, UnstoredPayloadError
from bgit.repo.paths import check_tree_path
from bgit.repo.trees import check_tree_links, flatten_tree
from bgit.store import GcReport, Manifest, is_manifest
from bgit.store.errors import ManifestError

if TYPE_CHECKING:
    from bgit.repo.repository import Repository


def manifest_in_blob(data: bytes, label: str) -> Manifest | None:
    """The manifest a blob holds (None for a plain file); CorruptManifestError names ``label``
    when the blob claims to be a manifest but is not a valid one."""
    if not is_manifest(data):
        return None
    try:
        return Manifest.from_bytes(data)
    except ManifestError as error:
        raise CorruptManifestError(label, error.reason) from None


def reachable_commits(repo: "Repository") -> Iterator[pygit2.Commit]:
    """Every commit reachable from any ref, HEAD or a reflog entry, newest first, each once.

    Reflogs count as git's do: a commit left behind by a checkout of a detached HEAD stays
    recoverable (``bgit branch NAME <sha>``) for REFLOG_DAYS (git's gc.reflogExpireUnreachable
    default), or until ``git reflog expire`` drops the entry."""
    starts = set()
    names = list(repo.git.references)
    if not repo.git.head_is_unborn:
        names.append("HEAD")
    for name in names:
        try:
            starts.add(repo.git.references[name].peel(pygit2.Commit).id)
        except (ValueError, KeyError, pygit2.GitError):
            continue  # refs to trees/blobs, or dangling symbolic refs
    starts |= _reflog_commits(repo, names)
    if not starts:
        return
    walker = repo.git.walk(None, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME)
    for oid in starts:
        walker.push(oid)
    yield from walker


REFLOG_DAYS = 30


def _reflog_commits(repo: "Repository", names: list[str]) -> set:
    found, since = set(), time.time() - REFLOG_DAYS * 86400
    for name in names:
        try:
            entries = list(repo.git.references[name].log())  # "HEAD": HEAD's own reflog, not its branch's
        except (KeyError, ValueError, pygit2.GitError):
            continue
        for entry in (e for e in entries if e.committer.time >= since):
            for oid in (entry.oid_new, entry.oid_old):
                if oid is not None and not oid.raw == bytes(20) and isinstance(repo.git.get(oid), pygit2.Commit):
                    found.add(oid)
    return found


@dataclass
class ReachableManifests:
    manifests: dict[str, Manifest] = field(default_factory=dict)  # "<short>:<path>" -> manifest
    corrupt: list[str] = field(default_factory=list)  # one-line problems: bad manifests, unsafe paths


def reachable_manifests(repo: "Repository") -> ReachableManifests:
    """Each distinct manifest blob once, labelled by the newest commit and path using it."""
    out = ReachableManifests()
    seen_trees: set[str] = set()
    seen_blobs: set[str] = set()
    for commit in reachable_commits(repo):
        if str(commit.tree_id) in seen_trees:
            continue
        seen_trees.add(str(commit.tree_id))
        short = str(commit.id)[:8]
        for path, entry in flatten_tree(commit.tree, check=False).items():
            try:
                check_tree_path(path)
            except UnsafePathError as error:
                out.corrupt.append(f"commit {short}: {error}")
            if not entry.is_file or entry.oid in seen_blobs:
                continue
            seen_blobs.add(entry.oid)
            label = f"{short}:{path}"
            try:
                manifest = manifest_in_blob(repo.git[entry.oid].data, label)
            except CorruptManifestError as error:
                out.corrupt.append(str(error))
                continue
            if manifest is not None:
                out.manifests[label] = manifest
    return out


def reachable_object_ids(repo: "Repository") -> set[str]:
    oids: set[str] = set()
    for manifest in reachable_manifests(repo).manifests.values():
        oids |= manifest.object_ids()
    return oids


@dataclass(frozen=True)
class NotFetched:
    """An object this repository lacks that a remote's store holds (a lazy clone's normal state)."""
    oid: str
    remote: str
    labels: tuple[str, ...]

    def to_json(self) -> dict:
        return {"oid": self.oid, "remote": self.remote, "needed_by": list(self.labels)}


def index_files(repo: "Repository") -> list[Path]:
    """The index and any other index file git may hold in .git (index.lock while git
    writes it, next-index-*.lock of ``git commit <paths>``, split-index shared files)."""
    git_dir = Path(repo.git.path)
    found = [git_dir / "index", *git_dir.glob("index?*"), *git_dir.glob("*index*.lock"),
             *git_dir.glob("sharedindex.*")]
    return sorted({p for p in found if p.is_file()})


def staged_object_ids(repo: "Repository") -> set[str]:
    """Store objects that the manifests in any index file name (staged, not committed)."""
    oids: set[str] = set()
    for path in index_files(repo):
        try:
            index = pygit2.Index(str(path))
            entries = [str(e.id) for e in index]
        except (pygit2.GitError, OSError, ValueError):
            continue  # half written by a running git, or not an index: nothing we can read
        for oid in entries:
            obj = repo.git.get(oid)
            if obj is None or obj.type != pygit2.enums.ObjectType.BLOB or not is_manifest(obj.data):
                continue
            try:
                oids |= Manifest.from_bytes(obj.data).object_ids()
            except ManifestError:
                continue
    return oids


@dataclass
class FsckResult:
    manifests: int
    objects_checked: int
    problems: list[str]
    not_fetched: list[NotFetched] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def to_json(self) -> dict:
        return {"ok": self.ok, "manifests": self.manifests, "objects_checked": self.objects_checked,
                "problems": self.problems, "not_fetched": [n.to_json() for n in self.not_fetched]}


# Given the ids of needed objects absent from the local store: id -> name of a remote whose
# store holds it. Filled by the caller (the remote layer); the repo knows nothing of remotes.
AbsentLocator = Callable[[set[str]], Mapping[str, str]]


def fsck(repo: "Repository", all_objects: bool = False,
         locate_absent: AbsentLocator | None = None) -> FsckResult:
    """Verify every store object a reachable commit needs; problems name the file.

    Absent objects that ``locate_absent`` places on a remote are reported as not fetched
    yet, not as problems."""
    found = reachable_manifests(repo)
    report = repo.store.fsck(found.manifests, all_objects=all_objects)
    absent = {p.oid for p in report.problems if p.problem == "missing"}
    located = dict(locate_absent(absent)) if locate_absent is not None and absent else {}
    elsewhere = {p.oid for p in report.problems if p.oid in absent and p.oid in located}
    not_fetched = [NotFetched(p.oid, located[p.oid], p.labels) for p in report.problems if p.oid in elsewhere]
    problems = found.corrupt + [str(CorruptManifestError(m.label, m.reason))
                                for m in report.manifest_problems]
    problems += [p.message for p in report.problems if p.oid not in elsewhere]
    return FsckResult(len(found.manifests), report.objects_checked, problems, not_fetched)


def check_commit_tree(repo: "Repository", tree: pygit2.Tree, parent: pygit2.Commit | None) -> None:
    """Refuse to commit a tree whose symlinks lead out of the work tree, or that adds a
    manifest (one the parent does not record) whose objects the store lacks -- after a
    gc, a crash or a lost disk since ``bgit add``: such a commit could never be checked out."""
    entries = flatten_tree(tree)
    check_tree_links(repo.git, entries)
    known = {e.oid for e in flatten_tree(parent.tree, check=False).values()} if parent else set()
    for path, entry in sorted(entries.items()):
        if not entry.is_file or entry.oid in known:
            continue
        manifest = repo.manifest_of(entry.oid, path)
        if manifest is None:
            continue
        for oid in sorted(manifest.object_ids()):
            if not repo.store.has(oid):
                raise UnstoredPayloadError(path, oid)


def gc(repo: "Repository", grace_seconds: float = 3600.0) -> GcReport:
    """Delete store objects that no ref, HEAD or index reaches (older than the grace period)."""
    with repo.writing("bgit gc"):
        return repo.store.gc(reachable_object_ids(repo) | staged_object_ids(repo), grace_seconds)
