"""Errors of the remote layer; every message is one line for a user."""

from __future__ import annotations

from bgit.errors import BgitError


class RemoteError(BgitError):
    """Base of every remote failure."""


class UnknownRemoteError(RemoteError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no such remote '{name}' (see 'bgit remote -v')")
        self.name = name


class RemoteExistsError(RemoteError):
    def __init__(self, name: str) -> None:
        super().__init__(f"remote '{name}' already exists")
        self.name = name


class NoRemoteError(RemoteError):
    def __init__(self) -> None:
        super().__init__("no remote configured (add one with 'bgit remote add origin URL')")


class RemoteUnreachableError(RemoteError):
    def __init__(self, name: str, url: str, reason: str) -> None:
        from .config import redact_url

        reason = " ".join(str(reason).split()) or "unknown error"
        super().__init__(f"cannot reach remote '{name}' ({redact_url(url)}): {reason}")
        self.name, self.url, self.reason = name, url, reason


class PushRejectedError(RemoteError):
    def __init__(self, name: str, ref: str, why: str) -> None:
        super().__init__(f"push to '{name}' rejected: '{ref}' {why}")
        self.name, self.ref, self.why = name, ref, why


class DivergedError(RemoteError):
    def __init__(self, branch: str, upstream: str, local: int, remote: int) -> None:
        super().__init__(
            f"branch '{branch}' has diverged from '{upstream}' ({local} local, {remote} remote "
            f"commits); merge it with 'bgit merge {upstream}' (or 'bgit pull --merge')")
        self.branch, self.upstream, self.local, self.remote = branch, upstream, local, remote


class RemoteObjectCorruptError(RemoteError):
    def __init__(self, oid: str, name: str, reason: str = "hash mismatch") -> None:
        super().__init__(f"object {oid} from '{name}' is corrupt ({reason}); not stored")
        self.oid, self.name, self.reason = oid, name, reason


class PushObjectError(RemoteError):
    """push found a local object it must send missing or corrupt; nothing moved on the remote."""

    def __init__(self, oid: str, name: str, problem: str, files: list[str]) -> None:
        needed = f"; needed by {', '.join(files)}" if files else ""
        super().__init__(f"cannot push to '{name}': local object {oid} {problem}{needed}; "
                         f"no ref was updated")
        self.oid, self.name, self.problem, self.files = oid, name, problem, files


class RemoteObjectMissingError(RemoteError):
    def __init__(self, oid: str, name: str) -> None:
        super().__init__(f"object {oid} is missing from the store of remote '{name}'")
        self.oid, self.name = oid, name


class NoStoreError(RemoteError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"remote '{name}' has no payload store; remove it and add it again with "
            f"--store DIR or --store s3://BUCKET/PREFIX")
        self.name = name


class BadUrlError(RemoteError):
    def __init__(self, url: str, why: str, what: str = "remote URL") -> None:
        from .config import redact_url

        shown = redact_url(url)  # the message may be logged: never echo a secret
        super().__init__(f"invalid {what} '{shown}': {why}")
        self.url, self.why = shown, why


class NoUpstreamError(RemoteError):
    def __init__(self, branch: str) -> None:
        super().__init__(
            f"branch '{branch}' has no upstream on any remote (push it with 'bgit push')")
        self.branch = branch
