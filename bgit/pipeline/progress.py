"""Moved to :mod:`bgit.util.progress`; kept while callers move over."""

from bgit.util.progress import SILENT, Reporter, SilentReporter, Task

__all__ = ["SILENT", "Reporter", "SilentReporter", "Task"]
