"""Repository commands: init, add, commit, status, log, show, branches, tags, checkout, fsck, gc."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from bgit.api._open import RepoLike, open_repo
from bgit.config.examples import example_files
from bgit.evaluate import EvalResult, read_eval, read_record
from bgit.record import BakeRecordError
from bgit.repo import Repository
from bgit.repo.history import LogEntry, ShowResult
from bgit.repo.hooks import install_sample_hooks
from bgit.repo.refs import RefInfo
from bgit.util.progress import SILENT, Reporter


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
    from bgit.repo.merge import mark_resolved

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
    from bgit.repo.merge import refuse_during_merge

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
    from bgit.repo.history import log as history

    repo = open_repo(repo)
    if ref == "HEAD" and repo.head_commit() is None and not all_refs:
        return []
    return [_item(repo, entry) for entry in history(repo, ref, max_count, all_refs=all_refs)]


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
class CheckoutResult:
    ref: str
    commit: str
    branch: str | None            # the branch now checked out; None when HEAD is detached
    new_branch: bool = False
    tracking: str | None = None   # 'origin/NAME' when the branch was made from a remote's

    def to_json(self) -> dict:
        return vars(self).copy()


def checkout(repo: RepoLike = ".", ref: str = "HEAD", force: bool = False, new_branch: str | None = None,
             reporter: Reporter = SILENT) -> CheckoutResult:
    """Switch to ``ref`` and materialise its payloads, fetching missing ones from the remote."""
    from bgit.repo.merge import refuse_during_merge
    from bgit.repo.refs import remote_branch_for, set_upstream

    repo = open_repo(repo, reporter)
    refuse_during_merge(repo)
    tracked = remote_branch_for(repo, ref) if new_branch is None else None
    task = reporter.task("checkout", unit="B")
    try:
        if tracked is not None:  # git's DWIM: a new branch from the one remote that has it
            repo.checkout(f"{tracked[0]}/{tracked[1]}", force=force, new_branch=ref, progress=task)
            set_upstream(repo, ref, *tracked)
        else:
            repo.checkout(ref, force=force, new_branch=new_branch, progress=task)
    finally:
        task.close()
    head = repo.head_commit()
    return CheckoutResult(ref, str(head.id), repo.current_branch(), new_branch is not None or tracked is not None,
                          "/".join(tracked) if tracked else None)


def fsck(repo: RepoLike = ".", all_objects: bool = False):
    return open_repo(repo).fsck(all_objects=all_objects)


@dataclass
class GcResult:
    removed_objects: int
    removed_bytes: int
    kept_objects: int
    kept_recent: int
    removed_phases: int
    removed_phase_bytes: int

    def to_json(self) -> dict:
        return vars(self).copy()


def gc(repo: RepoLike = ".", grace_seconds: float = 3600.0, phase_days: float = 14.0) -> GcResult:
    """Delete unreachable store objects older than the grace period, and cached phases no
    reachable bake names that are older than ``phase_days``."""
    from bgit.pipeline.phases import PhaseCache
    from bgit.repo.integrity import reachable_commits

    repo = open_repo(repo)
    with repo.lock("bgit gc"):
        report = repo.gc(grace_seconds)
        keep: set[str] = set()
        for commit in reachable_commits(repo):
            try:
                record = read_record(repo, commit)
            except BakeRecordError:
                continue  # not a record bgit wrote: it names no phases
            if record is not None:
                keep |= record.phase_keys.all()
        removed, freed = PhaseCache(repo.bgit_dir / "phases").prune(keep, older_than=phase_days * 86400)
    return GcResult(report.removed_objects, report.removed_bytes, report.kept_objects, report.kept_recent,
                    removed, freed)
