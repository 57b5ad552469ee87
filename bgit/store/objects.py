"""The object database: put/get verified, compressed, content-addressed objects."""

import errno
import os
import re
import uuid
from pathlib import Path
from typing import Iterator

import blake3

from bgit.util.files import fsync_dir, hash_bytes  # noqa: F401 (hash_bytes: part of the store API)

from . import codecs, reads, writers
from .errors import (CorruptObjectError, InvalidObjectIdError, ObjectNotFoundError,
                     StoreNotFoundError)

OID_RE = re.compile(r"[0-9a-f]{64}\Z")
# Objects this big skip the page cache (O_DIRECT): write-back of large files costs more
# CPU here than compressing them. Small ones stay buffered (O_DIRECT pads to 4 KiB).
DIRECT_OBJECT_MIN = 1 << 20


def check_oid(oid) -> str:
    if not isinstance(oid, str) or not OID_RE.match(oid):
        raise InvalidObjectIdError(oid)
    return oid


def _unlink_quietly(path) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


class ObjectStore:
    """Objects under ``root/objects``; see the package docstring for the layout."""

    def __init__(self, root):
        self.root = Path(root)
        self.objects_dir = self.root / "objects"
        self.tmp_dir = self.root / "tmp"
        self._direct_ok = True
        self._reader = reads.ObjectReader()
        if not self.objects_dir.is_dir():
            raise StoreNotFoundError(self.root)

    @classmethod
    def init(cls, root):
        root = Path(root)
        (root / "objects").mkdir(parents=True, exist_ok=True)
        (root / "tmp").mkdir(exist_ok=True)
        return cls(root)

    def object_path(self, oid: str) -> Path:
        check_oid(oid)
        return self.objects_dir / oid[:2] / oid[2:]

    def has(self, oid: str) -> bool:
        return self.object_path(oid).is_file()

    def iter_object_ids(self) -> Iterator[str]:
        for fan in sorted(os.listdir(self.objects_dir)):
            if len(fan) != 2:
                continue
            sub = self.objects_dir / fan
            if not sub.is_dir():
                continue
            for rest in sorted(os.listdir(sub)):
                oid = fan + rest
                if OID_RE.match(oid):
                    yield oid

    # -- writing ---------------------------------------------------------------------------

    def put_bytes(self, data, group: int = 1) -> str:
        """Store ``data`` (any buffer); returns its id. ``group`` = tensor element width."""
        oid = hash_bytes(data)
        self._put_encoded(oid, lambda: codecs.encode_parts(data, group), sync_dir=True)
        return oid

    def put_raw(self, oid: str, raw: bytes, size: int | None = None) -> None:
        """Store an object in its on-disk form (from a remote) after checking it decodes to
        ``oid``. ``size`` = the uncompressed size the manifest records: a header claiming
        anything else is refused before any memory is allocated for it."""
        check_oid(oid)
        data = codecs.decode(raw, oid, size)
        if hash_bytes(data) != oid:
            raise CorruptObjectError(oid)
        self._put_encoded(oid, lambda: (raw,), sync_dir=True)

    def _put_encoded(self, oid: str, make_raw, sync_dir: bool, syncer=None):
        """Write an object atomically unless present; ``make_raw()`` returns the buffers
        of its on-disk form.

        Returns None when the object already existed, else the fan-out dir written into
        or, with a ``syncer`` (files._Syncer), a future of it: fsync + rename (and for
        large objects the write too) then run there, so the disk's latency overlaps with
        compression and many fsyncs overlap.
        """
        path = self.object_path(oid)
        if path.exists():
            # Refresh the mtime so a concurrent gc's grace period protects a re-used object.
            try:
                os.utime(path)
            except OSError:
                pass
            return None
        buffers = make_raw()
        path.parent.mkdir(exist_ok=True)
        if syncer is not None and sum(memoryview(b).nbytes for b in buffers) >= DIRECT_OBJECT_MIN:
            # An O_DIRECT write waits on the disk: the syncer waits, not the compressor.
            return syncer.submit(lambda: self._commit_tmp(self._write_tmp(buffers), path), holds_data=True)
        tmp = self._write_tmp(buffers)
        if syncer is not None:
            return syncer.submit(lambda: self._commit_tmp(tmp, path))
        self._commit_tmp(tmp, path)
        if sync_dir:
            fsync_dir(path.parent)
        return path.parent

    def write_atomic(self, path: Path, buffers) -> None:
        """Write buffers to a temp file in tmp/, fsync, rename onto ``path``."""
        self._commit_tmp(self._write_tmp(buffers), path)

    # Objects keep their own temp-file writer rather than bgit.util.files.atomic_writer:
    # large ones go out with O_DIRECT (see writers.py), and store_file overlaps the fsync +
    # rename of many objects on a side pool and fsyncs each fan-out directory once.
    def _write_tmp(self, buffers) -> Path:
        self.tmp_dir.mkdir(exist_ok=True)
        tmp = self.tmp_dir / f"{os.getpid()}-{uuid.uuid4().hex}"
        if sum(memoryview(b).nbytes for b in buffers) >= DIRECT_OBJECT_MIN and self._direct_ok:
            try:
                writers.write_new_file_direct(tmp, buffers)
                return tmp
            except OSError as e:
                if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                self._direct_ok = False  # this filesystem refuses O_DIRECT: stay buffered
        try:
            with open(tmp, "wb") as f:
                for buf in buffers:
                    f.write(buf)
            return tmp
        except BaseException:
            _unlink_quietly(tmp)
            raise

    def _commit_tmp(self, tmp: Path, path: Path) -> Path:
        try:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            os.chmod(tmp, 0o444)
            os.replace(tmp, path)
        except BaseException:
            _unlink_quietly(tmp)
            raise
        return path.parent

    # -- reading ---------------------------------------------------------------------------

    def read_raw(self, oid: str) -> bytes:
        """The on-disk (compressed) form, unverified; for remotes."""
        try:
            with open(self.object_path(oid), "rb") as f:
                return f.read()
        except FileNotFoundError:
            raise ObjectNotFoundError(oid) from None

    def get_buffer(self, oid: str, verify: bool = True, size: int | None = None, out=None):
        """Decoded content as a buffer (bytes, memoryview or numpy array), hash-verified.

        ``verify=False`` is only for callers that verify a hash over the result themselves
        (materialise checks the whole file and then names the bad object). ``size`` = the
        size a manifest records, when the caller knows it (see codecs.decode); the read
        stops at the most an object of that size can take on disk. ``out``: a writable
        buffer of the object's size to decode into (then returned).
        """
        limit = codecs.encoded_size_limit(codecs.MAX_OBJECT_SIZE if size is None else size)
        try:
            raw = self._reader.read(self.object_path(oid), limit + 1)  # one more: "too long"
        except FileNotFoundError:
            raise ObjectNotFoundError(oid) from None
        data = codecs.decode(raw, oid, size, out)
        if isinstance(data, memoryview) and data.obj is raw.obj:
            data = bytes(data)  # a stored-raw object: the read buffer is reused
        if verify and blake3.blake3(data).hexdigest() != oid:
            raise CorruptObjectError(oid)
        return data

    def get_bytes(self, oid: str, size: int | None = None) -> bytes:
        data = self.get_buffer(oid, size=size)
        return data if isinstance(data, bytes) else bytes(memoryview(data).cast("B"))

    def verify(self, oid: str, size: int | None = None) -> None:
        """Raise ObjectNotFoundError / CorruptObjectError unless the object is intact (and,
        given ``size``, holds that many bytes)."""
        self.get_buffer(oid, size=size)

    def object_size(self, oid: str) -> int:
        """Bytes the object takes on disk."""
        return self.object_path(oid).stat().st_size
