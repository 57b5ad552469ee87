"""The phase cache: every finished phase is kept under the hash of exactly its inputs.

Layout under ``.git/bgit/phases/``::

    phases/
      stim/<key>/            stim.jsonl, phase.json
      rollout/<key>/         rollout.jsonl, phase.json
      train/<key>/           adapter/, metrics.jsonl, phase.json
      train/<key>.work/      checkpoints of a training run in progress (resume)
      <phase>/<key>.tmp-*/   a phase being written, or one gc is deleting (renamed first)
      pins/<pid>-<id>.json   phases a live process is using: gc keeps them (see pinned())
      pins/.lock             flock: shared while a pin is written, exclusive while gc decides

A phase directory appears only by an atomic rename of a complete temporary directory, and
disappears the same way (gc renames it to a temporary name before deleting it), so a crash
never leaves a half-finished or half-deleted phase that looks finished. ``phase.json``
records the key's inputs (for ``--dry-run`` and debugging) and the output digest that
downstream keys use.

``gc(repo, grace_seconds, phase_days)`` is ``bgit gc``: the repository's store gc plus the
pruning of cached phases that no reachable bake names and no live process has pinned.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

from bgit.config import section_hash
from bgit.util.files import hash_file, hash_tree, write_atomic

PHASES = ("stim", "rollout", "train")


@dataclass(frozen=True)
class PhaseKey:
    phase: str
    key: str
    inputs: dict

    @classmethod
    def of(cls, phase: str, **inputs) -> "PhaseKey":
        return cls(phase, section_hash({"phase": phase, **inputs}), inputs)

    @property
    def short(self) -> str:
        return self.key[:12]


# Same digests as before bgit.util existed (blake3 of the bytes; paths + file digests), so
# cached phase keys stay valid.
file_digest = hash_file
tree_digest = hash_tree


class PhaseCache:
    def __init__(self, root: Path):
        self.root = Path(root)
        self._pins: list[PhasePin] = []   # active pinned() contexts of this cache

    def path(self, key: PhaseKey) -> Path:
        return self.root / key.phase / key.key

    def work_dir(self, key: PhaseKey) -> Path:
        """A persistent scratch directory for a phase in progress (checkpoints)."""
        self._use(key)
        path = self.root / key.phase / f"{key.key}.work"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def get(self, key: PhaseKey) -> Path | None:
        """The finished phase, or None. A hit counts as a use: gc's ``--phase-days`` age is
        measured from the last use, not from when the phase was computed."""
        self._use(key)  # pinned before looking, so a gc that runs now either sees the pin or is done
        path = self.path(key)
        if not (path / "phase.json").is_file():
            return None
        try:
            os.utime(path)
        except OSError:
            pass
        return path

    @contextmanager
    def pinned(self, keys: Iterable[PhaseKey | str] = ()) -> Iterator["PhasePin"]:
        """``with cache.pinned(): ...`` -- while inside, gc keeps ``keys`` and every phase
        this cache looks up, begins, resumes or finishes (a bake in progress). The pin is a
        file naming this process; it is removed on exit and ignored once the process is gone
        (a killed bake pins nothing)."""
        pin = PhasePin(self.root / PINS)
        pin.add(*keys)
        self._pins.append(pin)
        try:
            yield pin
        finally:
            self._pins.remove(pin)
            pin.release()

    def _use(self, key: PhaseKey) -> None:
        for pin in self._pins:
            pin.add(key)

    @staticmethod
    def record_at(phase_dir: Path) -> dict:
        return json.loads((phase_dir / "phase.json").read_text())

    def begin(self, key: PhaseKey) -> Path:
        """A fresh temporary directory to write the phase's outputs into."""
        self._use(key)
        tmp = self.root / key.phase / f"{key.key}.tmp-{os.getpid()}-{time.monotonic_ns()}"
        tmp.mkdir(parents=True)
        return tmp

    def finish(self, key: PhaseKey, tmp: Path, digest: str, **facts) -> Path:
        """Seal ``tmp`` as the phase's result; returns the final directory."""
        self._use(key)
        record = {"phase": key.phase, "key": key.key, "inputs": key.inputs, "digest": digest,
                  "finished": time.time(), **facts}
        with open(tmp / "phase.json", "w") as handle:
            json.dump(record, handle, indent=1, sort_keys=True, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        final = self.path(key)
        if final.exists():  # finished concurrently by someone else: theirs is as good
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            os.replace(tmp, final)
        shutil.rmtree(self.root / key.phase / f"{key.key}.work", ignore_errors=True)
        return final

    def abandon(self, tmp: Path) -> None:
        shutil.rmtree(tmp, ignore_errors=True)

    def clean_temporaries(self) -> int:
        """Remove ``*.tmp-*`` leftovers of dead processes (not the resumable ``.work`` dirs)."""
        removed = 0
        for phase in PHASES:
            for tmp in (self.root / phase).glob("*.tmp-*"):
                pid = _leading_int(tmp.name.split(".tmp-", 1)[1])
                if pid is not None and not _alive(pid):
                    shutil.rmtree(tmp, ignore_errors=True)
                    removed += 1
        return removed

    def prune(self, keep: set[str], older_than: float, now: float | None = None) -> "PruneReport":
        """Remove finished phases (and stale ``.work`` dirs) whose key is not in ``keep``,
        not pinned by a live process, and last used more than ``older_than`` seconds ago.

        Recent phases stay even when no commit uses them: they are what makes re-baking an
        experiment (say, the learning rate before last) free. Each doomed directory is first
        renamed to a temporary name (under the pins lock, so no pin can slip in between the
        check and the rename), then deleted: a gc killed half-way never leaves a half-deleted
        phase that still looks finished.
        """
        now = time.time() if now is None else now
        report = PruneReport()
        doomed: list[Path] = []
        with _pins_lock(self.root / PINS, fcntl.LOCK_EX):
            pinned = live_pinned_keys(self.root / PINS)
            for path in self._entries():
                key = path.name.split(".")[0]
                if ".tmp-" in path.name or key in keep or now - _mtime(path, now) < older_than:
                    continue
                if key in pinned:
                    report.kept_pinned += 1
                    continue
                gone = path.with_name(f"{path.name}.tmp-{os.getpid()}-{time.monotonic_ns()}-gc")
                try:
                    os.rename(path, gone)
                except FileNotFoundError:
                    continue
                doomed.append(gone)
        for path in doomed:
            report.freed += sum(f.stat().st_size for f in path.rglob("*") if f.is_file() and not f.is_symlink())
            shutil.rmtree(path, ignore_errors=True)
            report.removed += 1
        return report

    def _entries(self) -> list[Path]:
        dirs = [self.root / phase for phase in PHASES]
        return [path for d in dirs if d.is_dir() for path in sorted(d.iterdir())]


PINS = "pins"


@dataclass
class PruneReport:
    removed: int = 0        # phase directories deleted
    freed: int = 0          # bytes they held
    kept_pinned: int = 0    # old and unreferenced, but in use by a live process


class PhasePin:
    """One ``pins/<pid>-<id>.json``: the phase keys a live process is using."""

    def __init__(self, pins_dir: Path) -> None:
        self.dir = pins_dir
        self.file = pins_dir / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.json"
        self.keys: set[str] = set()

    def add(self, *keys: PhaseKey | str) -> None:
        new = {k.key if isinstance(k, PhaseKey) else str(k) for k in keys} - self.keys
        if not new:
            return
        self.keys |= new
        record = {"pid": os.getpid(), "started": _process_start(os.getpid()), "keys": sorted(self.keys)}
        self.dir.mkdir(parents=True, exist_ok=True)
        with _pins_lock(self.dir, fcntl.LOCK_SH):
            write_atomic(self.file, json.dumps(record), durable=False)

    def release(self) -> None:
        self.file.unlink(missing_ok=True)


def live_pinned_keys(pins_dir: Path) -> set[str]:
    """Keys pinned by processes that still run; pins of dead processes are removed."""
    keys: set[str] = set()
    for file in sorted(pins_dir.glob("*.json")) if pins_dir.is_dir() else []:
        try:
            record = json.loads(file.read_text())
            pid, started = int(record["pid"]), record.get("started")
            pinned = [str(k) for k in record["keys"]]
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being replaced right now, or not ours: it pins nothing
        now_started = _process_start(pid) if started is not None else None
        if not _alive(pid) or (now_started is not None and now_started != started):
            file.unlink(missing_ok=True)  # its process is gone (or the pid was reused)
            continue
        keys.update(pinned)
    return keys


@contextmanager
def _pins_lock(pins_dir: Path, mode: int) -> Iterator[None]:
    pins_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(pins_dir / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, mode)
        yield
    finally:
        os.close(fd)  # closing drops the flock


def _process_start(pid: int) -> int | None:
    """When ``pid`` started (clock ticks since boot, Linux), to tell a reused pid apart."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return int(handle.read().rsplit(b")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _mtime(path: Path, default: float) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return default  # gone already: treated as recent, left alone


def _leading_int(text: str) -> int | None:
    digits = text.split("-", 1)[0]
    return int(digits) if digits.isdigit() else None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
