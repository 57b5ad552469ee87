"""Durable sequential file writers for materialise: ``write(buf)`` ... ``finish()``.

``finish`` returns once the bytes are on disk (fsync). Two ways to get there:

* BufferedWriter: page cache, with fdatasync started every FLUSH_EVERY bytes on a side
  thread so the final fsync has little left to do.
* DirectWriter (large files, Linux): O_DIRECT through two page-aligned staging buffers,
  one being filled while the other is written on a side thread. It skips the page cache's
  copy and write-back, which on this kind of machine cost more CPU than decoding the file.
  Filesystems that refuse O_DIRECT raise OSError(EINVAL); callers fall back to buffered.

write_new_file_direct does the same for one large store object.
"""

import errno
import mmap
import os
import shutil
import threading
from concurrent.futures import ThreadPoolExecutor

FLUSH_EVERY = 128 << 20
ALIGN = 4096
STAGE = 8 << 20
O_DIRECT = getattr(os, "O_DIRECT", 0)


class BufferedWriter:
    def __init__(self, path):
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
        self._side = ThreadPoolExecutor(1)
        self._flushing, self._unflushed = None, 0

    def write(self, buf) -> None:
        view = memoryview(buf).cast("B")
        while len(view):
            view = view[os.write(self.fd, view):]
        self._unflushed += memoryview(buf).nbytes
        if self._unflushed >= FLUSH_EVERY and (self._flushing is None or self._flushing.done()):
            self._flushing, self._unflushed = self._side.submit(os.fdatasync, self.fd), 0

    def finish(self) -> None:
        if self._flushing is not None:
            self._flushing.result()
        os.fsync(self.fd)

    def close(self) -> None:
        self._side.shutdown()
        os.close(self.fd)


class DirectWriter:
    def __init__(self, path):
        if not O_DIRECT:
            raise OSError("O_DIRECT is not available")
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_DIRECT, 0o666)
        self._stages = [mmap.mmap(-1, STAGE) for _ in range(2)]  # page-aligned
        self._cur, self._fill, self._offset = 0, 0, 0
        self._side = ThreadPoolExecutor(1)
        self._pending = None

    def write(self, buf) -> None:
        view = memoryview(buf).cast("B")
        while len(view):
            stage = self._stages[self._cur]
            n = min(len(view), STAGE - self._fill)
            stage[self._fill:self._fill + n] = view[:n]
            self._fill += n
            view = view[n:]
            if self._fill == STAGE:
                self._submit()

    def _submit(self) -> None:
        if self._pending is not None:
            self._pending.result()  # the other stage is free again
        self._pending = self._side.submit(self._pwrite, self._cur, self._fill, self._offset)
        self._offset += self._fill
        self._cur, self._fill = 1 - self._cur, 0

    def _pwrite(self, index: int, length: int, offset: int) -> None:
        with memoryview(self._stages[index]) as view:
            done = 0
            while done < length:
                done += os.pwrite(self.fd, view[done:length], offset + done)

    def finish(self) -> None:
        if self._pending is not None:
            self._pending.result()
            self._pending = None
        size = self._offset + self._fill
        if self._fill:
            # O_DIRECT writes whole blocks: pad the tail, then cut the file to its size.
            padded = -(-self._fill // ALIGN) * ALIGN
            stage = self._stages[self._cur]
            stage[self._fill:padded] = bytes(padded - self._fill)
            self._pwrite(self._cur, padded, self._offset)
            os.ftruncate(self.fd, size)
        os.fsync(self.fd)

    def close(self) -> None:
        self._side.shutdown()
        os.close(self.fd)
        for stage in self._stages:
            stage.close()


_local = threading.local()


def write_new_file_direct(path, buffers) -> None:
    """Create ``path`` holding the ``buffers`` one after another with one O_DIRECT write
    (not yet fsynced).

    Raises OSError (EINVAL) where the filesystem refuses O_DIRECT; the file is then removed.
    """
    if not O_DIRECT:
        raise OSError(errno.EINVAL, "O_DIRECT is not available")
    views = [memoryview(b).cast("B") for b in buffers]
    size = sum(len(v) for v in views)
    padded = -(-size // ALIGN) * ALIGN
    stage = getattr(_local, "stage", None)
    if stage is None or len(stage) < padded:
        # One page-aligned buffer per thread, kept: fresh pages would cost a fault each.
        stage = _local.stage = mmap.mmap(-1, max(padded, ALIGN))
    pos = 0
    for view in views:
        stage[pos:pos + len(view)] = view
        pos += len(view)
    stage[size:padded] = bytes(padded - size)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | O_DIRECT, 0o644)
    try:
        with memoryview(stage) as sview:
            done = 0
            while done < padded:
                done += os.pwrite(fd, sview[done:padded], done)
        if padded != size:
            os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        os.unlink(path)
        raise
    os.close(fd)


def link_or_copy(source, dest) -> None:
    """Hard-link ``source`` to ``dest`` when they share a filesystem, else copy it in the
    kernel (sendfile/copy_file_range). For immutable, hash-verified files only: a link shares
    the inode, as git's local clones do."""
    try:
        os.link(source, dest)
    except OSError:
        shutil.copyfile(source, dest)
