"""Terminal rendering shared by the commands: JSON, coloured lines, tables, sizes, progress.

Colour and tables (rich) only when stdout is a terminal; plain text otherwise. Progress
goes to stderr (bars on a terminal, a line every 10 s elsewhere) so ``--json`` stays clean.
"""

from __future__ import annotations

import json
import os
import sys
import time
from contextlib import contextmanager

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from bgit.util.progress import SILENT

stderr_console = Console(stderr=True)

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def echo_json(data) -> None:
    """``data`` (anything with ``to_json()``, lists of them, or plain data) as indented JSON."""
    click.echo(json.dumps(_plain(data), indent=2, sort_keys=True, default=str))


@contextmanager
def libraries_print_to_stderr(active: bool = True):
    """While ``active`` (a --json run), whatever the libraries print to stdout (DeepSpeed's
    log lines, compiled extensions writing to file descriptor 1) goes to stderr instead, so
    that stdout stays one JSON document."""
    if not active:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        os.dup2(2, 1)
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _plain(data):
    if hasattr(data, "to_json"):
        return data.to_json()
    if isinstance(data, (list, tuple)):
        return [_plain(item) for item in data]
    if isinstance(data, dict):
        return {key: _plain(value) for key, value in data.items()}
    return data


def tty() -> bool:
    return sys.stdout.isatty()


def say(text: str, style: str | None = None, err: bool = False) -> None:
    """One line, coloured with a rich style on a terminal, plain otherwise."""
    stream = sys.stderr if err else sys.stdout
    if style and stream.isatty():
        from rich.markup import escape

        Console(highlight=False, soft_wrap=True, stderr=err).print(f"[{style}]{escape(text)}[/]")
    else:
        click.echo(text, err=err)


def table(headers, rows, right=()) -> None:
    if tty():
        from rich.table import Table

        grid = Table(box=None)
        for i, header in enumerate(headers):
            grid.add_column(header, justify="right" if i in right else "left")
        for row in rows:
            grid.add_row(*row)
        Console().print(grid)
        return
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    for row in (headers, *rows):
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        click.echo("  ".join(cells).rstrip())


def fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


class _RichTask:
    """One progress bar (or, off a terminal, a line every 10 s). Byte tasks (unit "B") only
    draw once there is enough to wait for."""

    MIN_BYTES = 32 << 20

    def __init__(self, name: str, total: int | None, unit: str, plain: bool):
        self.name, self.unit, self.plain = name, unit, plain
        self.done, self.total = 0, total
        self.started = self.last_line = time.monotonic()
        self.progress = None

    def _start(self) -> None:
        self.progress = Progress(
            TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"), console=stderr_console, transient=False,
        )
        self.progress.start()
        self.task_id = self.progress.add_task(self.name, total=self.total, rate="", info="")

    def __call__(self, advance: int = 0, total: int | None = None, **info) -> None:
        self.done += advance
        if total is not None:
            self.total = total
        text = " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items())
        rate = f"{self.done / max(time.monotonic() - self.started, 1e-9):,.1f} {self.unit}/s" if self.unit else ""
        if self.plain:
            if time.monotonic() - self.last_line > 10:
                self.last_line = time.monotonic()
                of = f"/{self.total}" if self.total else ""
                click.echo(f"{self.name}: {self.done}{of} {self.unit} {rate} {text}", err=True)
            return
        if self.progress is None:
            if self.unit == "B" and (self.total or 0) < self.MIN_BYTES:
                return
            self._start()
        self.progress.update(self.task_id, completed=self.done, total=self.total, rate=rate, info=text)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None


class RichReporter:
    """The CLI's :class:`bgit.util.progress.Reporter`: bars on a terminal, lines elsewhere."""

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
