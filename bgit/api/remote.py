"""Remote commands: remote add/remove/list, push, fetch, pull, clone."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from bgit import remote as _remote
from bgit.api._open import RepoLike, TransferProgress, open_repo
from bgit.remote import FetchResult, PullResult, PushResult, RemoteConfig
from bgit.remote.known import forget_remote
from bgit.repo import Repository
from bgit.util.progress import SILENT, Reporter
from bgit.remote.errors import DivergedError
from bgit.repo.merge import refuse_during_merge

if TYPE_CHECKING:
    from bgit.pipeline.merge import MergeOutcome


def remote_add(repo: RepoLike = ".", name: str = "origin", url: str = "", store: str | None = None) -> RemoteConfig:
    """Add a remote: the commit graph goes to ``url``, payloads to ``store`` (a directory or
    s3://BUCKET/PREFIX; default for a local path URL: PATH/bgit-objects)."""
    return _remote.add_remote(open_repo(repo).git, name, url, store)


def remote_remove(repo: RepoLike = ".", name: str = "origin") -> None:
    """Remove a remote, its remote-tracking branches and what bgit knew of its store."""
    repo = open_repo(repo)
    _remote.remove_remote(repo.git, name)
    forget_remote(repo.bgit_dir, name)


def remote_list(repo: RepoLike = ".") -> list[RemoteConfig]:
    return _remote.list_remotes(open_repo(repo).git)


def store_url(remote: RemoteConfig) -> str | None:
    return _remote.store_url_of(remote)


def push(repo: RepoLike = ".", remote: str | None = None, branches=(), all_branches: bool = False,
         tags: bool = False, reporter: Reporter = SILENT) -> PushResult:
    """Upload the payloads the pushed commits need, then move the remote's refs (fast-forward only)."""
    return _remote.push(open_repo(repo, reporter), remote, branches, all_branches, tags,
                        progress=TransferProgress(reporter))


def fetch(repo: RepoLike = ".", remote: str | None = None, payloads: bool = False,
          reporter: Reporter = SILENT) -> FetchResult:
    """Commits and manifests from ``remote`` (payloads too with ``payloads``)."""
    return _remote.fetch(open_repo(repo, reporter), remote, payloads=payloads, progress=TransferProgress(reporter))


def pull(repo: RepoLike = ".", remote: str | None = None, merge: bool = False,
         reporter: Reporter = SILENT) -> "PullResult | MergeOutcome":
    """Fetch, then fast-forward the current branch to its upstream. A branch that has
    diverged raises DivergedError, unless ``merge``: then the upstream is merged as
    ``bgit merge`` does (-> the MergeOutcome)."""

    repo = open_repo(repo, reporter)
    refuse_during_merge(repo)
    try:
        return _remote.pull(repo, remote, progress=TransferProgress(reporter))
    except DivergedError as diverged:
        if not merge:
            raise
        from bgit.api.merge import merge as merge_ref
        return merge_ref(repo, diverged.upstream, reporter=reporter)


def clone(url: str, directory: str | os.PathLike | None = None, store: str | None = None, checkout: bool = True,
          reporter: Reporter = SILENT) -> Repository:
    """A new repository with remote 'origin': the whole commit graph, and only the payloads
    the default branch needs; later checkouts fetch the rest lazily."""
    repo = _remote.clone(url, directory, store, checkout=checkout, progress=TransferProgress(reporter))
    return open_repo(repo, reporter)
