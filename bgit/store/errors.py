"""Errors of the payload store; every one is a one-line :class:`BgitError`."""

from bgit.errors import BgitError


class StoreError(BgitError):
    """Base of every store failure."""


class StoreNotFoundError(StoreError):
    def __init__(self, root):
        self.root = root
        super().__init__(f"no bgit store at {root}")


class InvalidObjectIdError(StoreError):
    def __init__(self, oid):
        self.oid = oid
        super().__init__(f"invalid object id {str(oid)[:80]!r} (expected 64 hex digits)")


class ObjectNotFoundError(StoreError):
    def __init__(self, oid):
        self.oid = oid
        super().__init__(f"object {oid} is missing from the store")


class CorruptObjectError(StoreError):
    def __init__(self, oid, reason="content does not match its id"):
        self.oid = oid
        self.reason = reason
        super().__init__(f"corrupt object {oid}: {reason}")


class ManifestError(StoreError):
    def __init__(self, reason):
        self.reason = reason
        super().__init__(f"invalid manifest: {reason}")


class FileCorruptError(StoreError):
    """A materialised file does not hash to its manifest's whole-file id."""

    def __init__(self, dest, expected, actual):
        self.dest, self.expected, self.actual = dest, expected, actual
        super().__init__(f"{dest}: content hash {actual} does not match manifest {expected}")


class LockedError(StoreError):
    def __init__(self, pid, holder, since):
        self.pid, self.holder, self.since = pid, holder, since
        super().__init__(f"repository is locked by pid {pid} ({holder}) since {since}")
