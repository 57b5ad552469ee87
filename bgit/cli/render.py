"""Terminal rendering shared by the commands: progress bars, tables, JSON."""

from __future__ import annotations

import json
import sys
import time

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bgit.pipeline.progress import SILENT

stderr_console = Console(stderr=True)


def echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


class _RichTask:
    def __init__(self, name: str, total: int | None, unit: str, plain: bool):
        self.name, self.unit, self.plain = name, unit, plain
        self.done, self.total = 0, total
        self.started = self.last_line = time.monotonic()
        self.info = ""
        if plain:
            self.progress = None
            return
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"), console=stderr_console, transient=False,
        )
        self.progress.start()
        self.task_id = self.progress.add_task(name, total=total, rate="", info="")

    def __call__(self, advance: int = 0, total: int | None = None, **info) -> None:
        self.done += advance
        if total is not None:
            self.total = total
        self.info = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
        elapsed = max(time.monotonic() - self.started, 1e-9)
        rate = f"{self.done / elapsed:,.1f} {self.unit}/s" if self.unit else ""
        if self.progress is not None:
            self.progress.update(self.task_id, completed=self.done, total=self.total, rate=rate, info=self.info)
        elif time.monotonic() - self.last_line > 10:  # not a terminal: a line every 10 s
            self.last_line = time.monotonic()
            of = f"/{self.total}" if self.total else ""
            click.echo(f"{self.name}: {self.done}{of} {self.unit} {rate} {self.info}", err=True)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class RichReporter:
    """The CLI's :class:`bgit.pipeline.progress.Reporter`: bars on a terminal, lines elsewhere."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.plain = not sys.stderr.isatty()

    def task(self, name: str, total: int | None = None, unit: str = ""):
        if self.quiet:
            return SILENT.task(name, total, unit)
        return _RichTask(name, total, unit, plain=self.plain)

    def message(self, text: str) -> None:
        if not self.quiet:
            click.echo(text, err=True)
