"""Errors of the config layer: every problem names ``FILE:LINE: KEY``."""

from __future__ import annotations

from dataclasses import dataclass

from bgit.errors import BgitError


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in an input file; ``str()`` is ``FILE:LINE: KEY: message``."""

    file: str
    line: int | None
    key: str | None
    message: str

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        return f"{where}: {self.key}: {self.message}" if self.key else f"{where}: {self.message}"


class ConfigError(BgitError):
    """An input.yml that cannot be used. ``str()`` is the first issue; ``issues`` holds all."""

    def __init__(self, issues: list[ConfigIssue]):
        if not issues:
            raise ValueError("ConfigError needs at least one issue")
        self.issues = list(issues)
        super().__init__(str(self.issues[0]))
