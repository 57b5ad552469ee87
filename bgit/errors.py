"""The one base error of bgit, and the one-line form of an operating-system error.

Every layer derives its own errors from :class:`BgitError`; ``str(error)`` is a
single line meant for a user. The CLI prints it as ``Error: <message>`` and exits
with :attr:`BgitError.exit_code`. Anything else that escapes is a bug and keeps its
traceback (the CLI still turns a stray OSError into one line, as a last resort).
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import Iterator


class BgitError(Exception):
    """A failure the user can act on; the message is one line."""

    exit_code = 1


class OsOperationError(BgitError):
    """An OS error (full disk, permission, missing path, read-only file system) met while
    doing ``op`` on ``path``: ``cannot write adapter/x.safetensors: No space left on device``.
    ``errno`` and ``strerror`` are the OS's; the original OSError is the ``__cause__``."""

    def __init__(self, op: str, path, strerror: str, errno: int | None = None) -> None:
        self.op, self.path, self.strerror, self.errno = op, str(path), strerror, errno
        super().__init__(f"cannot {op} {path}: {strerror}")

    @classmethod
    def wrap(cls, op: str, path, error: OSError) -> "OsOperationError":
        strerror = error.strerror or (os.strerror(error.errno) if error.errno else str(error))
        return cls(op, path, strerror, error.errno)


@contextmanager
def os_errors(op: str, path) -> Iterator[None]:
    """Turn an OSError raised inside into an :class:`OsOperationError` naming ``op`` and
    ``path`` (the path the user knows, e.g. a work-tree path, not a temporary file)."""
    try:
        yield
    except OSError as error:
        raise OsOperationError.wrap(op, path, error) from error
