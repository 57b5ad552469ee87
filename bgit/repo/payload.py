"""Which files are payloads (stored in the store, a manifest in git), and the stat cache
that lets status/add skip rehashing big files that did not change."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from bgit.util.files import write_atomic

DEFAULT_THRESHOLD = 1 << 20
PAYLOAD_SUFFIXES = (".safetensors", ".jsonl")

# A file modified within this window of the moment its entry was recorded could change
# again within the same timestamp tick unnoticed ("racy git"); such entries are not trusted.
RACY_WINDOW_NS = 1_000_000_000


def parse_size(text: str) -> int:
    """'1048576', '512k', '1m', '2g' -> bytes."""
    text = str(text).strip().lower().removesuffix("b").removesuffix("i")
    factor = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30}.get(text[-1:], 1)
    number = text[:-1] if factor != 1 else text
    return int(float(number) * factor)


def is_payload(path: str, size: int, threshold: int) -> bool:
    return path.endswith(PAYLOAD_SUFFIXES) or size > threshold


class StatCache:
    """path -> (size, mtime_ns, ctime_ns, inode, manifest blob oid, recorded_ns), as JSON.

    Layout: ``.git/bgit/statcache.json``; written atomically (temp + rename). A lost or
    broken cache only costs a rehash. ctime is part of the key because mtime is not
    evidence: ``os.utime`` (or ``touch -r``, ``rsync -t``) puts an old mtime back on new
    bytes, while the kernel moves ctime on every change and nobody can set it back.
    """

    def __init__(self, file: Path) -> None:
        self.file = file
        self._entries: dict[str, list] | None = None
        self._dirty = False

    def _load(self) -> dict[str, list]:
        if self._entries is None:
            try:
                data = json.loads(self.file.read_text())
                self._entries = data if isinstance(data, dict) else {}
            except (OSError, ValueError):
                self._entries = {}
        return self._entries

    def lookup(self, path: str, st: os.stat_result) -> str | None:
        entry = self._load().get(path)
        if not isinstance(entry, list) or len(entry) != 6:
            return None  # also entries of the older (size, mtime, inode) format: rehash once
        *key, oid, recorded_ns = entry
        if key != _stat_key(st) or not isinstance(recorded_ns, int):
            return None
        if st.st_mtime_ns + RACY_WINDOW_NS > recorded_ns:
            return None
        return oid

    def record(self, path: str, st: os.stat_result, oid: str) -> None:
        self._load()[path] = [*_stat_key(st), oid, time.time_ns()]
        self._dirty = True

    def forget(self, path: str) -> None:
        if self._load().pop(path, None) is not None:
            self._dirty = True

    def save(self) -> None:
        if not self._dirty:
            return
        try:
            write_atomic(self.file, json.dumps(self._entries, sort_keys=True), durable=False)
        except OSError:
            return  # a cache that cannot be written (full disk) is only slower
        self._dirty = False


def _stat_key(st: os.stat_result) -> list[int]:
    return [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
