"""One writer at a time: an fcntl.flock on ``root/lock`` plus a record of who holds it.

The kernel drops a flock when its holder dies, so a lock left by a killed process is taken
over without any stale-pid guessing. The file itself is never deleted (deleting a flocked
file lets two processes lock two different inodes). Nested use in one process is allowed
(a bake holds the lock and commits inside it). Correctness never depends on this lock:
objects and files are written atomically either way.
"""

import fcntl
import json
import os
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from .errors import LockedError

_held: dict[str, list] = {}      # lock path -> [fd, depth] for locks this process holds
_guard = threading.Lock()


@contextmanager
def repo_lock(root, holder: str):
    path = str(Path(root) / "lock")
    with _guard:
        entry = _held.get(path)
        if entry is None:
            entry = _held[path] = [_acquire(path, holder), 0]
        entry[1] += 1
    try:
        yield
    finally:
        with _guard:
            entry[1] -= 1
            if entry[1] == 0:
                del _held[path]
                _release(entry[0])


def _acquire(path: str, holder: str) -> int:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        record = _read_record(fd)
        os.close(fd)
        raise LockedError(record.get("pid", "?"), record.get("holder", "unknown"),
                          record.get("since", "unknown time")) from None
    except BaseException:
        os.close(fd)
        raise
    record = {"pid": os.getpid(), "holder": holder,
              "since": time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())}
    try:
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(record).encode() + b"\n", 0)
    except OSError:
        _release(fd)  # a full disk must not leave this process holding a lock it reports as failed
        raise
    return fd


def _read_record(fd: int) -> dict:
    # The holder writes its record just after locking; give it a moment before giving up.
    for _ in range(20):
        try:
            record = json.loads(os.pread(fd, 4096, 0).decode() or "null")
            if isinstance(record, dict):
                return record
        except (ValueError, UnicodeDecodeError):
            pass
        time.sleep(0.01)
    return {}


def _release(fd: int) -> None:
    try:
        os.ftruncate(fd, 0)
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
