"""Remotes: the commit graph over git (pygit2), payload objects over a store remote
(a directory or S3), objects always uploaded before refs move.

    from bgit.remote import add_remote, push, fetch, pull, clone, fetch_missing

Layout this package adds under ``.git/bgit/``::

    .git/bgit/remotes/<name>/known   object ids known to be on the remote's store
    .git/bgit/pack-indexes/          copies of the remote pack indexes read (by name)

A store remote holds big objects loose and small ones in packs (:mod:`bgit.remote.packs`).
"""

from .config import (RemoteConfig, add_remote, get_remote, list_remotes, remove_remote,
                     store_url_of)
from .errors import (BadUrlError, DivergedError, NoRemoteError, NoStoreError, PushObjectError,
                     PushRejectedError, RemoteError, RemoteObjectCorruptError,
                     RemoteObjectMissingError, RemoteUnreachableError, UnknownRemoteError)
from .fsck import fsck
from .ops import (FetchResult, PullResult, PushResult, clone, default_remote, fetch,
                  fetch_missing, fetch_objects, install_fetcher, pull, push)
from .stores import DirectoryStoreRemote, StoreRemote, open_store_remote
from .transfer import TransferResult

__all__ = ["RemoteConfig", "add_remote", "get_remote", "list_remotes", "remove_remote",
           "store_url_of", "BadUrlError", "DivergedError", "NoRemoteError", "NoStoreError",
           "PushObjectError", "PushRejectedError", "RemoteError", "RemoteObjectCorruptError",
           "RemoteObjectMissingError", "RemoteUnreachableError", "UnknownRemoteError",
           "FetchResult", "PullResult", "PushResult", "clone", "default_remote", "fetch", "fsck",
           "fetch_missing", "fetch_objects", "install_fetcher", "pull", "push",
           "DirectoryStoreRemote", "StoreRemote", "open_store_remote", "TransferResult"]
