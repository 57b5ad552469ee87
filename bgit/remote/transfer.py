"""Moving objects between the local store and a store remote, in parallel, with progress.

Bytes on the wire are the raw (compressed) on-disk form. Every object is verified on both
sides: upload decodes each one it sends and checks its BLAKE3 (a corrupt local object must
not reach the remote, where every clone would trip on it), download reads at most what the
recorded size allows and ``Store.put_raw`` verifies it before it becomes visible locally.

Objects under LOOSE_MIN go up in packs of up to PACK_BYTES (one request and one fsync per
pack, not per tensor); bigger ones go up one by one. Objects read from a pack are fetched
in ranges that cover several of them at once.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable

from bgit.store import codecs
from bgit.store.errors import CorruptObjectError
from bgit.util.files import hash_bytes
from bgit.util.progress import SILENT, Reporter, human_size

from .errors import RemoteObjectCorruptError, RemoteObjectMissingError
from .packs import PackEntry
from .stores import FileAbsentError, ObjectAbsentError, ObjectTooLargeError, StoreRemote

WORKERS = 8
# A directory remote's puts (kernel copy, fsync, rename) wait on the filesystem, not on CPU
# or memory (nothing is held once verified), so more run at once and the filesystem commits
# their fsyncs together (measured: 427 small objects onto a loop-mounted ext4, 1.0-2.3 s
# with 8, 0.6-0.8 s with 32).
FILE_WORKERS = 32
VERIFY_THREADS = max(2, min(8, os.cpu_count() or 2))
# Objects from LOOSE_MIN bytes (uncompressed) up travel alone: a request per object costs
# little against their bytes, and they stream in parallel. Smaller ones share packs of up
# to PACK_BYTES (uncompressed), PACK_WORKERS at once; each pack is built in memory.
LOOSE_MIN = 4 << 20
PACK_BYTES = 32 << 20
PACK_WORKERS = 4
# A download reads a pack's objects in ranges of up to RANGE_BYTES, merging neighbours
# fewer than RANGE_GAP bytes apart (a clone usually wants a whole pack).
RANGE_BYTES = 16 << 20
RANGE_GAP = 1 << 20


class _ObjectsTask:
    """A reporter task counting objects, with the bytes moved so far beside the bar; the
    transfer's threads advance it."""

    def __init__(self, reporter: Reporter, label: str, total_objects: int):
        self.task, self.bytes, self.lock = reporter.task(label, total=total_objects, unit="obj"), 0, threading.Lock()

    def advance(self, wire_bytes: int) -> None:
        with self.lock:
            self.bytes += wire_bytes
            self.task(1, sent=human_size(self.bytes, binary=False))

    def close(self) -> None:
        self.task.close()


@dataclass
class TransferResult:
    objects: int = 0
    wire_bytes: int = 0    # raw (compressed) bytes moved
    bytes: int = 0         # uncompressed bytes those objects hold

    def __post_init__(self):
        self._lock = threading.Lock()

    def count(self, wire: int, size: int, objects: int = 1) -> None:
        with self._lock:
            self.objects += objects
            self.wire_bytes += wire
            self.bytes += size


def _run_parallel(items, work: Callable, workers: int) -> None:
    """Run ``work(item)`` on a pool; the first error cancels what has not started."""
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(work, item) for item in items]
        done, pending = wait(futures, return_when=FIRST_EXCEPTION)
        for f in pending:
            f.cancel()
        for f in futures:
            if f.done() and not f.cancelled() and f.exception() is not None:
                raise f.exception()


def verify_raw(oid: str, raw, size: int | None) -> None:
    """Raise CorruptObjectError unless ``raw`` decodes to ``size`` bytes hashing to ``oid``."""
    if hash_bytes(codecs.decode(raw, oid, size)) != oid:
        raise CorruptObjectError(oid)


def upload(store, remote: StoreRemote, sizes: dict[str, int], label: str,
           reporter: Reporter = SILENT, on_done: Callable[[list[str]], None] | None = None,
           workers: int | None = None) -> TransferResult:
    """Send the objects in ``sizes`` (oid -> uncompressed size): big ones alone, biggest
    first, small ones in packs. Each is verified before it leaves: a corrupt or missing
    local object raises the store's CorruptObjectError / ObjectNotFoundError, and whatever
    has not started is cancelled. ``on_done`` gets the ids of each put once it is durable.
    ``workers``: loose puts at once (default: FILE_WORKERS to a directory, else WORKERS)."""
    result = TransferResult()
    loose = sorted((o for o in sizes if sizes[o] >= LOOSE_MIN), key=lambda o: -sizes[o])
    packs = split_packs([o for o in sizes if sizes[o] < LOOSE_MIN], sizes)
    task = _ObjectsTask(reporter, label, len(sizes))

    # A directory remote links or copies the local object file in the kernel once verified.
    by_file = hasattr(remote, "put_from_file") and hasattr(store, "object_path")

    def read_verified(oid: str, keep: bool):
        raw = store.read_raw(oid)  # ObjectNotFoundError names a missing one
        verify_raw(oid, raw, sizes[oid])
        return raw if keep else None  # by file: the bytes go again from disk, drop them

    def send(oid: str) -> None:
        raw = verifier.submit(read_verified, oid, not by_file).result()
        if by_file:
            wire = remote.put_from_file(oid, store.object_path(oid))
        else:
            remote.put(oid, raw)
            wire = len(raw)
        result.count(wire, sizes[oid])
        if on_done:
            on_done([oid])
        task.advance(wire)

    def send_pack(oids: list[str]) -> None:
        raws = list(verifier.map(read_verified, oids, [True] * len(oids)))
        pack = remote.put_pack(list(zip(oids, raws)))
        if on_done:
            on_done(oids)
        for oid, raw in zip(oids, raws):
            result.count(len(raw), sizes[oid])
            task.advance(len(raw))
        result.count(len(pack.index), 0, objects=0)

    # Verifying is CPU work, done on one thread per core: the piece-sized buffers it needs
    # then live in a few malloc arenas, not in one per network worker.
    with ThreadPoolExecutor(VERIFY_THREADS) as verifier:
        try:
            _run_parallel(packs, send_pack, PACK_WORKERS)
            _run_parallel(loose, send, workers or (FILE_WORKERS if by_file else WORKERS))
        finally:
            task.close()
    return result


def split_packs(oids: list[str], sizes: dict[str, int]) -> list[list[str]]:
    """``oids`` in order, cut into packs of at most PACK_BYTES (uncompressed) each."""
    packs: list[list[str]] = []
    total = PACK_BYTES
    for oid in oids:
        if total + sizes[oid] > PACK_BYTES:
            packs.append([])
            total = 0
        packs[-1].append(oid)
        total += sizes[oid]
    return packs


def download(store, remote: StoreRemote, remote_name: str, sizes: dict[str, int | None],
             label: str, reporter: Reporter = SILENT,
             on_done: Callable[[list[str]], None] | None = None, workers: int = WORKERS) -> TransferResult:
    """Fetch and verify the objects in ``sizes`` (oid -> the size a manifest records, None
    when no manifest at hand names it); a corrupt one is reported, never stored.

    Memory per object stays within its recorded size: the read stops at the most its
    on-disk form can take, and a header claiming another size is refused before decoding.
    """
    result = TransferResult()
    packed = remote.packed(refresh=True)
    ranges = pack_ranges({oid: packed[oid] for oid in sizes if oid in packed})
    loose = sorted((o for o in sizes if o not in packed), key=lambda o: -(sizes[o] or 0))
    task = _ObjectsTask(reporter, label, len(sizes))

    def limit(oid: str) -> int:
        size = sizes[oid]
        return codecs.encoded_size_limit(codecs.MAX_OBJECT_SIZE if size is None else size)

    def store_verified(oid: str, raw) -> None:
        try:
            store.put_raw(oid, raw, sizes[oid])
        except CorruptObjectError as e:
            reason = "hash mismatch" if e.reason == CorruptObjectError(oid).reason else e.reason
            raise RemoteObjectCorruptError(oid, remote_name, reason) from None
        result.count(len(raw), sizes[oid] or 0)
        if on_done:
            on_done([oid])
        task.advance(len(raw))

    def receive(oid: str) -> None:
        try:
            raw = remote.get(oid, max_bytes=limit(oid))
        except ObjectAbsentError:
            raise RemoteObjectMissingError(oid, remote_name) from None
        except ObjectTooLargeError:
            raise RemoteObjectCorruptError(oid, remote_name, f"more than {limit(oid)} bytes stored") from None
        store_verified(oid, raw)

    def receive_range(entries: list[tuple[str, PackEntry]]) -> None:
        for oid, entry in entries:  # refuse an oversized entry before reading anything
            if entry.length > limit(oid):
                raise RemoteObjectCorruptError(oid, remote_name, f"more than {limit(oid)} bytes stored")
        start = entries[0][1].offset
        end = entries[-1][1].offset + entries[-1][1].length
        try:
            data = memoryview(remote.read_pack(entries[0][1].pack, start, end - start))
        except FileAbsentError:
            raise RemoteObjectMissingError(entries[0][0], remote_name) from None
        for oid, entry in entries:
            store_verified(oid, data[entry.offset - start:entry.offset - start + entry.length])

    try:
        _run_parallel(ranges, receive_range, workers)
        _run_parallel(loose, receive, workers)
    finally:
        task.close()
    return result


def pack_ranges(entries: dict[str, PackEntry]) -> list[list[tuple[str, PackEntry]]]:
    """The reads that fetch ``entries``: per pack, in offset order, neighbours fewer than
    RANGE_GAP bytes apart merged while a read stays within RANGE_BYTES."""
    ranges: list[list[tuple[str, PackEntry]]] = []
    ordered = sorted(entries.items(), key=lambda item: (item[1].pack, item[1].offset))
    for oid, entry in ordered:
        if ranges:
            first, last = ranges[-1][0][1], ranges[-1][-1][1]
            if (entry.pack == last.pack and entry.offset - (last.offset + last.length) < RANGE_GAP
                    and entry.offset + entry.length - first.offset <= RANGE_BYTES):
                ranges[-1].append((oid, entry))
                continue
        ranges.append([(oid, entry)])
    return ranges
