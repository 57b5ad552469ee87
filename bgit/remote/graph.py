"""The commit graph over git (pygit2): list, fetch and push refs on a git remote.

The same code serves a local path, file://, git://, ssh and https. Credentials come from
the ssh agent, or from ``BGIT_GIT_USERNAME`` / ``BGIT_GIT_PASSWORD`` in the environment;
nothing is written into the repository.
"""

from __future__ import annotations

import os

import pygit2

from .config import RemoteConfig, local_path, redact_url
from .errors import PushRejectedError, RemoteError, RemoteUnreachableError


class Callbacks(pygit2.RemoteCallbacks):
    """Credentials from the agent/environment; records the server's per-ref verdicts."""

    def __init__(self) -> None:
        super().__init__()
        self.rejected: dict[str, str] = {}
        self._tries = 0

    def credentials(self, url, username_from_url, allowed_types):
        self._tries += 1
        if self._tries > 3:  # libgit2 asks again after each refusal; stop the loop
            raise RemoteError(f"authentication failed for {redact_url(url)}")
        user = username_from_url or os.environ.get("BGIT_GIT_USERNAME") or "git"
        if allowed_types & pygit2.enums.CredentialType.SSH_KEY:
            return pygit2.KeypairFromAgent(user)
        password = os.environ.get("BGIT_GIT_PASSWORD")
        if allowed_types & pygit2.enums.CredentialType.USERPASS_PLAINTEXT and password:
            return pygit2.UserPass(user, password)
        raise RemoteError(f"no credentials for {redact_url(url)} (use an ssh agent or set "
                          f"BGIT_GIT_USERNAME / BGIT_GIT_PASSWORD)")

    def push_update_reference(self, refname, message):
        if message:
            self.rejected[refname] = message


def _unreachable(remote: RemoteConfig, error: Exception) -> RemoteUnreachableError:
    return RemoteUnreachableError(remote.name, remote.url, str(error).strip() or type(error).__name__)


def check_local_exists(remote: RemoteConfig) -> None:
    path = local_path(remote.url)
    if path is not None and not path.exists():
        raise RemoteUnreachableError(remote.name, remote.url, "no repository at that path")


def list_heads(git: pygit2.Repository, remote: RemoteConfig, for_push: bool = False) -> dict[str, str]:
    """ref name -> commit id on the remote, plus 'HEAD' -> its symbolic target if advertised."""
    check_local_exists(remote)
    handle = git.remotes[remote.name]
    direction = 1 if for_push else 0  # GIT_DIRECTION_PUSH / _FETCH (no pygit2 enum for these)
    try:
        handle.connect(callbacks=Callbacks(), direction=direction)
        heads = handle.list_heads(connect=False)
    except pygit2.GitError as e:
        raise _unreachable(remote, e) from None
    out = {}
    for head in heads:
        if head.name == "HEAD" and head.symref_target:
            out["HEAD"] = head.symref_target
        elif not head.name.endswith("^{}"):
            out[head.name] = str(head.oid)
    return out


def fetch(git: pygit2.Repository, remote: RemoteConfig) -> None:
    """Branches into refs/remotes/<name>/*, tags into refs/tags/* (git's defaults)."""
    check_local_exists(remote)
    specs = [f"+refs/heads/*:refs/remotes/{remote.name}/*", "refs/tags/*:refs/tags/*"]
    try:
        git.remotes[remote.name].fetch(specs, callbacks=Callbacks(), prune=pygit2.enums.FetchPrune.PRUNE)
    except pygit2.GitError as e:
        raise _unreachable(remote, e) from None


def push(git: pygit2.Repository, remote: RemoteConfig, refs: list[str]) -> None:
    """Update ``refs`` (same names on both sides) without force.

    git itself gives compare-and-swap: libgit2 refuses a non-fast-forward against the refs
    the server advertised, and the server applies each update only if the ref still holds
    the advertised old value.
    """
    callbacks = Callbacks()
    try:
        git.remotes[remote.name].push([f"{ref}:{ref}" for ref in refs], callbacks=callbacks)
    except pygit2.GitError as e:
        text = str(e)
        if "non-fastforward" in text or "fastforwardable" in text or "not present locally" in text:
            raise PushRejectedError(remote.name, _short(refs[0]) if len(refs) == 1 else "a ref",
                                    "is not a fast-forward (fetch and pull first)") from None
        raise _unreachable(remote, e) from None
    for ref, why in callbacks.rejected.items():
        raise PushRejectedError(remote.name, _short(ref), f"was refused by the remote ({why})")


def _short(ref: str) -> str:
    for prefix in ("refs/heads/", "refs/tags/"):
        if ref.startswith(prefix):
            return ref[len(prefix):]
    return ref
