"""fsck in a repository with remotes: an object that is not here but is on a remote's
store is "not fetched yet" (a lazy clone's normal state), not lost.

Without asking the remote, an object counts as on remote R's store when R's ``known`` file
lists it or a commit that R's remote-tracking refs reach needs it (a remote ref only ever
points at commits whose objects are all in its store: push uploads before it moves refs).
``ask_remote`` checks the store itself (``has_many``) and reports what it lacks too.
"""

from __future__ import annotations

from bgit.repo import Repository
from bgit.repo.integrity import FsckResult
from bgit.repo.integrity import fsck as repo_fsck

from .config import list_remotes, store_url_of
from .errors import RemoteError
from .known import KnownObjects
from .needs import history_needs
from .ops import _known, _naming, _open_store, default_remote
from .stores import StoreRemote, has_many_batched, open_store_remote


def fsck(repo: Repository, all_objects: bool = False, remote_name: str | None = None,
         ask_remote: bool = False, store_remote: StoreRemote | None = None) -> FsckResult:
    """repo.fsck, with absent objects located on remotes (see the module docstring).

    ``ask_remote``: ask remote ``remote_name`` (default: the current branch's remote)
    about every absent object; those it lacks are problems (missing)."""
    if ask_remote:
        remote = default_remote(repo, remote_name)

        def locate(absent: set[str]) -> dict[str, str]:
            with _naming(remote):
                store = _open_store(repo, remote, store_remote, create=False)
                store.check()
                present = has_many_batched(store, sorted(absent))
                with _known(repo, remote, store) as known:
                    known.add(present)
            return dict.fromkeys(present, remote.name)
    else:
        def locate(absent: set[str]) -> dict[str, str]:
            return recorded_on_remotes(repo, absent)
    return repo_fsck(repo, all_objects, locate)


def recorded_on_remotes(repo: Repository, oids: set[str]) -> dict[str, str]:
    """oid -> the first remote (by name) that bgit's records place it on, for ``oids``."""
    out: dict[str, str] = {}
    for remote in list_remotes(repo.git):
        left = oids - out.keys()
        url = store_url_of(remote)
        if not left or url is None:
            continue
        try:
            known = KnownObjects(repo.bgit_dir, remote.name, open_store_remote(url).url)
        except RemoteError:
            continue  # an unusable store URL records nothing
        prefix = f"refs/remotes/{remote.name}/"
        tips = [repo.git.references[r].target for r in repo.git.references
                if r.startswith(prefix) and r != f"{prefix}HEAD"]
        on_remote = {oid for oid in left if oid in known}
        if left - on_remote:
            on_remote |= left & history_needs(repo.git, tips)
        out.update(dict.fromkeys(on_remote, remote.name))
    return out
