"""Errors of the config layer: every problem names ``FILE:LINE: KEY``."""

from __future__ import annotations

from dataclasses import dataclass

from bgit.errors import BgitError


@dataclass(frozen=True)
class ConfigIssue:
    """One problem (or notice) in an input file; ``str()`` is ``FILE:LINE: KEY: message``.

    A config built in Python has no file: ``str()`` is then ``KEY: message``."""

    file: str
    line: int | None
    key: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        parts = [part for part in (where, self.key) if part]
        return ": ".join(parts + [self.message])


class ConfigError(BgitError):
    """An input.yml that cannot be used. ``str()`` is the first issue; ``issues`` holds all."""

    def __init__(self, issues: list[ConfigIssue]):
        if not issues:
            raise ValueError("ConfigError needs at least one issue")
        self.issues = list(issues)
        super().__init__(str(self.issues[0]))


class ConfigValueError(ConfigError, ValueError):
    """A setting given in Python (not read from a file) that breaks its declaration:
    ``str()`` is ``KEY: message``, e.g. ``BAKE.epochs: must be in [1, 1000], got 0``."""

    def __init__(self, key: str, message: str):
        self.key, self.reason = key, message
        super().__init__([ConfigIssue("", None, key, message)])


class ConfigPathError(BgitError):
    """A file named by a config that may not be read (outside the repository, /proc, a FIFO...).

    ``str()`` is the reason, which quotes the path as written; the loader reports it at the
    key's line (``FILE:LINE: KEY: reason``)."""

    def __init__(self, written: str, reason: str):
        self.written, self.reason = written, reason
        super().__init__(reason)
