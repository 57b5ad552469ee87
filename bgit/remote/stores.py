"""Payload store remotes: one interface, two backends (a directory, S3).

Both hold objects in their raw on-disk (compressed) form, keyed like the local store, small
ones bundled in packs (see :mod:`bgit.remote.packs`):

    <dir or s3 prefix>/
      ab/                 first two hex digits of the object id
        cdef...           the other 62; bytes exactly as in .git/bgit/objects
      packs/
        pack-<id>.pack    many objects' bytes, one after another
        pack-<id>.idx     where each one is

A remote store is dumb storage and may be hostile: the sender verifies what it sends
(transfer.upload), the receiving side verifies what arrives (``Store.put_raw``), and reads
are bounded by the size the manifest records (``get(oid, max_bytes)``). An object is only
ever visible complete (directory: temp file + rename + directory fsync; S3: PUT is atomic;
a pack: its index is written after its data).
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

from bgit.store.writers import link_or_copy
from bgit.util.files import fsync_dir, write_atomic

from .config import check_store_url, local_path
from .errors import BadUrlError, RemoteError
from .packs import (MAX_INDEX_BYTES, NAME_RE, PACK_DIR, CorruptPackIndexError, Pack, PackEntry,
                    build_pack, parse_index)

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


class FileAbsentError(RemoteError):
    """A backend's file (a pack's data) is not there."""


class StoreRemote(ABC):
    """Where a remote keeps payload objects, loose or in packs. Implementations must be
    thread-safe; a backend provides loose objects and plain files, this class the packs."""

    url: str

    def __init__(self) -> None:
        self._packs: dict[str, PackEntry] | None = None
        self._pack_names: set[str] = set()
        self._packs_lock = threading.Lock()
        # Where to keep copies of the pack indexes read (a repository's .git/bgit/pack-indexes):
        # an index never changes under its name, so each is read from the remote once.
        self.index_cache: Path | None = None

    # -- what a backend provides -----------------------------------------------------------

    @abstractmethod
    def _has_loose(self, oids: list[str]) -> set[str]:
        """The subset of ``oids`` held as loose objects."""

    @abstractmethod
    def _get_loose(self, oid: str, max_bytes: int | None) -> bytes:
        """As :meth:`get`, for a loose object."""

    @abstractmethod
    def _list_loose(self) -> Iterator[str]:
        """Every loose object id."""

    @abstractmethod
    def _list_files(self, folder: str) -> list[str]:
        """The names of the files in ``folder`` (relative to the store's root)."""

    @abstractmethod
    def _read_file(self, path: str, offset: int, length: int) -> bytes:
        """At most ``length`` bytes of file ``path`` from ``offset`` (fewer at its end);
        FileAbsentError when there is no such file."""

    @abstractmethod
    def _write_file(self, path: str, data: bytes) -> None:
        """Write file ``path`` atomically and durably."""

    def check(self) -> None:
        """Raise (StoreRemoteError / RemoteUnreachableError) unless the store is usable."""

    # -- the interface ---------------------------------------------------------------------

    def put(self, oid: str, raw: bytes) -> None:
        """Store the raw form of ``oid`` as a loose object; atomic, idempotent."""
        self._write_file(f"{check_oid(oid)[:2]}/{oid[2:]}", raw)

    def has_many(self, oids: Iterable[str]) -> set[str]:
        """The subset of ``oids`` the remote holds (one batched question), its packs as last
        read (:meth:`packed`; :func:`has_many_batched` reads them again first)."""
        oids = [check_oid(oid) for oid in oids]
        packed = self.packed()
        found = {oid for oid in oids if oid in packed}
        rest = [oid for oid in oids if oid not in found]
        return found | (self._has_loose(rest) if rest else set())

    def get(self, oid: str, max_bytes: int | None = None) -> bytes:
        """The raw form of ``oid``; ObjectAbsentError if it is not there. Unverified.
        ObjectTooLargeError, before reading it all, when it holds more than ``max_bytes``."""
        entry = self.packed().get(check_oid(oid))
        if entry is None:
            try:
                return self._get_loose(oid, max_bytes)
            except ObjectAbsentError:
                entry = self.packed(refresh=True).get(oid)  # packed since the indexes were read?
                if entry is None:
                    raise
        if max_bytes is not None and entry.length > max_bytes:
            raise ObjectTooLargeError(oid, max_bytes)
        try:
            return self.read_pack(entry.pack, entry.offset, entry.length)
        except FileAbsentError:
            raise ObjectAbsentError(oid) from None

    def list(self) -> Iterator[str]:
        """Every object id on the remote, each once."""
        yield from sorted(set(self._list_loose()) | set(self.packed(refresh=True)))

    def packed(self, refresh: bool = False) -> dict[str, PackEntry]:
        """object id -> where it is in a pack, for every pack on the remote. The indexes
        are read once (a pack never changes under its name); ``refresh`` lists the packs
        again and reads the new ones. A CorruptPackIndexError names a bad index."""
        with self._packs_lock:
            if self._packs is None or refresh:
                names = sorted(f[:-len(".idx")] for f in self._list_files(PACK_DIR)
                               if f.endswith(".idx") and NAME_RE.match(f[:-len(".idx")]))
                new = [name for name in names if name not in self._pack_names]
                packs = dict(self._packs or {})
                with ThreadPoolExecutor(min(8, max(1, len(new)))) as pool:
                    for entries in pool.map(self._read_index, new):
                        for oid, entry in entries.items():
                            packs.setdefault(oid, entry)
                self._pack_names.update(new)
                self._packs = packs
            return self._packs

    def _read_index(self, name: str) -> dict[str, PackEntry]:
        if self.index_cache is not None:
            try:
                with open(self.index_cache / f"{name}.idx", "rb") as f:
                    return parse_index(self.url, name, f.read(MAX_INDEX_BYTES + 1))
            except (OSError, CorruptPackIndexError):
                pass  # not cached, or the copy is damaged: the remote's is the truth
        try:
            data = self._read_file(f"{PACK_DIR}/{name}.idx", 0, MAX_INDEX_BYTES + 1)
        except FileAbsentError:
            return {}  # removed since it was listed
        entries = parse_index(self.url, name, data)
        self._cache_index(name, data)
        return entries

    def _cache_index(self, name: str, data: bytes) -> None:
        if self.index_cache is None:
            return
        try:
            self.index_cache.mkdir(parents=True, exist_ok=True)
            write_atomic(self.index_cache / f"{name}.idx", data, durable=False)
        except OSError:
            pass  # a cache that cannot be written costs a read next time, nothing else

    def put_pack(self, objects: list[tuple[str, bytes]]) -> Pack:
        """Store ``objects`` ((oid, raw form) pairs) as one pack: its data, then its index."""
        for oid, _ in objects:
            check_oid(oid)
        pack = build_pack(objects)
        self._write_file(f"{PACK_DIR}/{pack.name}.pack", pack.data)
        self._write_file(f"{PACK_DIR}/{pack.name}.idx", pack.index)
        self._cache_index(pack.name, pack.index)
        with self._packs_lock:
            if self._packs is not None:
                self._pack_names.add(pack.name)
                self._packs = {**pack.entries, **self._packs}
        return pack

    def read_pack(self, name: str, offset: int, length: int) -> bytes:
        """``length`` bytes of pack ``name`` from ``offset`` (fewer if the pack is short)."""
        if not NAME_RE.match(name):
            raise RemoteError(f"invalid pack name {name[:80]!r}")
        return self._read_file(f"{PACK_DIR}/{name}.pack", offset, length)



class DirectoryStoreRemote(StoreRemote):
    def __init__(self, root, create: bool = False) -> None:
        super().__init__()
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

    def _has_loose(self, oids):
        return {oid for oid in oids if self._path(oid).is_file()}

    def put(self, oid, raw):
        if not self._path(oid).is_file():
            super().put(oid, raw)

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

    def _get_loose(self, oid, max_bytes):
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

    def _list_loose(self):
        if not self.root.is_dir():
            return
        for fan in sorted(os.listdir(self.root)):
            if len(fan) != 2 or not (self.root / fan).is_dir():
                continue
            for rest in sorted(os.listdir(self.root / fan)):
                if OID_RE.match(fan + rest):
                    yield fan + rest

    def _list_files(self, folder):
        try:
            return sorted(os.listdir(self.root / folder))
        except FileNotFoundError:
            return []
        except OSError as e:
            raise StoreRemoteError(f"cannot read payload store {self.root}: {e.strerror or e}") from None

    def _read_file(self, path, offset, length):
        try:
            with open(self.root / path, "rb") as f:
                f.seek(offset)
                return f.read(length)
        except FileNotFoundError:
            raise FileAbsentError(f"{path} is not on payload store {self.root}") from None
        except OSError as e:
            raise StoreRemoteError(f"cannot read payload store {self.root}: {e.strerror or e}") from None

    def _write_file(self, path, data):
        try:
            (self.root / path).parent.mkdir(parents=True, exist_ok=True)
            write_atomic(self.root / path, data)  # durable: refs that need it move after this
        except OSError as e:
            raise StoreRemoteError(f"cannot write to payload store {self.root}: {e.strerror or e}") from None


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


def has_many_batched(remote: StoreRemote, oids: list[str], batch: int = 1000, workers: int = 4,
                     read_packs: bool = True) -> set[str]:
    """Ask about ``oids`` in batches of ``batch``, a few batches at a time, after reading the
    remote's pack indexes again once (unless ``read_packs`` is False: the caller just did)."""
    if read_packs and oids:
        remote.packed(refresh=True)
    batches = [oids[i:i + batch] for i in range(0, len(oids), batch)]
    if len(batches) <= 1:
        return remote.has_many(oids) if oids else set()
    with ThreadPoolExecutor(workers) as pool:
        found = set()
        for part in pool.map(remote.has_many, batches):
            found |= part
        return found
