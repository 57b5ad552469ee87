"""The bgit repository: git (pygit2) for commits, trees and refs; payloads in the store.

Knows nothing of training. See :mod:`bgit.repo.repository` for the layout."""

from bgit.repo.errors import (
    AlreadyARepositoryError,
    BranchError,
    CorruptManifestError,
    DirtyWorkTreeError,
    GitOperationError,
    MissingObjectError,
    NoCommitsError,
    NotARepositoryError,
    NothingToCommitError,
    PathOutsideRepositoryError,
    PathspecError,
    RepoError,
    UnknownRevisionError,
    UnsafePathError,
)
from bgit.repo.repository import Change, Repository, Status

__all__ = [
    "Repository", "Status", "Change", "RepoError", "NotARepositoryError", "AlreadyARepositoryError",
    "UnknownRevisionError", "NoCommitsError", "NothingToCommitError", "DirtyWorkTreeError", "GitOperationError",
    "UnsafePathError", "PathOutsideRepositoryError", "PathspecError", "CorruptManifestError",
    "BranchError", "MissingObjectError",
]
