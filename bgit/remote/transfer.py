"""Moving objects between the local store and a store remote, in parallel, with progress.

Bytes on the wire are the raw (compressed) on-disk form; every downloaded object is
verified by ``Store.put_raw`` before it becomes visible locally.
"""

from __future__ import annotations

import threading

from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Callable, Protocol

from bgit.store.errors import CorruptObjectError

from .errors import RemoteObjectCorruptError, RemoteObjectMissingError
from .stores import ObjectAbsentError, StoreRemote

WORKERS = 8


class Progress(Protocol):
    """What a transfer reports; the CLI draws it as a bar with bytes/s.

    ``advance`` is called once per object, with the bytes it took on the wire."""

    def start(self, label: str, total_objects: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...

    def finish(self) -> None: ...


class NoProgress:
    def start(self, label, total_objects):
        pass

    def advance(self, nbytes):
        pass

    def finish(self):
        pass


@dataclass
class TransferResult:
    objects: int = 0
    wire_bytes: int = 0    # raw (compressed) bytes moved
    bytes: int = 0         # uncompressed bytes those objects hold

    def __post_init__(self):
        self._lock = threading.Lock()

    def count(self, wire: int, size: int) -> None:
        with self._lock:
            self.objects += 1
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


def upload(store, remote: StoreRemote, sizes: dict[str, int], label: str,
           progress: Progress | None = None, on_done: Callable[[str], None] | None = None,
           workers: int = WORKERS) -> TransferResult:
    """Send the objects in ``sizes`` (oid -> uncompressed size, 0 if unknown); big ones first."""
    progress = progress or NoProgress()
    result = TransferResult()
    order = sorted(sizes, key=lambda o: -sizes[o])
    progress.start(label, len(order))

    # A directory remote copies straight from the local object file, without Python buffers.
    by_file = hasattr(remote, "put_from_file") and hasattr(store, "object_path")

    def send(oid: str) -> None:
        if by_file:
            source = store.object_path(oid)
            if not source.is_file():
                store.read_raw(oid)  # raises the store's one-line ObjectNotFoundError
            wire = remote.put_from_file(oid, source)
        else:
            raw = store.read_raw(oid)
            remote.put(oid, raw)
            wire = len(raw)
        result.count(wire, sizes[oid])
        if on_done:
            on_done(oid)
        progress.advance(wire)

    try:
        _run_parallel(order, send, workers)
    finally:
        progress.finish()
    return result


def download(store, remote: StoreRemote, remote_name: str, sizes: dict[str, int], label: str,
             progress: Progress | None = None, on_done: Callable[[str], None] | None = None,
             workers: int = WORKERS) -> TransferResult:
    """Fetch and verify the objects in ``sizes``; a corrupt one is reported, never stored."""
    progress = progress or NoProgress()
    result = TransferResult()
    order = sorted(sizes, key=lambda o: -sizes[o])
    progress.start(label, len(order))

    def receive(oid: str) -> None:
        try:
            raw = remote.get(oid)
        except ObjectAbsentError:
            raise RemoteObjectMissingError(oid, remote_name) from None
        try:
            store.put_raw(oid, raw)
        except CorruptObjectError as e:
            reason = "hash mismatch" if e.reason == CorruptObjectError(oid).reason else e.reason
            raise RemoteObjectCorruptError(oid, remote_name, reason) from None
        result.count(len(raw), sizes[oid])
        if on_done:
            on_done(oid)
        progress.advance(len(raw))

    try:
        _run_parallel(order, receive, workers)
    finally:
        progress.finish()
    return result
