"""Whole files in and out of the object store: store_file -> Manifest -> materialise."""

import errno
import mmap
import os
import threading
import traceback
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import blake3

from bgit.util.files import fsync_dir

from . import chunking, codecs, safetensors_split as st, writers
from .errors import FileCorruptError
from .manifest import Manifest, TensorEntry
from .objects import ObjectStore

CHUNK_THRESHOLD = 1 << 20     # smaller non-safetensors files are a single object
WORKERS = max(2, min(8, os.cpu_count() or 2))
DIRECT_MIN = 64 << 20         # files this big bypass the page cache (see writers.py)
SYNC_THREADS = 8              # fsync is latency-bound: overlap many
# Large objects handed to the sync threads but not yet written, at most: workers hand them
# over and compress on (a third worker on 2 cores did the same for the wall time, at ~10%
# more CPU).
SYNC_PENDING = 2 * WORKERS


class _Syncer:
    """Runs object writes and fsyncs on SYNC_THREADS threads; at most ``limit`` of the jobs
    that hold an object's bytes at once (the submitter waits for a free place)."""

    def __init__(self, limit: int):
        self._pool = ThreadPoolExecutor(SYNC_THREADS)
        self._slots = threading.BoundedSemaphore(limit)

    def submit(self, fn, holds_data: bool = False):
        if not holds_data:
            return self._pool.submit(fn)
        self._slots.acquire()
        try:
            future = self._pool.submit(fn)
        except BaseException:
            self._slots.release()
            raise
        future.add_done_callback(lambda _: self._slots.release())
        return future

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._pool.shutdown()


class _Job:
    __slots__ = ("begin", "end", "group", "tensor", "dtype")

    def __init__(self, begin, end, group=1, tensor=None, dtype=None):
        self.begin, self.end, self.group, self.tensor, self.dtype = begin, end, group, tensor, dtype


def store_file(store: ObjectStore, path) -> Manifest:
    """Store the file at ``path``; returns the manifest that reproduces it byte for byte."""
    path = Path(path)
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        if size == 0:
            return Manifest("blob", 0, blake3.blake3(b"").hexdigest(), ())
        mm = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        view = memoryview(mm)
        try:
            return _store_view(store, view, size)
        except BaseException as error:
            # The traceback's frames (the worker jobs' too) hold slices of the map; while
            # they live the map cannot close, and closing it would raise BufferError in
            # place of the real error (a full disk). Drop them first.
            traceback.clear_frames(error.__traceback__)
            raise
        finally:
            _unmap(view, mm)


def _unmap(view: memoryview, mm: mmap.mmap) -> None:
    try:
        view.release()
        mm.close()
    except BufferError:
        pass  # a slice is still referenced somewhere: the map goes with its last reference


def _store_view(store: ObjectStore, view, size: int) -> Manifest:
    layout = _safetensors_layout(view, size)
    if layout is not None:
        kind, jobs = "safetensors", _safetensors_jobs(layout, size)
    elif size < CHUNK_THRESHOLD:  # one small object: threads would cost more than they save
        oid = store.put_bytes(view[:size])
        return Manifest("blob", size, oid, ((oid, size),))
    else:
        ends = chunking.chunk_boundaries(view)
        kind, jobs = "chunks", [_Job(b, e) for b, e in zip([0] + ends[:-1], ends)]

    def run(job):
        data = view[job.begin:job.end]
        oid = blake3.blake3(data).hexdigest()  # one thread each: the pool already fills the cores
        written = store._put_encoded(oid, lambda: codecs.encode_parts(data, job.group, job.dtype), False, syncer)
        sumsq = st.sum_squares(data, layout.tensors[job.tensor].dtype) if job.tensor is not None else None
        return oid, written, sumsq

    with ThreadPoolExecutor(WORKERS) as pool, _Syncer(SYNC_PENDING) as syncer:
        whole = pool.submit(lambda: blake3.blake3(view, max_threads=blake3.blake3.AUTO).hexdigest())
        results = list(pool.map(run, jobs))
        whole = whole.result()
        dirs = {written.result() for _, written, _ in results if written is not None}
    for d in sorted(dirs):
        fsync_dir(d)

    pieces = tuple((oid, job.end - job.begin) for (oid, _, _), job in zip(results, jobs))
    tensors = _tensor_entries(layout, jobs, results) if layout is not None else ()
    return Manifest(kind, size, whole, pieces, tensors, layout.metadata if layout else {})


def _safetensors_layout(view, size):
    if size < 8:
        return None
    n = int.from_bytes(view[:8], "little")
    if n > st.MAX_HEADER or 8 + n > size:
        return None
    return st.parse_layout(bytes(view[:8 + n]), size)


def _safetensors_jobs(layout: st.Layout, size: int) -> list[_Job]:
    jobs = [_Job(0, layout.header_size)]
    pos = layout.header_size
    for i, t in enumerate(layout.tensors):
        begin, end = layout.header_size + t.begin, layout.header_size + t.end
        jobs += [_Job(pos + b, pos + e) for b, e in st.split_pieces(begin - pos, 1)]  # gap bytes
        width = st.DTYPE_WIDTH[t.dtype]
        jobs += [_Job(begin + b, begin + e, width, i, t.dtype) for b, e in st.split_pieces(end - begin, width)]
        pos = max(pos, end)
    jobs += [_Job(pos + b, pos + e) for b, e in st.split_pieces(size - pos, 1)]
    return jobs


def _tensor_entries(layout, jobs, results) -> tuple[TensorEntry, ...]:
    oids = [[] for _ in layout.tensors]
    sums = [0.0 for _ in layout.tensors]
    for job, (oid, _, sumsq) in zip(jobs, results):
        if job.tensor is not None:
            oids[job.tensor].append(oid)
            sums[job.tensor] = None if sumsq is None or sums[job.tensor] is None else sums[job.tensor] + sumsq
    entries = []
    for i, t in enumerate(layout.tensors):
        total = sums[i] if st.sum_squares(b"", t.dtype) is not None else None
        entries.append(TensorEntry(t.name, t.dtype, t.shape, st.norm_from_sum(total),
                                   (t.begin, t.end), tuple(oids[i])))
    return tuple(entries)


def materialise(store: ObjectStore, manifest: Manifest, dest) -> None:
    """Write the file ``manifest`` describes to ``dest`` atomically, checking its BLAKE3.

    Pieces are decoded in parallel and the whole-file hash covers every byte written, so
    pieces are not hashed one by one; only on a mismatch are they checked to name the bad one.
    """
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    if manifest.size >= DIRECT_MIN and writers.O_DIRECT:
        try:
            return _materialise(store, manifest, dest, writers.DirectWriter)
        except OSError as e:
            if e.errno not in (errno.EINVAL, errno.EOPNOTSUPP, None):
                raise
    _materialise(store, manifest, dest, writers.BufferedWriter)


def _materialise(store, manifest, dest: Path, writer_class) -> None:
    # Not bgit.util.files.atomic_writer: the bytes go through writers.py (O_DIRECT for big
    # files, fdatasync overlapped with decoding), which that writer cannot do.
    tmp = dest.parent / f".{dest.name}.bgit-{os.getpid()}-{uuid.uuid4().hex[:12]}.tmp"  # pid: see repo.worktree
    try:
        writer = writer_class(tmp)
        try:
            actual = _write_pieces(store, manifest.pieces, writer)
            writer.finish()
        finally:
            writer.close()
        if actual != manifest.blake3:
            for oid, size in dict.fromkeys(manifest.pieces):
                store.verify(oid, size)  # raises CorruptObjectError naming the bad object
            raise FileCorruptError(dest, manifest.blake3, actual)
        os.replace(tmp, dest)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    fsync_dir(dest.parent)


def _write_pieces(store, pieces, writer) -> str:
    """Decode the pieces in parallel, each into a pooled buffer laid out for the writer
    (no copy on the way to an O_DIRECT file), write them in order; returns their BLAKE3."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    window = WORKERS + 1  # bounded read-ahead keeps memory at a few pieces
    # Buffers: the window's, two the writer may still hold, one the main thread holds.
    buffers = writers.BufferPool(window + 3)
    starts = [0]
    for _, size in pieces:
        starts.append(starts[-1] + size)

    def load(i):
        oid, size = pieces[i]
        if size < writers.DIRECT_WRITE_MIN:  # copied through the writer's stages anyway
            return None, store.get_buffer(oid, verify=False, size=size)
        buf, view = buffers.take(starts[i], size)
        try:
            store.get_buffer(oid, verify=False, size=size, out=view)  # size checked before decoding
        except BaseException:
            buffers.give(buf)
            raise
        return buf, view

    pool = ThreadPoolExecutor(WORKERS)
    futures = [pool.submit(load, i) for i in range(min(window, len(pieces)))]
    try:
        for i in range(len(pieces)):
            buf, view = futures[i].result()
            futures[i] = None
            if i + window < len(pieces):
                futures.append(pool.submit(load, i + window))
            hasher.update(view)
            writer.write(view, release=None if buf is None else (lambda b=buf: buffers.give(b)))
    finally:
        pool.shutdown(cancel_futures=True)
    return hasher.hexdigest()
