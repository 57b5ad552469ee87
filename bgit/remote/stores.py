"""Payload store remotes: one interface, two backends (a directory, S3).

Both hold objects in their raw on-disk (compressed) form, keyed like the local store:

    <dir or s3 prefix>/
      ab/                 first two hex digits of the object id
        cdef...           the other 62; bytes exactly as in .git/bgit/objects

A remote store is dumb storage and may be hostile: the sender verifies what it sends
(transfer.upload), the receiving side verifies what arrives (``Store.put_raw``), and reads
are bounded by the size the manifest records (``get(oid, max_bytes)``). An object is only
ever visible complete (directory: temp file + rename + directory fsync; S3: PUT is atomic).
"""

from __future__ import annotations

import os
import re
import uuid
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

from bgit.store.writers import link_or_copy
from bgit.util.files import fsync_dir, write_atomic

from .config import check_store_url, local_path
from .errors import BadUrlError, RemoteError

OID_RE = re.compile(r"[0-9a-f]{64}\Z")


class StoreRemoteError(RemoteError):
    """The payload store failed in a way that is not about one object (I/O, access)."""


class StoreUnreachableError(RemoteError):
    """Raised by a backend; the caller names the remote (RemoteUnreachableError)."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(f"cannot reach payload store {url}: {reason}")
        self.url, self.reason = url, reason


class ObjectAbsentError(RemoteError):
    def __init__(self, oid: str) -> None:
        super().__init__(f"object {oid} is not on the remote store")
        self.oid = oid


class ObjectTooLargeError(RemoteError):
    """The remote holds more bytes for an object than its recorded size allows."""

    def __init__(self, oid: str, max_bytes: int) -> None:
        super().__init__(f"object {oid} on the remote store is larger than {max_bytes} bytes")
        self.oid, self.max_bytes = oid, max_bytes


def check_oid(oid: str) -> str:
    if not isinstance(oid, str) or not OID_RE.match(oid):
        raise RemoteError(f"invalid object id {str(oid)[:80]!r}")
    return oid


class StoreRemote(ABC):
    """Where a remote keeps payload objects. Implementations must be thread-safe."""

    url: str

    @abstractmethod
    def has_many(self, oids: Iterable[str]) -> set[str]:
        """The subset of ``oids`` the remote holds (one batched question)."""

    @abstractmethod
    def put(self, oid: str, raw: bytes) -> None:
        """Store the raw form of ``oid``; atomic, idempotent."""

    @abstractmethod
    def get(self, oid: str, max_bytes: int | None = None) -> bytes:
        """The raw form of ``oid``; ObjectAbsentError if it is not there. Unverified.
        ObjectTooLargeError, before reading it all, when it holds more than ``max_bytes``."""

    @abstractmethod
    def list(self) -> Iterator[str]:
        """Every object id on the remote."""

    def check(self) -> None:
        """Raise (StoreRemoteError / RemoteUnreachableError) unless the store is usable."""


class DirectoryStoreRemote(StoreRemote):
    def __init__(self, root, create: bool = False) -> None:
        self.root = Path(root)
        self.url = str(self.root)
        self._create = create

    def _path(self, oid: str) -> Path:
        check_oid(oid)
        return self.root / oid[:2] / oid[2:]

    def check(self) -> None:
        if self._create:
            self.root.mkdir(parents=True, exist_ok=True)
        if not self.root.is_dir():
            raise StoreRemoteError(f"payload store directory {self.root} does not exist")

    def has_many(self, oids):
        return {oid for oid in oids if self._path(oid).is_file()}

    def put(self, oid, raw):
        path = self._path(oid)
        if path.is_file():
            return
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, raw)  # durable: the refs that will point at it move after this
        except OSError as e:
            raise StoreRemoteError(f"cannot write to payload store {self.root}: {e.strerror or e}") from None

    def put_from_file(self, oid: str, source) -> int:
        """Fast path for a local source file: a hard link on the same filesystem, else a
        kernel-side copy (so not bgit.util.files.atomic_writer, which writes through Python
        buffers); returns the bytes it holds. The caller has verified ``source``."""
        path = self._path(oid)
        if path.is_file():
            return 0
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # The temp name never matches an object id, so list() and readers never see it.
            tmp = path.parent / f".tmp-{os.getpid()}-{uuid.uuid4().hex}"
            try:
                link_or_copy(source, tmp)
                with open(tmp, "rb") as f:
                    os.fsync(f.fileno())  # the refs that will point at it move after this
                    size = os.fstat(f.fileno()).st_size
                os.replace(tmp, path)
            finally:
                tmp.unlink(missing_ok=True)
            fsync_dir(path.parent)
            return size
        except OSError as e:
            raise StoreRemoteError(f"cannot write to payload store {self.root}: {e.strerror or e}") from None

    def get(self, oid, max_bytes=None):
        try:
            with open(self._path(oid), "rb") as f:
                if max_bytes is None:
                    return f.read()
                if os.fstat(f.fileno()).st_size > max_bytes:
                    raise ObjectTooLargeError(oid, max_bytes)
                raw = f.read(max_bytes + 1)  # the file may grow after fstat
                if len(raw) > max_bytes:
                    raise ObjectTooLargeError(oid, max_bytes)
                return raw
        except FileNotFoundError:
            raise ObjectAbsentError(oid) from None
        except OSError as e:
            raise StoreRemoteError(f"cannot read payload store {self.root}: {e.strerror or e}") from None

    def list(self):
        if not self.root.is_dir():
            return
        for fan in sorted(os.listdir(self.root)):
            if len(fan) != 2 or not (self.root / fan).is_dir():
                continue
            for rest in sorted(os.listdir(self.root / fan)):
                if OID_RE.match(fan + rest):
                    yield fan + rest


def open_store_remote(url: str, create: bool = False) -> StoreRemote:
    """A directory path / file:// URL or ``s3://bucket/prefix`` (never with credentials)."""
    check_store_url(url)
    if url.startswith("s3://"):
        from .s3 import S3StoreRemote  # boto3 is optional and slow to import

        return S3StoreRemote(url)
    path = local_path(url)
    if path is None:
        raise BadUrlError(url, "a payload store is a directory or s3://BUCKET/PREFIX")
    return DirectoryStoreRemote(path, create=create)


def has_many_batched(remote: StoreRemote, oids: list[str], batch: int = 1000, workers: int = 4) -> set[str]:
    """Ask about ``oids`` in batches of ``batch``, a few batches at a time."""
    batches = [oids[i:i + batch] for i in range(0, len(oids), batch)]
    if len(batches) <= 1:
        return remote.has_many(oids) if oids else set()
    with ThreadPoolExecutor(workers) as pool:
        found = set()
        for part in pool.map(remote.has_many, batches):
            found |= part
        return found
