"""Opening a repository the way every api function does."""

from __future__ import annotations

import os

from bgit.remote import install_fetcher
from bgit.repo import Repository
from bgit.util.progress import SILENT, Reporter

RepoLike = Repository | str | os.PathLike


def open_repo(repo: RepoLike = ".", reporter: Reporter = SILENT) -> Repository:
    """A Repository (found upwards from a path, or passed through) whose checkouts and reads
    fetch missing payloads lazily from the default remote's store, verified."""
    if not isinstance(repo, Repository):
        repo = Repository.open(repo)
    if repo.object_fetcher is None:
        install_fetcher(repo, reporter=reporter)
    return repo
