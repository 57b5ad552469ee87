"""fsck (verify what manifests need) and gc (drop what nothing reaches)."""

import os
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from .errors import CorruptObjectError, ObjectNotFoundError
from .files import WORKERS
from .manifest import Manifest
from .objects import ObjectStore

UNREFERENCED = "(unreferenced)"


@dataclass(frozen=True)
class FsckProblem:
    oid: str
    problem: str                 # "missing" | "corrupt"
    labels: tuple[str, ...]      # files (e.g. "<commit>:adapter/x.safetensors") that need the object
    detail: str = ""

    @property
    def message(self) -> str:
        what = "is missing" if self.problem == "missing" else f"is corrupt ({self.detail})"
        return f"object {self.oid} {what}; needed by {', '.join(self.labels)}"


@dataclass
class FsckReport:
    objects_checked: int = 0
    problems: list[FsckProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def fsck(store: ObjectStore, manifests: Mapping[str, Manifest], all_objects: bool = False) -> FsckReport:
    """Check every object the manifests reference; with ``all_objects`` every stored one too."""
    needed: dict[str, list[str]] = {}
    for label, manifest in manifests.items():
        for oid in manifest.object_ids():
            needed.setdefault(oid, []).append(label)
    if all_objects:
        for oid in store.iter_object_ids():
            needed.setdefault(oid, [UNREFERENCED])

    def check(oid):
        try:
            store.verify(oid)
        except ObjectNotFoundError:
            return FsckProblem(oid, "missing", tuple(sorted(needed[oid])))
        except CorruptObjectError as e:
            return FsckProblem(oid, "corrupt", tuple(sorted(needed[oid])), e.reason)
        return None

    report = FsckReport(objects_checked=len(needed))
    with ThreadPoolExecutor(WORKERS) as pool:
        report.problems = [p for p in pool.map(check, sorted(needed)) if p is not None]
    return report


@dataclass
class GcReport:
    removed_objects: int = 0
    removed_bytes: int = 0
    kept_objects: int = 0
    kept_recent: int = 0          # unreachable but younger than the grace period
    removed_tmp_files: int = 0


def gc(store: ObjectStore, reachable_oids: Iterable[str], grace_seconds: float = 3600.0,
       now: float | None = None) -> GcReport:
    """Delete unreachable objects and temp files older than ``grace_seconds``.

    The grace period protects objects written by a commit still in progress (their ids
    are not reachable from any ref yet); ``put`` refreshes the mtime of re-used objects.
    """
    reachable = set(reachable_oids)
    cutoff = (time.time() if now is None else now) - grace_seconds
    report = GcReport()
    for oid in list(store.iter_object_ids()):
        if oid in reachable:
            report.kept_objects += 1
            continue
        path = store.object_path(oid)
        try:
            st = path.stat()
        except FileNotFoundError:
            continue
        if st.st_mtime >= cutoff:
            report.kept_recent += 1
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        report.removed_objects += 1
        report.removed_bytes += st.st_size
    if store.tmp_dir.is_dir():
        for entry in os.scandir(store.tmp_dir):
            try:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    report.removed_tmp_files += 1
            except FileNotFoundError:
                continue
    return report
