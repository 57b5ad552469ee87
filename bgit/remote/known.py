"""What this repository knows to be on a remote's payload store, so a re-push asks nothing.

    .git/bgit/remotes/<name>/
      known          first line: the store URL it describes; then one object id per line

Append-only and flushed after each object, so a push killed midway keeps what it learnt.
A file for another store URL (the remote was re-added elsewhere) is ignored and replaced.
Losing it costs only round trips: ``has_many`` asks the remote again.
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

from bgit.util.files import write_atomic

OID_RE = re.compile(r"[0-9a-f]{64}\Z")


class KnownObjects:
    def __init__(self, bgit_dir: Path, remote_name: str, store_url: str) -> None:
        self.path = Path(bgit_dir) / "remotes" / remote_name / "known"
        self.store_url = store_url
        self.ids: set[str] = set()
        self._lock = threading.Lock()
        self._file = None
        self._load()

    def _load(self) -> None:
        try:
            lines = self.path.read_text().splitlines()
        except (OSError, UnicodeDecodeError):
            return
        if not lines or lines[0] != f"store {self.store_url}":
            return
        self.ids = {line for line in lines[1:] if OID_RE.match(line)}  # a torn last line is skipped

    def __contains__(self, oid: str) -> bool:
        return oid in self.ids

    def add(self, oids) -> None:
        new = [o for o in oids if o not in self.ids]
        if not new:
            return
        with self._lock:
            if self._file is None:
                self._open()
            self._file.write("".join(f"{o}\n" for o in new))
            self._file.flush()
            self.ids.update(new)

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if not self.ids:  # a new file, or one describing another store: start afresh
            write_atomic(self.path, f"store {self.store_url}\n")
        self._file = open(self.path, "a")

    def close(self) -> None:
        with self._lock:
            if self._file is not None:
                self._file.close()
                self._file = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def forget_remote(bgit_dir: Path, remote_name: str) -> None:
    known = Path(bgit_dir) / "remotes" / remote_name / "known"
    known.unlink(missing_ok=True)
    try:
        known.parent.rmdir()
    except OSError:
        pass
