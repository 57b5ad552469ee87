"""fsck (verify what manifests need) and gc (drop what nothing reaches)."""

import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Iterable, Mapping

from . import safetensors_split as st
from .errors import CorruptObjectError, ObjectNotFoundError, StoreError
from .files import WORKERS
from .manifest import Manifest
from .objects import ObjectStore

UNREFERENCED = "(unreferenced)"


STORE_TMP_NAME = re.compile(r"\d+-[0-9a-f]{32}\Z")

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


@dataclass(frozen=True)
class ManifestProblem:
    label: str                   # the file whose manifest it is, e.g. "<commit>:adapter/x.safetensors"
    reason: str                  # one line, naming the tensor


@dataclass
class FsckReport:
    objects_checked: int = 0
    problems: list[FsckProblem] = field(default_factory=list)
    manifest_problems: list[ManifestProblem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems and not self.manifest_problems


def fsck(store: ObjectStore, manifests: Mapping[str, Manifest], all_objects: bool = False) -> FsckReport:
    """Check every object the manifests reference (its size and hash); with ``all_objects``
    every stored one too; and that each safetensors manifest agrees with its header bytes."""
    needed: dict[str, list[str]] = {}
    sizes: dict[str, int] = {}
    for label, manifest in manifests.items():
        for oid, size in dict(manifest.pieces).items():
            needed.setdefault(oid, []).append(label)
            sizes[oid] = size
    if all_objects:
        for oid in store.iter_object_ids():
            needed.setdefault(oid, [UNREFERENCED])

    def check(oid):
        try:
            store.verify(oid, sizes.get(oid))
        except ObjectNotFoundError:
            return FsckProblem(oid, "missing", tuple(sorted(needed[oid])))
        except CorruptObjectError as e:
            return FsckProblem(oid, "corrupt", tuple(sorted(needed[oid])), e.reason)
        return None

    report = FsckReport(objects_checked=len(needed))
    with ThreadPoolExecutor(WORKERS) as pool:
        report.problems = [p for p in pool.map(check, sorted(needed)) if p is not None]
    bad = {p.oid for p in report.problems}
    for label, manifest in sorted(manifests.items()):
        if manifest.kind == "safetensors" and manifest.pieces[0][0] not in bad:
            reason = check_manifest_content(store, manifest)
            if reason:
                report.manifest_problems.append(ManifestProblem(label, reason))
    return report


def check_manifest_content(store: ObjectStore, manifest: Manifest) -> str | None:
    """Why a safetensors manifest disagrees with the header bytes it stores, or None.

    Manifest.from_bytes checks that the manifest is consistent in itself; this checks it
    against the file: the header piece must parse, and its tensors (name, dtype, shape,
    offsets) and metadata must be exactly the ones the manifest lists.
    """
    oid, size = manifest.pieces[0]
    try:
        head = store.get_bytes(oid, size)
    except StoreError:
        return None  # the object itself is missing or corrupt: reported on its own
    layout = st.parse_layout(head, manifest.size)
    if layout is None or layout.header_size != size:
        return "its header piece is not a valid safetensors header for a file of this size"
    in_file = {t.name: t for t in layout.tensors}
    for entry in manifest.tensors:
        span = in_file.pop(entry.name, None)
        if span is None:
            return f"tensor {entry.name[:80]!r} is not in the file's header"
        listed = (entry.dtype, entry.shape, entry.offsets)
        actual = (span.dtype, span.shape, (span.begin, span.end))
        if listed != actual:
            return (f"tensor {entry.name[:80]!r} is {_describe(*listed)} in the manifest but "
                    f"{_describe(*actual)} in the file's header")
    if in_file:
        return f"tensor {sorted(in_file)[0][:80]!r} of the file's header is not in the manifest"
    if layout.metadata != manifest.metadata:
        return "its metadata differs from the file's header"
    return None


def _describe(dtype, shape, offsets) -> str:
    return f"{dtype} {list(shape)} at bytes {offsets[0]}-{offsets[1]}"


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
            # Only the store's own temporaries (<pid>-<uuid hex>): other layers keep
            # directories of their own in .git/bgit/ and they are not the store's to delete.
            if not STORE_TMP_NAME.match(entry.name) or not entry.is_file(follow_symlinks=False):
                continue
            try:
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry.path)
                    report.removed_tmp_files += 1
            except FileNotFoundError:
                continue
    return report
