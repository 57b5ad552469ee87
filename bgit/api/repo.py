"""Repository commands: init, add, commit, status, log, show, branches, tags, checkout, fsck, gc."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bgit.api._open import RepoLike, open_repo
from bgit.config.examples import example_files
from bgit.evaluate import EvalResult, read_eval, read_record
from bgit.pipeline.phases import PhaseCache
from bgit.record import BakeRecordError
from bgit.remote import fsck as remote_fsck
from bgit.repo import Repository
from bgit.repo.checkout import CheckoutResult as RepoCheckoutResult
from bgit.repo.history import LogEntry, ShowResult
from bgit.repo.hooks import install_sample_hooks
from bgit.repo.integrity import reachable_commits
from bgit.store import GcReport
from bgit.repo.refs import RefInfo
from bgit.util.progress import SILENT, Reporter
from bgit.repo.merge import mark_resolved
from bgit.repo.merge import refuse_during_merge
from bgit.repo.history import log as history_log
from bgit.repo.refs import remote_branch_for, set_upstream


@dataclass
class InitResult:
    root: Path
    git_dir: Path
    example: str | None          # the example input.yml written, if any
    hooks: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {"root": str(self.root), "git_dir": str(self.git_dir), "example": self.example, "hooks": self.hooks}


def init(path: str | os.PathLike = ".", example: str | None = "yoda") -> InitResult:
    """A new repository (git + payload store) with an example input.yml (``example=None``:
    none) and the sample hooks, disabled."""
    files = example_files(example) if example else {}
    repo = Repository.init(path, example=files)
    hooks = install_sample_hooks(repo)
    written = example if example and (repo.root / "input.yml").exists() else None
    return InitResult(repo.root, Path(repo.git.path), written, hooks)


def add(repo: RepoLike = ".", paths=(), all: bool = False) -> list[str]:
    """Stage files (payloads go to the store) and deletions; -> the staged paths. During a
    merge, adding a conflicting path marks it resolved."""

    repo = open_repo(repo)
    staged = repo.add(paths, all=all)
    mark_resolved(repo, staged)
    return staged


@dataclass
class CommitResult:
    commit: str
    branch: str | None    # None on a detached HEAD
    summary: str

    def to_json(self) -> dict:
        return {"commit": self.commit, "branch": self.branch, "summary": self.summary}


def commit(repo: RepoLike = ".", message: str = "") -> CommitResult:
    """Commit the index. During a merge this is refused: 'bgit merge --continue' makes the
    merge commit (and its bake)."""

    repo = open_repo(repo)
    refuse_during_merge(repo)
    commit_id = repo.commit(message)
    return CommitResult(commit_id, repo.current_branch(), message.splitlines()[0] if message.strip() else "")


def status(repo: RepoLike = "."):
    return open_repo(repo).status()


@dataclass
class BakeSummary:
    base_model: str | None
    targets: list[str]
    final_kl: float | None

    def text(self) -> str:
        parts = [f"base {self.base_model or '?'}"]
        if self.targets:
            parts.append("targets " + ",".join(self.targets))
        if self.final_kl is not None:
            parts.append(f"KL {self.final_kl:.4g}")
        return "bake: " + ", ".join(parts)


@dataclass
class LogItem:
    """A commit with what bgit knows of it as a bake (bake.yml) and its eval note."""

    entry: LogEntry
    bake: BakeSummary | None = None
    eval: EvalResult | None = None

    def to_json(self) -> dict:
        return {**self.entry.to_json(), "bake": vars(self.bake) if self.bake else None,
                "eval": self.eval.to_json() if self.eval else None}


def _bake_summary(repo: Repository, commit_id: str) -> BakeSummary | None:
    try:
        record = read_record(repo, repo.git.get(commit_id))
    except BakeRecordError:
        return BakeSummary(None, [], None)   # a bake.yml bgit cannot read: shown as a bake of unknown origin
    if record is None:
        return None
    return BakeSummary(record.base_model.name, record.targets, record.final_kl)


def _item(repo: Repository, entry: LogEntry) -> LogItem:
    return LogItem(entry, _bake_summary(repo, entry.id), read_eval(repo, entry.id))


def log(repo: RepoLike = ".", ref: str = "HEAD", max_count: int | None = None, all_refs: bool = False) -> list[LogItem]:
    """History from ``ref`` (``all_refs``: from every branch, tag and remote-tracking branch),
    newest first; empty before the first commit."""

    repo = open_repo(repo)
    if ref == "HEAD" and repo.head_commit() is None and not all_refs:
        return []
    return [_item(repo, entry) for entry in history_log(repo, ref, max_count, all_refs=all_refs)]


@dataclass
class ShowItem(LogItem):
    files: list = field(default_factory=list)

    def to_json(self) -> dict:
        return {**super().to_json(), "files": [f.to_json() for f in self.files]}


def show(repo: RepoLike = ".", ref: str = "HEAD") -> ShowItem:
    repo = open_repo(repo)
    shown: ShowResult = repo.show(ref)
    item = _item(repo, shown.entry)
    return ShowItem(item.entry, item.bake, item.eval, shown.files)


def branch_list(repo: RepoLike = ".") -> list[RefInfo]:
    return open_repo(repo).branches()


def branch_create(repo: RepoLike = ".", name: str = "", start: str = "HEAD") -> RefInfo:
    return open_repo(repo).create_branch(name, start)


def branch_delete(repo: RepoLike = ".", name: str = "") -> None:
    open_repo(repo).delete_branch(name)


def tag_list(repo: RepoLike = ".") -> list[RefInfo]:
    return open_repo(repo).tags()


def tag_create(repo: RepoLike = ".", name: str = "", ref: str = "HEAD", message: str | None = None) -> RefInfo:
    return open_repo(repo).create_tag(name, ref, message)


def tag_delete(repo: RepoLike = ".", name: str = "") -> None:
    open_repo(repo).delete_tag(name)


@dataclass
class CheckoutResult(RepoCheckoutResult):
    tracking: str | None = None   # 'origin/NAME' when the branch was made from a remote's (git's DWIM)

    def to_json(self) -> dict:
        return {**super().to_json(), "tracking": self.tracking}


def checkout(repo: RepoLike = ".", ref: str = "HEAD", force: bool = False, new_branch: str | None = None,
             reporter: Reporter = SILENT) -> CheckoutResult:
    """Switch to ``ref`` and materialise its payloads, fetching missing ones from the remote;
    the result lists commits of a detached HEAD that the switch leaves behind. A ``ref`` that
    only one remote has as a branch becomes a new local branch tracking it, as in git."""

    repo = open_repo(repo, reporter)
    refuse_during_merge(repo)
    tracked = remote_branch_for(repo, ref) if new_branch is None else None
    task = reporter.task("checkout", unit="B")
    try:
        if tracked is not None:
            result = repo.checkout(f"{tracked[0]}/{tracked[1]}", force=force, new_branch=ref, progress=task)
            set_upstream(repo, ref, *tracked)
        else:
            result = repo.checkout(ref, force=force, new_branch=new_branch, progress=task)
    finally:
        task.close()
    return CheckoutResult(**vars(result), tracking="/".join(tracked) if tracked else None)


def fsck(repo: RepoLike = ".", all_objects: bool = False, remote: str | None = None, ask_remote: bool = False):
    """Verify every object reachable commits need. Objects not here that a remote's store holds
    are "not fetched yet" (a lazy clone), not problems; ``ask_remote`` asks ``remote``'s store
    (default: the branch's remote) about them, and what it lacks too is missing."""
    return remote_fsck(open_repo(repo), all_objects, remote_name=remote, ask_remote=ask_remote)


@dataclass
class GcResult:
    """What ``gc`` removed: store objects (``store``) and cached phases."""

    store: GcReport
    removed_phases: int = 0
    removed_phase_bytes: int = 0
    kept_pinned_phases: int = 0
    phase_days: float = 14.0

    def to_json(self) -> dict:
        return {**vars(self.store), "removed_phases": self.removed_phases,
                "removed_phase_bytes": self.removed_phase_bytes, "kept_pinned_phases": self.kept_pinned_phases,
                "phase_days": self.phase_days}


def referenced_phase_keys(repo: Repository) -> set[str]:
    """Phase keys named by the bake.yml of every commit a ref or HEAD reaches."""
    keys, seen = set(), set()
    for commit in reachable_commits(repo):
        entry = commit.tree["bake.yml"] if "bake.yml" in commit.tree else None
        if entry is None or entry.id in seen:
            continue
        seen.add(entry.id)
        try:
            record = read_record(repo, commit)
        except BakeRecordError:
            continue  # not a record bgit wrote: it names no phases
        if record is not None:
            keys |= record.phase_keys.all()
    return keys


def gc(repo: RepoLike = ".", grace_seconds: float = 3600.0, phase_days: float = 14.0,
       now: float | None = None) -> GcResult:
    """Delete store objects no ref, HEAD or index reaches (older than ``grace_seconds``), then
    cached phases that no reachable bake names, no running bake has pinned, and nothing used
    for ``phase_days`` days. Holds the repository lock."""
    repo = open_repo(repo)
    cache = PhaseCache(repo.bgit_dir / "phases")
    with repo.lock("bgit gc"):
        report = repo.gc(grace_seconds)
        cache.clean_temporaries()
        pruned = cache.prune(referenced_phase_keys(repo), older_than=phase_days * 86400, now=now)
    return GcResult(report, pruned.removed, pruned.freed, pruned.kept_pinned, phase_days)
