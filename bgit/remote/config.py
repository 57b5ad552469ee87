"""Remote configuration, kept in ``.git/config`` so that plain git sees the remote too:

    [remote "origin"]
        url = /srv/models.git                      # what git uses for the commit graph
        fetch = +refs/heads/*:refs/remotes/origin/*
        bgitstore = s3://bucket/prefix             # optional: where payload objects go

Without ``bgitstore`` a local-path remote keeps payloads next to its git data
(see :func:`default_store_url`); other remotes then have no payload store.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pygit2

from .errors import BadUrlError, RemoteExistsError, UnknownRemoteError

STORE_KEY = "bgitstore"
BARE_STORE_DIR = "bgit-objects"
_SCHEME_RE = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_SCP_RE = re.compile(r"^[^/:]+@[^/:]+:")  # user@host:path (ssh, scp-like)


@dataclass(frozen=True)
class RemoteConfig:
    name: str
    url: str
    store_url: str | None  # as configured; None = derived from url (see store_url_of)

    def to_json(self) -> dict:
        return {"name": self.name, "url": self.url, "store": store_url_of(self)}


def local_path(url: str) -> Path | None:
    """The filesystem path of a path or file:// URL, else None."""
    if url.startswith("file://"):
        return Path(unquote(urlsplit(url).path))
    if _SCHEME_RE.match(url) or _SCP_RE.match(url):
        return None
    return Path(url).expanduser()


def redact_url(url: str) -> str:
    """``url`` fit for a message: a password (or, for S3, any user part) becomes ***."""
    if not _SCHEME_RE.match(url or "") or "@" not in url:
        return url
    try:
        parts = urlsplit(url)
        secret = parts.password is not None or (parts.scheme == "s3" and parts.username is not None)
    except ValueError:
        return url.split("://", 1)[0] + "://***"
    if not secret:
        return url
    host = parts.netloc.rsplit("@", 1)[1]
    user = "***" if parts.scheme == "s3" else f"{parts.username}:***"
    return parts._replace(netloc=f"{user}@{host}").geturl()


def check_url(url: str) -> str:
    if not url or "\n" in url:
        raise BadUrlError(url, "empty or multi-line")
    if _SCHEME_RE.match(url) and not url.startswith("file://"):
        parts = urlsplit(url)
        if parts.password:
            raise BadUrlError(url, "a password in the URL would be written into .git/config; "
                                   "use an ssh agent, a credential helper or BGIT_GIT_PASSWORD")
        if parts.scheme not in ("git", "ssh", "http", "https", "s3"):
            raise BadUrlError(url, f"unsupported scheme '{parts.scheme}'")
    return url


def check_store_url(store_url: str) -> str:
    """Refuse what must not be written into .git/config: credentials (an S3 URL never
    carries a user part; keys come from the environment or ~/.aws)."""
    if not store_url or "\n" in store_url:
        raise BadUrlError(store_url, "empty or multi-line", what="payload store URL")
    if store_url.startswith("s3://"):
        parts = urlsplit(store_url)
        if parts.username is not None or parts.password is not None:
            raise BadUrlError(store_url, "credentials in the URL would be written into .git/config; "
                                         "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY or use "
                                         "~/.aws instead", what="payload store URL")
        if not parts.hostname:
            raise BadUrlError(store_url, "expected s3://BUCKET[/PREFIX]", what="payload store URL")
    elif _SCHEME_RE.match(store_url) and not store_url.startswith("file://"):
        raise BadUrlError(store_url, "a payload store is a directory or s3://BUCKET/PREFIX",
                          what="payload store URL")
    return store_url


def normalise_url(url: str) -> str:
    """Local paths become absolute, so the config works from any directory."""
    check_url(url)
    path = local_path(url)
    if path is not None and not url.startswith("file://"):
        return str(path.resolve())
    return url


def default_store_url(url: str) -> str | None:
    """Where payloads live for a remote without ``bgitstore``.

    A local bare repository (or a path that does not exist yet, which push creates as a
    bare repository) keeps them in ``<path>/bgit-objects``; a local non-bare bgit
    repository in its own store, ``<path>/.git/bgit/objects``. Network remotes have none.
    """
    path = local_path(url)
    if path is None:
        return None
    if (path / ".git" / "bgit").is_dir():
        return str(path / ".git" / "bgit" / "objects")
    return str(path / BARE_STORE_DIR)


def store_url_of(remote: RemoteConfig) -> str | None:
    return remote.store_url or default_store_url(remote.url)


def add_remote(git: pygit2.Repository, name: str, url: str, store_url: str | None = None) -> RemoteConfig:
    if name in git.remotes.names():
        raise RemoteExistsError(name)
    url = normalise_url(url)
    if store_url is not None:
        store_url = normalise_store_url(store_url)
    try:
        git.remotes.create(name, url)
    except ValueError as e:
        raise BadUrlError(url, str(e).splitlines()[0]) from None
    if store_url:
        git.config[f"remote.{name}.{STORE_KEY}"] = store_url
    return RemoteConfig(name, url, store_url)


def normalise_store_url(store_url: str) -> str:
    check_store_url(store_url)
    if store_url.startswith("s3://"):
        return store_url.rstrip("/")
    return str(local_path(store_url).resolve())


def get_remote(git: pygit2.Repository, name: str) -> RemoteConfig:
    if name not in git.remotes.names():
        raise UnknownRemoteError(name)
    store = git.config[f"remote.{name}.{STORE_KEY}"] if f"remote.{name}.{STORE_KEY}" in git.config else None
    return RemoteConfig(name, git.remotes[name].url, store)


def list_remotes(git: pygit2.Repository) -> list[RemoteConfig]:
    return [get_remote(git, name) for name in sorted(git.remotes.names())]


def remove_remote(git: pygit2.Repository, name: str) -> None:
    if name not in git.remotes.names():
        raise UnknownRemoteError(name)
    key = f"remote.{name}.{STORE_KEY}"
    if key in git.config:
        del git.config[key]
    git.remotes.delete(name)  # also drops its remote-tracking refs
