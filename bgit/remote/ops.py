"""push, fetch, pull, clone and lazy payload fetching: the graph over git, payloads over a
store remote, objects always before refs."""

from __future__ import annotations

import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pygit2

from bgit.repo import Repository
from bgit.repo.errors import NoCommitsError
from bgit.store.errors import CorruptObjectError, ObjectNotFoundError
from bgit.util.progress import SILENT, Reporter

from . import graph
from .config import (RemoteConfig, add_remote, check_store_url, get_remote, local_path,
                     normalise_url, store_url_of)
from .errors import (DivergedError, NoRemoteError, NoStoreError, NoUpstreamError,
                     PushObjectError, PushRejectedError, RemoteUnreachableError,
                     UnknownRemoteError)
from .known import KnownObjects
from .needs import (commit_needs, files_needing, new_commits, object_sizes, peel_commit,
                    push_needs)
from .stores import StoreRemote, StoreUnreachableError, has_many_batched, open_store_remote
from .transfer import LOOSE_MIN, WORKERS, TransferResult, download, upload


@dataclass
class PushResult:
    remote: str
    updated: list[tuple[str, str | None, str]] = field(default_factory=list)  # ref, old, new
    up_to_date: list[str] = field(default_factory=list)
    objects_checked: int = 0     # object ids asked about (has_many)
    transfer: TransferResult = field(default_factory=TransferResult)
    created_remote: bool = False

    def to_json(self) -> dict:
        return {"remote": self.remote, "created_remote": self.created_remote,
                "updated": [{"ref": r, "old": o, "new": n} for r, o, n in self.updated],
                "up_to_date": self.up_to_date, "objects_checked": self.objects_checked,
                "objects_sent": self.transfer.objects, "bytes_sent": self.transfer.wire_bytes}


@dataclass
class FetchResult:
    remote: str
    updated: list[tuple[str, str | None, str | None]] = field(default_factory=list)
    transfer: TransferResult = field(default_factory=TransferResult)

    def to_json(self) -> dict:
        return {"remote": self.remote,
                "updated": [{"ref": r, "old": o, "new": n} for r, o, n in self.updated],
                "objects_received": self.transfer.objects, "bytes_received": self.transfer.wire_bytes}


@dataclass
class PullResult:
    branch: str
    upstream: str
    old: str | None
    new: str | None
    fetch: FetchResult

    @property
    def fast_forwarded(self) -> bool:
        return self.old != self.new

    def to_json(self) -> dict:
        return {"branch": self.branch, "upstream": self.upstream, "old": self.old, "new": self.new,
                "fast_forwarded": self.fast_forwarded, "fetch": self.fetch.to_json()}


# -- choosing a remote --------------------------------------------------------------------

def upstream_of(git: pygit2.Repository, branch: str) -> tuple[str, str] | None:
    """(remote, remote ref) from branch.<b>.remote / branch.<b>.merge, if set."""
    try:
        return git.config[f"branch.{branch}.remote"], git.config[f"branch.{branch}.merge"]
    except KeyError:
        return None


def default_remote(repo: Repository, name: str | None = None) -> RemoteConfig:
    git = repo.git
    if name:
        return get_remote(git, name)
    branch = repo.current_branch()
    up = upstream_of(git, branch) if branch else None
    if up and up[0] in git.remotes.names():
        return get_remote(git, up[0])
    names = list(git.remotes.names())
    if "origin" in names:
        return get_remote(git, "origin")
    if len(names) == 1:
        return get_remote(git, names[0])
    raise NoRemoteError()


@contextmanager
def _naming(remote: RemoteConfig):
    """Name the remote in an unreachable payload store's error."""
    try:
        yield
    except StoreUnreachableError as e:
        raise RemoteUnreachableError(remote.name, e.url, e.reason) from None


def _open_store(repo: Repository, remote: RemoteConfig, store_remote: StoreRemote | None,
                create: bool) -> StoreRemote:
    if store_remote is None:
        url = store_url_of(remote)
        if url is None:
            raise NoStoreError(remote.name)
        store_remote = open_store_remote(url, create=create)
    store_remote.index_cache = repo.bgit_dir / "pack-indexes"
    return store_remote


def _known(repo: Repository, remote: RemoteConfig, store: StoreRemote) -> KnownObjects:
    return KnownObjects(repo.bgit_dir, remote.name, store.url)


# -- push ---------------------------------------------------------------------------------

def _refs_to_push(repo: Repository, remote: str, branches, all_branches: bool, tags: bool) -> list[str]:
    git = repo.git
    if all_branches:
        refs = [f"refs/heads/{b}" for b in sorted(git.branches.local)]
    elif branches:
        refs = []
        for b in branches:
            if git.branches.local.get(b) is None:
                raise PushRejectedError(remote, b, "is not a local branch")
            refs.append(f"refs/heads/{b}")
    else:
        branch = repo.current_branch()
        if branch is None:
            raise PushRejectedError(remote, "HEAD", "is detached; name a branch to push")
        if repo.head_commit() is None:
            raise NoCommitsError(branch)
        refs = [f"refs/heads/{branch}"]
    if tags:
        refs += sorted(r for r in git.references if r.startswith("refs/tags/"))
    return refs


def _init_bare(remote: RemoteConfig, first_ref: str) -> bool:
    """A path remote that does not exist yet becomes a bare repository (like a server)."""
    path = local_path(remote.url)
    if path is None or path.exists():
        return False
    head = first_ref.removeprefix("refs/heads/") if first_ref.startswith("refs/heads/") else "main"
    pygit2.init_repository(str(path), bare=True, initial_head=head)
    return True


def _commit_of(git: pygit2.Repository, ref: str) -> pygit2.Oid | None:
    """The commit a branch or tag (annotated ones peeled) points at; None for a tag of a
    tree or blob, which needs no payloads."""
    commit = peel_commit(git, git.references[ref].target)
    return commit.id if commit is not None else None


def _run_pre_push(repo: Repository, remote, to_update) -> None:
    """git's pre-push contract: one '<local ref> <local sha> <remote ref> <remote sha>' line per ref."""
    from bgit.repo.hooks import run_hook

    zero = "0" * 40
    lines = "".join(f"{ref} {new} {ref} {old or zero}\n" for ref, old, new in to_update)
    run_hook(repo, "pre-push", {"BGIT_REMOTE": remote.name, "BGIT_REMOTE_URL": remote.url}, stdin=lines)


def push(repo: Repository, remote_name: str | None = None, branches=(), all_branches: bool = False,
         tags: bool = False, reporter: Reporter = SILENT,
         store_remote: StoreRemote | None = None) -> PushResult:
    """Upload the payloads the pushed commits need, then update the remote refs (no force)."""
    git = repo.git
    remote = default_remote(repo, remote_name)
    refs = _refs_to_push(repo, remote.name, branches, all_branches, tags)
    result = PushResult(remote.name)
    if not refs:
        return result
    result.created_remote = _init_bare(remote, refs[0])
    with _naming(remote):
        heads = graph.list_heads(git, remote, for_push=True)
        to_update = []
        for ref in refs:
            new, old = git.references[ref].target, heads.get(ref)
            if old == str(new):
                result.up_to_date.append(ref)
                continue
            _check_fast_forward(git, remote, ref, old, new)
            to_update.append((ref, old, str(new)))
        if not to_update:
            return result
        _run_pre_push(repo, remote, to_update)

        remote_tips = [o for r, o in heads.items() if r != "HEAD"]
        remote_tips += [str(git.references[r].target) for r in git.references
                        if r.startswith(f"refs/remotes/{remote.name}/")
                        and r != f"refs/remotes/{remote.name}/HEAD"]
        tips = [c for c in (_commit_of(git, ref) for ref, _, _ in to_update) if c is not None]
        sizes = push_needs(git, tips, remote_tips)
        if sizes:
            result.objects_checked, result.transfer = _push_objects(
                repo, remote, store_remote, sizes, reporter, lambda: new_commits(git, tips, remote_tips))
        graph.push(git, remote, [ref for ref, _, _ in to_update])
    for ref, old, new in to_update:
        result.updated.append((ref, old, new))
        if ref.startswith("refs/heads/"):
            branch = ref.removeprefix("refs/heads/")
            git.references.create(f"refs/remotes/{remote.name}/{branch}", pygit2.Oid(hex=new), force=True)
            if upstream_of(git, branch) is None:
                git.config[f"branch.{branch}.remote"] = remote.name
                git.config[f"branch.{branch}.merge"] = ref
    return result


def _push_objects(repo, remote, store_remote, sizes, reporter, pushed_commits) -> tuple[int, TransferResult]:
    """Upload what the remote's store lacks of ``sizes``; returns (ids asked about, transfer).
    A missing or corrupt local object stops the push before any ref moves, naming the files
    (among ``pushed_commits()``) that need it."""
    store = _open_store(repo, remote, store_remote, create=True)  # a push creates a directory store
    store.check()
    with _known(repo, remote, store) as known:
        unknown = [oid for oid in sizes if oid not in known]
        # Small objects are looked up in the remote's pack indexes only: one that sits loose
        # there (pushed by a bgit before packs) is sent again in a pack, which costs a few
        # bytes, where asking about each would cost a request per tensor.
        packed = store.packed(refresh=True) if unknown else {}
        present = {oid for oid in unknown if oid in packed}
        present |= has_many_batched(store, [o for o in unknown if sizes[o] >= LOOSE_MIN and o not in present],
                                    read_packs=False)
        known.add(present)
        missing = {oid: sizes[oid] for oid in unknown if oid not in present}
        try:
            transfer = upload(repo.store, store, missing, f"pushing to {remote.name}",
                              reporter, on_done=known.add)
        except (CorruptObjectError, ObjectNotFoundError) as error:
            problem = (f"is corrupt ({error.reason})" if isinstance(error, CorruptObjectError)
                       else "is missing")
            files = files_needing(repo.git, pushed_commits(), error.oid)
            raise PushObjectError(error.oid, remote.name, problem, files) from None
    return len(unknown), transfer


def _check_fast_forward(git, remote, ref, old, new) -> None:
    if old is None:
        return
    name = ref.removeprefix("refs/heads/").removeprefix("refs/tags/")
    if ref.startswith("refs/tags/"):
        raise PushRejectedError(remote.name, name, "already exists on the remote with another target")
    old_oid = pygit2.Oid(hex=old)
    new_commit = git.references[ref].peel(pygit2.Commit).id
    if old_oid not in git or not git.descendant_of(new_commit, old_oid):
        raise PushRejectedError(remote.name, name, "is not a fast-forward (fetch and pull first)")


# -- fetch, lazy payloads -----------------------------------------------------------------

def _tracking(git: pygit2.Repository, remote: str) -> dict[str, str]:
    prefix = f"refs/remotes/{remote}/"
    return {r: str(git.references[r].target) for r in git.references if r.startswith(prefix)}


def fetch(repo: Repository, remote_name: str | None = None, payloads: bool = False,
          reporter: Reporter = SILENT, store_remote: StoreRemote | None = None) -> FetchResult:
    """Bring the remote's commits and manifests (git objects). With ``payloads``, also the
    payload objects the fetched branch tips need (not their whole history)."""
    git = repo.git
    remote = default_remote(repo, remote_name)
    before = _tracking(git, remote.name)
    graph.fetch(git, remote)
    after = _tracking(git, remote.name)
    result = FetchResult(remote.name)
    for ref in sorted(set(before) | set(after)):
        if before.get(ref) != after.get(ref):
            result.updated.append((ref, before.get(ref), after.get(ref)))
    if payloads:
        sizes = {}
        for target in after.values():
            sizes.update(commit_needs(git, target))
        result.transfer = fetch_objects(repo, sizes, remote.name, reporter, store_remote)
    return result


def fetch_objects(repo: Repository, oids, remote_name: str | None = None,
                  reporter: Reporter = SILENT,
                  store_remote: StoreRemote | None = None) -> TransferResult:
    """Download the objects among ``oids`` (ids, or id -> size) the local store lacks.

    Sizes bound what each download may take; ids given without one are looked up in the
    manifests of commits the refs reach (a checkout's fetcher passes bare ids)."""
    sizes = dict(oids) if isinstance(oids, dict) else dict.fromkeys(oids)
    missing = {oid: size for oid, size in sizes.items() if not repo.store.has(oid)}
    if not missing:
        return TransferResult()
    unsized = {oid for oid, size in missing.items() if size is None}
    if unsized:
        missing.update(object_sizes(repo.git, unsized))
    # An id no manifest at hand sizes may take up to MAX_OBJECT_SIZE: one at a time, then.
    workers = 1 if None in missing.values() else WORKERS
    remote = default_remote(repo, remote_name)
    with _naming(remote):
        store = _open_store(repo, remote, store_remote, create=False)
        store.check()
        with _known(repo, remote, store) as known:
            return download(repo.store, store, remote.name, missing, f"fetching from {remote.name}",
                            reporter, on_done=known.add, workers=workers)


def fetch_missing(repo: Repository, commit, remote_name: str | None = None,
                  reporter: Reporter = SILENT, store_remote: StoreRemote | None = None) -> int:
    """Fetch the payload objects ``commit`` (a Commit, id or ref) needs and the local store
    lacks; returns how many were fetched. Each is verified before it is stored."""
    if isinstance(commit, str):
        commit = repo.resolve(commit)
    sizes = commit_needs(repo.git, commit)
    return fetch_objects(repo, sizes, remote_name, reporter, store_remote).objects


def install_fetcher(repo: Repository, remote_name: str | None = None,
                    reporter: Reporter = SILENT) -> None:
    """Let ``repo.checkout`` fetch missing payloads from the remote (lazily, verified).
    Without a usable remote, checkout reports the missing object as before."""

    def fetcher(oids: set[str]) -> None:
        try:
            default_remote(repo, remote_name)
        except (NoRemoteError, UnknownRemoteError):
            return
        fetch_objects(repo, oids, remote_name, reporter)

    repo.object_fetcher = fetcher


# -- pull ---------------------------------------------------------------------------------

def pull(repo: Repository, remote_name: str | None = None, reporter: Reporter = SILENT,
         store_remote: StoreRemote | None = None) -> PullResult:
    """Fetch, then fast-forward the current branch to its upstream; never merges."""
    git = repo.git
    branch = repo.current_branch()
    if branch is None:
        raise NoUpstreamError("HEAD")
    up = upstream_of(git, branch)
    remote = default_remote(repo, remote_name or (up[0] if up else None))
    remote_branch = (up[1] if up and up[0] == remote.name else f"refs/heads/{branch}").removeprefix("refs/heads/")
    fetched = fetch(repo, remote.name)
    tracking = f"refs/remotes/{remote.name}/{remote_branch}"
    upstream_name = f"{remote.name}/{remote_branch}"
    if tracking not in git.references:
        raise NoUpstreamError(branch)
    theirs = git.references[tracking].peel(pygit2.Commit).id
    head = repo.head_commit()
    ours = head.id if head is not None else None
    result = PullResult(branch, upstream_name, str(ours) if ours else None, str(ours) if ours else None, fetched)
    if ours == theirs or (ours is not None and git.descendant_of(ours, theirs)):
        return result  # up to date, or only ahead
    if ours is not None and not git.descendant_of(theirs, ours):
        ahead, behind = git.ahead_behind(ours, theirs)
        raise DivergedError(branch, upstream_name, ahead, behind)
    _fast_forward(repo, branch, ours, theirs, remote.name, reporter, store_remote)
    result.new = str(theirs)
    return result


def _fast_forward(repo, branch, ours, theirs, remote_name, reporter, store_remote) -> None:
    """Check out ``theirs`` (fetching payloads), then move the branch if it still is at ``ours``."""
    git = repo.git
    with repo.lock("bgit pull"):
        fetch_missing(repo, git[theirs], remote_name, reporter, store_remote)
        repo.checkout(str(theirs), force=ours is None)
        ref = f"refs/heads/{branch}"
        with git.transaction() as txn:
            txn.lock_ref(ref)
            current = git.references.get(ref)
            if (current.target if current is not None else None) not in (ours, theirs):
                raise DivergedError(branch, f"{remote_name}/{branch}", 1, 1)
            txn.set_target(ref, theirs, message=f"pull: fast-forward to {str(theirs)[:8]}")
        git.set_head(ref)


# -- clone --------------------------------------------------------------------------------

def default_clone_dir(url: str) -> str:
    name = url.rstrip("/").rsplit("/", 1)[-1].rsplit(":", 1)[-1]
    name = name.removesuffix(".git") or "repo"
    return name


def clone(url: str, directory=None, store_url: str | None = None, checkout: bool = True,
          reporter: Reporter = SILENT, store_remote: StoreRemote | None = None) -> Repository:
    """A new repository with remote 'origin': the whole graph, then the default branch
    checked out with only the payloads it needs."""
    normalise_url(url)  # refuse a bad URL or credentials before anything is created
    if store_url is not None:
        check_store_url(store_url)
    target = Path(directory if directory is not None else default_clone_dir(url))
    existed = target.exists()
    if existed and any(target.iterdir()):
        from .errors import RemoteError
        raise RemoteError(f"destination path '{target}' already exists and is not empty")
    repo = None
    try:
        repo = Repository.init(target)
        remote = add_remote(repo.git, "origin", url, store_url)
        heads = graph.list_heads(repo.git, remote)
        fetch(repo, "origin")
        branch = _default_branch(heads)
        if branch is not None and checkout:
            tip = repo.git.references[f"refs/remotes/origin/{branch}"].target
            repo.git.branches.local.create(branch, repo.git[tip])
            repo.git.config[f"branch.{branch}.remote"] = "origin"
            repo.git.config[f"branch.{branch}.merge"] = f"refs/heads/{branch}"
            repo.git.set_head(f"refs/heads/{branch}")
            fetch_missing(repo, repo.git[tip], "origin", reporter, store_remote)
            repo.checkout(branch, force=True)
        return repo
    except BaseException:
        if repo is not None or not existed:
            shutil.rmtree(target, ignore_errors=True) if not existed else _empty(target)
        raise


def _empty(directory: Path) -> None:
    for child in directory.iterdir():
        shutil.rmtree(child, ignore_errors=True) if child.is_dir() else child.unlink(missing_ok=True)


def _default_branch(heads: dict[str, str]) -> str | None:
    head = heads.get("HEAD")
    if head and head.startswith("refs/heads/") and head in heads:
        return head.removeprefix("refs/heads/")
    branches = [r.removeprefix("refs/heads/") for r in heads if r.startswith("refs/heads/")]
    for preferred in ("main", "master"):
        if preferred in branches:
            return preferred
    return sorted(branches)[0] if branches else None
