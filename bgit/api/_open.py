"""Opening a repository the way every api function does."""

from __future__ import annotations

import os

from bgit.remote import install_fetcher
from bgit.repo import Repository
from bgit.util.progress import SILENT, Reporter

RepoLike = Repository | str | os.PathLike


def open_repo(repo: RepoLike = ".", reporter: Reporter = SILENT) -> Repository:
    """A Repository (found upwards from a path, or passed through) whose checkouts and reads
    fetch missing payloads lazily from the default remote's store, verified."""
    if not isinstance(repo, Repository):
        repo = Repository.open(repo)
    if repo.object_fetcher is None:
        install_fetcher(repo, progress=TransferProgress(reporter))
    return repo


class TransferProgress:
    """The remote layer's transfer callbacks (start/advance/finish) as a Reporter task."""

    def __init__(self, reporter: Reporter = SILENT):
        self.reporter, self.task, self.bytes = reporter, None, 0

    def start(self, label: str, total_objects: int) -> None:
        self.task, self.bytes = self.reporter.task(label, total=total_objects, unit="obj"), 0

    def advance(self, wire_bytes: int) -> None:
        if self.task is not None:
            self.bytes += wire_bytes
            self.task(1, bytes=_human(self.bytes))

    def finish(self) -> None:
        if self.task is not None:
            self.task.close()
            self.task = None


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"
