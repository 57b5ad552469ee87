"""Atomic files and file hashing: one implementation for every layer.

An atomic write puts the bytes in a temporary file beside the destination, fsyncs it,
renames it over the destination and fsyncs the directory, so a crash leaves either the old
file or the new one, never a mix; the temporary file is removed on every failure path
(dulwich's ``GitFile``, huggingface_hub's ``.incomplete`` files).
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Iterator

import blake3

TMP_SUFFIX = ".bgit-tmp"
HASH_BLOCK = 1 << 20


def temp_path(dest: Path) -> Path:
    """The temporary name an atomic write of ``dest`` uses (hidden, pid-unique)."""
    return dest.with_name(f".{dest.name}.{os.getpid()}{TMP_SUFFIX}")


def fsync_dir(path: str | os.PathLike) -> None:
    """Make a rename or create in directory ``path`` durable. OSError propagates: a
    directory that cannot be synced is not durable, and the caller must know."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@contextmanager
def atomic_writer(dest: str | os.PathLike, mode: str = "wb", *, durable: bool = True,
                  encoding: str | None = None) -> Iterator[IO]:
    """``with atomic_writer(path) as f: f.write(...)``: ``path`` appears complete or not at all."""
    dest = Path(dest)
    tmp = temp_path(dest)
    try:
        with open(tmp, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            if durable:
                os.fsync(handle.fileno())
        os.replace(tmp, dest)
        if durable:
            fsync_dir(dest.parent)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(dest: str | os.PathLike, data: bytes | str, *, durable: bool = True,
                 executable: bool = False) -> Path:
    """Write ``data`` (bytes, or str as UTF-8) to ``dest`` atomically; returns ``dest``."""
    dest = Path(dest)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    with atomic_writer(dest, durable=durable) as handle:
        handle.write(payload)
        if executable:
            os.chmod(handle.fileno(), 0o755)
    return dest


def copy_atomic(src: str | os.PathLike, dest: str | os.PathLike, *, durable: bool = True) -> Path:
    """Copy ``src`` to ``dest`` atomically (mode bits included)."""
    dest = Path(dest)
    with atomic_writer(dest, durable=durable) as handle, open(src, "rb") as source:
        shutil.copyfileobj(source, handle, HASH_BLOCK)
    shutil.copymode(src, dest)
    return dest


def replace_dir_atomic(tmp_dir: str | os.PathLike, dest: str | os.PathLike) -> bool:
    """Rename a finished ``tmp_dir`` to ``dest``. False (and ``tmp_dir`` removed) when
    ``dest`` already exists: someone else finished the same work first."""
    tmp_dir, dest = Path(tmp_dir), Path(dest)
    try:
        os.rename(tmp_dir, dest)
    except OSError:
        if not dest.exists():
            raise
        shutil.rmtree(tmp_dir, ignore_errors=True)
        return False
    fsync_dir(dest.parent)
    return True


def hash_bytes(data) -> str:
    """BLAKE3 hex digest of a bytes-like object (threads for large inputs)."""
    size = memoryview(data).nbytes
    threads = blake3.blake3.AUTO if size >= (4 << 20) else 1
    return blake3.blake3(data, max_threads=threads).hexdigest()


def hash_file(path: str | os.PathLike) -> str:
    """BLAKE3 hex digest of a file's bytes (memory-mapped, multithreaded for big files)."""
    hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
    if os.path.getsize(path) == 0:
        return hasher.hexdigest()
    hasher.update_mmap(str(path))
    return hasher.hexdigest()


def hash_tree(directory: str | os.PathLike) -> str:
    """Digest of every file's relative path and bytes under ``directory``."""
    directory = Path(directory)
    hasher = blake3.blake3()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        hasher.update(path.relative_to(directory).as_posix().encode() + b"\0")
        hasher.update(hash_file(path).encode())
    return hasher.hexdigest()
