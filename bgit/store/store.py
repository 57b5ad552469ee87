"""Store: the object database plus whole-file, lock and maintenance operations."""

from typing import Iterable, Mapping

from . import files, lock, maintenance
from .manifest import Manifest
from .objects import ObjectStore


class Store(ObjectStore):
    """The payload store at ``root`` (``<repo>/.git/bgit``). ``Store.init(root)`` creates one."""

    def store_file(self, path) -> Manifest:
        return files.store_file(self, path)

    def materialise(self, manifest: Manifest, dest) -> None:
        files.materialise(self, manifest, dest)

    def lock(self, holder: str):
        """Context manager: exclusive writer lock; LockedError names the current holder."""
        return lock.repo_lock(self.root, holder)

    def fsck(self, manifests: Mapping[str, Manifest], all_objects: bool = False) -> maintenance.FsckReport:
        return maintenance.fsck(self, manifests, all_objects)

    def gc(self, reachable_oids: Iterable[str], grace_seconds: float = 3600.0,
           now: float | None = None) -> maintenance.GcReport:
        return maintenance.gc(self, reachable_oids, grace_seconds, now)

    def stored_bytes(self) -> int:
        """Bytes all objects take on disk."""
        return sum(self.object_size(oid) for oid in self.iter_object_ids())
