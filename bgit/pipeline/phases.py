"""The phase cache: every finished phase is kept under the hash of exactly its inputs.

Layout under ``.git/bgit/phases/``::

    phases/
      stim/<key>/            stim.jsonl, phase.json
      rollout/<key>/         rollout.jsonl, phase.json
      train/<key>/           adapter/, metrics.jsonl, phase.json
      train/<key>.work/      checkpoints of a training run in progress (resume)
      <phase>/<key>.tmp-*/   a phase being written; renamed into place when complete

A phase directory appears only by an atomic rename of a complete temporary directory, so a
crash never leaves a half-finished phase that looks finished. ``phase.json`` records the key's
inputs (for ``--dry-run`` and debugging) and the output digest that downstream keys use.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import blake3

from bgit.config import section_hash

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


def file_digest(path: Path) -> str:
    hasher = blake3.blake3()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def tree_digest(directory: Path) -> str:
    """Digest of every file's relative path and bytes under ``directory``."""
    hasher = blake3.blake3()
    for path in sorted(p for p in directory.rglob("*") if p.is_file()):
        hasher.update(path.relative_to(directory).as_posix().encode() + b"\0")
        hasher.update(file_digest(path).encode())
    return hasher.hexdigest()


class PhaseCache:
    def __init__(self, root: Path):
        self.root = Path(root)

    def path(self, key: PhaseKey) -> Path:
        return self.root / key.phase / key.key

    def work_dir(self, key: PhaseKey) -> Path:
        """A persistent scratch directory for a phase in progress (checkpoints)."""
        path = self.root / key.phase / f"{key.key}.work"
        path.mkdir(parents=True, exist_ok=True)
        return path

    def get(self, key: PhaseKey) -> Path | None:
        path = self.path(key)
        return path if (path / "phase.json").is_file() else None

    @staticmethod
    def record_at(phase_dir: Path) -> dict:
        return json.loads((phase_dir / "phase.json").read_text())

    def begin(self, key: PhaseKey) -> Path:
        """A fresh temporary directory to write the phase's outputs into."""
        tmp = self.root / key.phase / f"{key.key}.tmp-{os.getpid()}-{time.monotonic_ns()}"
        tmp.mkdir(parents=True)
        return tmp

    def finish(self, key: PhaseKey, tmp: Path, digest: str, **facts) -> Path:
        """Seal ``tmp`` as the phase's result; returns the final directory."""
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
                pid = int(tmp.name.split(".tmp-")[1].split("-")[0])
                if not _alive(pid):
                    shutil.rmtree(tmp, ignore_errors=True)
                    removed += 1
        return removed


    def prune(self, keep: set[str], older_than: float, now: float | None = None) -> tuple[int, int]:
        """Remove finished phases (and stale ``.work`` dirs) whose key is not in ``keep`` and
        that were last written more than ``older_than`` seconds ago -> (removed, bytes freed).

        Recent phases stay even when no commit uses them: they are what makes re-baking an
        experiment (say, the learning rate before last) free.
        """
        now = time.time() if now is None else now
        removed = freed = 0
        for phase in PHASES:
            for path in sorted((self.root / phase).glob("*")) if (self.root / phase).is_dir() else []:
                key = path.name.split(".")[0]
                if ".tmp-" in path.name or key in keep or now - path.stat().st_mtime < older_than:
                    continue
                freed += sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
                shutil.rmtree(path, ignore_errors=True)
                removed += 1
        return removed, freed


def referenced_phase_keys(bake_records) -> set[str]:
    """Phase keys named by bake.yml records (``phase_keys: {stim: {t: k}, rollout: {...}, train: k}``)."""
    keys: set[str] = set()
    for record in bake_records:
        for value in ((record or {}).get("phase_keys") or {}).values():
            keys.update(value.values() if isinstance(value, dict) else [value])
    return {key for key in keys if isinstance(key, str)}


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
