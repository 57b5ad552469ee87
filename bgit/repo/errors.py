"""Errors of the repository layer; every message is one line for a user."""

from __future__ import annotations

from bgit.errors import BgitError


class RepoError(BgitError):
    """Base of the repository layer's errors."""


class NotARepositoryError(RepoError):
    def __init__(self, path) -> None:
        super().__init__(f"not a bgit repository (or any of the parent directories): {path}")
        self.path = path


class AlreadyARepositoryError(RepoError):
    def __init__(self, path) -> None:
        super().__init__(f"already a bgit repository: {path}")
        self.path = path


class UnknownRevisionError(RepoError):
    def __init__(self, ref: str) -> None:
        super().__init__(f"unknown revision or path: '{ref}'")
        self.ref = ref


class NoCommitsError(RepoError):
    def __init__(self, branch: str) -> None:
        super().__init__(f"your current branch '{branch}' does not have any commits yet")
        self.branch = branch


class NothingToCommitError(RepoError):
    def __init__(self) -> None:
        super().__init__("nothing to commit (use 'bgit add' to stage changes)")


class DirtyWorkTreeError(RepoError):
    def __init__(self, paths: list[str]) -> None:
        shown = ", ".join(paths[:10]) + (f", ... ({len(paths) - 10} more)" if len(paths) > 10 else "")
        super().__init__(
            f"checkout would overwrite uncommitted changes: {shown} (commit them or use --force)"
        )
        self.paths = paths


class UnsafePathError(RepoError):
    def __init__(self, path: str, why: str = "escapes the work tree") -> None:
        super().__init__(f"refusing unsafe path {path!r}: {why}")
        self.path = path


class PathOutsideRepositoryError(RepoError):
    def __init__(self, path) -> None:
        super().__init__(f"path is outside the repository: {path}")
        self.path = path


class PathspecError(RepoError):
    def __init__(self, path) -> None:
        super().__init__(f"pathspec '{path}' did not match any files")
        self.path = path


class CorruptManifestError(RepoError):
    def __init__(self, label: str, why: str) -> None:
        super().__init__(f"corrupted manifest at {label}: {why}")
        self.label = label


class MergeError(RepoError):
    """Starting, continuing or aborting a merge, a revert or a reset failed."""


class MergeInProgressError(MergeError):
    def __init__(self) -> None:
        super().__init__("a merge is in progress: finish it with 'bgit merge --continue' "
                         "or undo it with 'bgit merge --abort'")


class NoMergeInProgressError(MergeError):
    def __init__(self) -> None:
        super().__init__("there is no merge in progress (MERGE_HEAD missing)")


class LocalChangesError(MergeError):
    """An operation would overwrite or lose uncommitted changes."""

    def __init__(self, operation: str, paths: list[str], hint: str) -> None:
        shown = ", ".join(paths[:10]) + (f", ... ({len(paths) - 10} more)" if len(paths) > 10 else "")
        super().__init__(f"{operation} would overwrite or lose uncommitted changes: {shown} ({hint})")
        self.paths = paths


class UnmergedPathsError(MergeError):
    def __init__(self, paths: list[str]) -> None:
        super().__init__(f"unmerged paths: {', '.join(paths)} (resolve them and 'bgit add' them, "
                         "or 'bgit merge --abort')")
        self.paths = paths


class RemoveError(RepoError):
    """``bgit rm`` refused to remove a path."""


class BranchError(RepoError):
    """Creating, deleting or naming a branch or tag failed."""


class MissingObjectError(RepoError):
    def __init__(self, label: str, oid: str) -> None:
        super().__init__(f"missing store object {oid[:12]} for {label} (fetch it from a remote)")
        self.label = label
        self.oid = oid


class UnstoredPayloadError(RepoError):
    """A commit would record a manifest whose object the store does not hold."""

    def __init__(self, path: str, oid: str) -> None:
        super().__init__(f"cannot commit {path}: store object {oid} is missing "
                         f"(run 'bgit add {path}' again); nothing was committed")
        self.path = path
        self.oid = oid


class GitOperationError(RepoError):
    def __init__(self, detail: str, git_dir) -> None:
        detail = detail.strip().splitlines()[0] if detail.strip() else "unknown error"
        hint = ""
        if "index is locked" in detail:
            hint = f" (if no other git process is running, remove {git_dir}/index.lock)"
        elif "lock" in detail:
            hint = " (if no other git process is running, remove that .lock file)"
        super().__init__(f"git failed: {detail}{hint}")
