"""What the refs reach (commits -> manifests -> store objects), fsck and gc."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Iterator, Mapping

import pygit2

from bgit.repo.errors import CorruptManifestError, UnsafePathError
from bgit.repo.paths import check_tree_path
from bgit.repo.trees import flatten_tree
from bgit.store import GcReport, Manifest, is_manifest
from bgit.store.errors import ManifestError

if TYPE_CHECKING:
    from bgit.repo.repository import Repository


def reachable_commits(repo: "Repository") -> Iterator[pygit2.Commit]:
    """Every commit reachable from any ref or HEAD, newest first, each once."""
    starts = set()
    names = list(repo.git.references)
    if not repo.git.head_is_unborn:
        names.append("HEAD")
    for name in names:
        try:
            starts.add(repo.git.references[name].peel(pygit2.Commit).id)
        except (ValueError, KeyError, pygit2.GitError):
            continue  # refs to trees/blobs, or dangling symbolic refs
    if not starts:
        return
    walker = repo.git.walk(None, pygit2.enums.SortMode.TOPOLOGICAL | pygit2.enums.SortMode.TIME)
    for oid in starts:
        walker.push(oid)
    yield from walker


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
            data = repo.git[entry.oid].data
            if not is_manifest(data):
                continue
            label = f"{short}:{path}"
            try:
                out.manifests[label] = Manifest.from_bytes(data)
            except ManifestError as error:
                out.corrupt.append(str(CorruptManifestError(label, error.reason)))
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


def gc(repo: "Repository", grace_seconds: float = 3600.0) -> GcReport:
    with repo.lock("bgit gc"):
        return repo.store.gc(reachable_object_ids(repo), grace_seconds)
