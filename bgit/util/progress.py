"""How long-running library code reports progress without knowing about terminals.

A phase asks its :class:`Reporter` for a task and calls it as work advances::

    task = reporter.task("rollout", total=tokens_expected, unit="tok")
    task(advance=n_new_tokens, kl=0.3)     # any keyword is shown beside the bar
    task.close()

Byte transfers (push, fetch, checkout) use the same protocol with ``unit="B"``. The CLI
passes a rich-backed reporter (:mod:`bgit.cli.render`); library callers get :data:`SILENT`.
"""

from __future__ import annotations

from typing import Protocol


class Task(Protocol):
    def __call__(self, advance: int = 0, total: int | None = None, **info) -> None: ...

    def close(self) -> None: ...


class Reporter(Protocol):
    def task(self, name: str, total: int | None = None, unit: str = "") -> Task: ...

    def message(self, text: str) -> None: ...


class _SilentTask:
    def __call__(self, advance: int = 0, total: int | None = None, **info) -> None:
        pass

    def close(self) -> None:
        pass


class SilentReporter:
    def task(self, name: str, total: int | None = None, unit: str = "") -> Task:
        return _SilentTask()

    def message(self, text: str) -> None:
        pass


SILENT = SilentReporter()


def human_size(n: float, binary: bool = True) -> str:
    """1536 -> '1.5 KiB' (binary) or 1500 -> '1.5 kB' (decimal)."""
    base, units = (1024, ("B", "KiB", "MiB", "GiB")) if binary else (1000, ("B", "kB", "MB", "GB"))
    value = float(n)
    for unit in units:
        if value < base or unit == units[-1]:
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= base
    return f"{n} B"
