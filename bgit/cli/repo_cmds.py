"""Repository commands: init, add, commit, status, log, show, branch, checkout, tag, fsck, gc.

Thin wrappers over :class:`bgit.repo.Repository`. Colour and tables (rich) only when
stdout is a terminal; plain text otherwise; ``--json`` for machines.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _open():
    from bgit.repo import Repository

    return Repository.open(".")


def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _tty() -> bool:
    return sys.stdout.isatty()


def _say(text: str, style: str | None = None) -> None:
    """One line, coloured with a rich style on a terminal, plain otherwise."""
    if style and _tty():
        from rich.console import Console
        from rich.markup import escape

        Console(highlight=False, soft_wrap=True).print(f"[{style}]{escape(text)}[/]")
    else:
        click.echo(text)


def human_size(n: int) -> str:
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{int(value)} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    return f"{n} B"


# -- init / add / commit --------------------------------------------------------------------


@click.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
def init_cmd(directory: str) -> None:
    """Create a bgit repository (git + payload store) with an example input.yml.

    Example: bgit init demo && cd demo && bgit bake -m "first bake"
    """
    from bgit.repo import Repository
    from bgit.repo.hooks import install_sample_hooks

    repo = Repository.init(directory, example=_example_files())
    install_sample_hooks(repo)  # disabled samples, as <name>.disabled
    click.echo(f"Initialized empty bgit repository in {repo.git.path}")
    if (repo.root / "input.yml").exists():
        click.echo(f"Edit {repo.root / 'input.yml'} and run: bgit bake")


def _example_files() -> dict[str, bytes] | None:
    try:
        from bgit.config.examples import example_files
    except ImportError:
        return None
    return example_files("yoda")


@click.command("add")
@click.argument("paths", nargs=-1, type=click.Path(readable=False))  # the library names unreadable files
@click.option("-A", "--all", "add_all", is_flag=True, help="Stage every change in the work tree.")
def add_cmd(paths: tuple[str, ...], add_all: bool) -> None:
    """Stage files; safetensors, JSONL and big files go to the payload store.

    Example: bgit add adapter/ input.yml
    """
    if not paths and not add_all:
        raise click.UsageError("nothing specified, nothing added (give PATH... or -A)")
    repo = _open()
    repo.add([Path.cwd() / p for p in paths], all=add_all)


@click.command("commit")
@click.option("-m", "--message", required=True, help="Commit message.")
def commit_cmd(message: str) -> None:
    """Record the staged changes as a new commit.

    Example: bgit commit -m "Tune the Yoda prompt"
    """
    repo = _open()
    commit_id = repo.commit(message)
    where = repo.current_branch() or "detached HEAD"
    click.echo(f"[{where} {commit_id[:7]}] {message.splitlines()[0] if message else ''}")


# -- status ---------------------------------------------------------------------------------


@click.command("status")
@json_option
def status_cmd(as_json: bool) -> None:
    """Show staged, modified and untracked files.

    Example: bgit status --json
    """
    status = _open().status()
    if as_json:
        _echo_json(status.to_json())
        return
    if status.branch:
        click.echo(f"On branch {status.branch}")
    else:
        click.echo(f"HEAD detached at {status.head[:7]}")
    if status.head is None:
        click.echo("No commits yet")
    sections = [("Changes to be committed:", status.staged, "green"),
                ("Changes not staged for commit:", status.modified, "red")]
    for title, changes, style in sections:
        if changes:
            click.echo(title)
            for change in changes:
                _say(f"  {change.kind + ':':<10} {change.path}", style)
    if status.untracked:
        click.echo("Untracked files:")
        for path in status.untracked:
            _say(f"  {path}", "red")
    if status.clean:
        click.echo("nothing to commit, working tree clean")


# -- log / show -----------------------------------------------------------------------------


@click.command("log")
@click.argument("ref", default="HEAD")
@click.option("--oneline", is_flag=True, help="One line per commit.")
@click.option("--graph", is_flag=True, help="Draw the commit graph on the left.")
@click.option("-n", "--max-count", "n", type=click.IntRange(min=1), help="Show at most N commits.")
@json_option
def log_cmd(ref: str, oneline: bool, graph: bool, n: int | None, as_json: bool) -> None:
    """Show the commit history, with a one-line summary of each bake.

    Example: bgit log --oneline --graph -n 10
    """
    from bgit.repo.history import format_bake, graph_lines

    repo = _open()
    entries = repo.log(ref, n)
    evals = _eval_notes(repo, entries)
    if as_json:
        _echo_json([{**e.to_json(), "eval": evals.get(e.id)} for e in entries])
        return
    rows = graph_lines(entries) if graph else [("", e) for e in entries]
    for prefix, entry in rows:
        if entry is None:
            click.echo(prefix)
            continue
        lines = _format_entry(entry, oneline, format_bake, evals.get(entry.id))
        rest = prefix.replace("*", "|" if entry.parents else " ") if graph else ""
        for i, (text, style) in enumerate(lines):
            lead = (prefix if i == 0 else rest) + (" " if graph else "")
            _say((lead + text).rstrip(), style)


def _eval_notes(repo, entries) -> dict:
    """Eval results kept as git notes by ``bgit eval`` / ``bgit bake``, by commit id."""
    from bgit.evaluate import read_eval

    found = {}
    for entry in entries:
        note = read_eval(repo, entry.id)
        if note:
            found[entry.id] = note
    return found


def _format_entry(entry, oneline: bool, format_bake, evaluation=None) -> list[tuple[str, str | None]]:
    from bgit.evaluate.notes import eval_summary

    refs = f" ({', '.join(entry.refs)})" if entry.refs else ""
    bake = format_bake(entry.bake) if entry.bake else ""
    if evaluation:
        bake = f"{bake}; {eval_summary(evaluation)}" if bake else eval_summary(evaluation)
    if oneline:
        tail = f"  [{bake}]" if bake else ""
        return [(f"{entry.id[:7]}{refs} {entry.summary}{tail}", None)]
    lines: list[tuple[str, str | None]] = [(f"commit {entry.id}{refs}", "yellow")]
    if len(entry.parents) > 1:
        lines.append(("Merge: " + " ".join(p[:7] for p in entry.parents), None))
    lines += [(f"Author: {entry.author} <{entry.email}>", None), (f"Date:   {entry.date()}", None), ("", None)]
    lines += [(f"    {line}", None) for line in entry.message.rstrip("\n").splitlines()]
    if bake:
        lines += [("", None), (f"    {bake}", "cyan")]
    lines.append(("", None))
    return lines


@click.command("show")
@click.argument("ref", default="HEAD")
@json_option
def show_cmd(ref: str, as_json: bool) -> None:
    """Show a commit and its files (payloads with their manifest kind, size and tensors).

    Example: bgit show HEAD~1
    """
    from bgit.repo.history import format_bake

    repo = _open()
    result = repo.show(ref)
    evaluation = _eval_notes(repo, [result.entry]).get(result.entry.id)
    if as_json:
        _echo_json({**result.to_json(), "eval": evaluation})
        return
    for text, style in _format_entry(result.entry, False, format_bake, evaluation):
        _say(text, style)
    headers = ("path", "size", "kind", "tensors")
    rows = [(f.path, human_size(f.size), f.kind, "" if f.tensors is None else str(f.tensors))
            for f in result.files]
    _table(headers, rows, right=(1, 3))


def _table(headers, rows, right=()) -> None:
    if _tty():
        from rich.console import Console
        from rich.table import Table

        table = Table(box=None)
        for i, header in enumerate(headers):
            table.add_column(header, justify="right" if i in right else "left")
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    widths = [max(len(str(x)) for x in col) for col in zip(headers, *rows)]
    for row in (headers, *rows):
        cells = [str(c).rjust(w) if i in right else str(c).ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        click.echo("  ".join(cells).rstrip())


# -- branches, tags, checkout ---------------------------------------------------------------


@click.command("branch")
@click.argument("name", required=False)
@click.argument("start", required=False, default="HEAD")
@click.option("-d", "--delete", "delete", metavar="NAME", help="Delete branch NAME.")
@json_option
def branch_cmd(name: str | None, start: str, delete: str | None, as_json: bool) -> None:
    """List branches, create NAME (at START, default HEAD) or delete one with -d.

    Example: bgit branch experiment && bgit branch -d experiment
    """
    repo = _open()
    if delete:
        repo.delete_branch(delete)
        click.echo(f"Deleted branch {delete}")
        return
    if name:
        info = repo.create_branch(name, start)
        if as_json:
            _echo_json(info.to_json())
        return
    branches = repo.branches()
    if as_json:
        _echo_json([b.to_json() for b in branches])
        return
    for b in branches:
        _say(f"{'*' if b.current else ' '} {b.name}  {b.commit[:7]} {b.summary}", "green" if b.current else None)


@click.command("checkout")
@click.argument("ref", required=False)
@click.option("-b", "new_branch", metavar="NAME", help="Create branch NAME at REF and switch to it.")
@click.option("-f", "--force", is_flag=True, help="Overwrite uncommitted changes.")
def checkout_cmd(ref: str | None, new_branch: str | None, force: bool) -> None:
    """Switch to a branch, tag or commit and materialise its payload files.

    Example: bgit checkout -b retry HEAD~1
    """
    if ref is None and new_branch is None:
        raise click.UsageError("missing REF (a branch, tag or commit)")
    from bgit.cli.remote_cmds import TransferBar
    from bgit.remote import install_fetcher

    repo = _open()
    ref = ref or "HEAD"
    install_fetcher(repo, progress=TransferBar())  # payloads missing here come from the remote's store
    with _Progress() as progress:
        result = repo.checkout(ref, force=force, new_branch=new_branch, progress=progress)
    if result.left_behind_count:
        _warn_left_behind(result)
    if new_branch:
        click.echo(f"Switched to a new branch '{new_branch}'", err=True)
    elif repo.current_branch():
        click.echo(f"Switched to branch '{repo.current_branch()}'", err=True)
    else:
        head = repo.head_commit()
        click.echo(f"HEAD is now at {str(head.id)[:7]} {head.message.splitlines()[0] if head.message else ''}", err=True)


def _warn_left_behind(result) -> None:
    """git's warning when a checkout leaves commits of a detached HEAD that no ref reaches."""
    n = result.left_behind_count
    lines = [f"Warning: you are leaving {n} commit{'s' if n > 1 else ''} behind, not connected to",
             "any of your branches:", ""]
    lines += [f"  {c.id[:7]} {c.summary}" for c in result.left_behind]
    if n > len(result.left_behind):
        lines.append(f"  ... and {n - len(result.left_behind)} more.")
    it = "it" if n == 1 else "them"
    lines += ["", f"If you want to keep {it}, create a new branch:", "",
              f"  bgit branch <new-branch-name> {result.left_behind[0].id[:7]}", ""]
    click.echo("\n".join(lines), err=True)


class _Progress:
    """A rich progress bar over the payload bytes a checkout writes (terminal only, and only
    when there is enough to wait for)."""

    MIN_BYTES = 32 << 20

    def __init__(self) -> None:
        self.bar = None
        self.task = None

    def __enter__(self):
        return self

    def __call__(self, path: str, nbytes: int, total: int) -> None:
        if self.bar is None:
            if total < self.MIN_BYTES or not sys.stderr.isatty():
                return
            from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

            self.bar = Progress(TextColumn("checkout"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                                TextColumn("{task.fields[path]}"), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("checkout", total=total, path="")
        self.bar.update(self.task, advance=nbytes, path=path)

    def __exit__(self, *exc) -> None:
        if self.bar is not None:
            self.bar.stop()


@click.command("tag")
@click.argument("name", required=False)
@click.argument("ref", required=False, default="HEAD")
@click.option("-m", "--message", help="Make an annotated tag with this message.")
@click.option("-d", "--delete", "delete", metavar="NAME", help="Delete tag NAME.")
@json_option
def tag_cmd(name: str | None, ref: str, message: str | None, delete: str | None, as_json: bool) -> None:
    """List tags, or tag REF (default HEAD) as NAME.

    Example: bgit tag yoda-v1 HEAD
    """
    repo = _open()
    if delete:
        repo.delete_tag(delete)
        click.echo(f"Deleted tag {delete}")
        return
    if name:
        info = repo.create_tag(name, ref, message)
        if as_json:
            _echo_json(info.to_json())
        return
    tags = repo.tags()
    if as_json:
        _echo_json([t.to_json() for t in tags])
        return
    for t in tags:
        click.echo(f"{t.name}  {t.commit[:7]} {t.summary}")


# -- maintenance ----------------------------------------------------------------------------


@click.command("fsck")
@click.option("--all", "all_objects", is_flag=True, help="Also verify objects nothing references.")
@json_option
@click.pass_context
def fsck_cmd(ctx: click.Context, all_objects: bool, as_json: bool) -> None:
    """Verify every store object that a reachable commit needs; exit 1 on any problem.

    Example: bgit fsck --json
    """
    result = _open().fsck(all_objects=all_objects)
    if as_json:
        _echo_json(result.to_json())
    elif result.ok:
        click.echo(f"ok: {result.manifests} manifests, {result.objects_checked} objects verified")
    else:
        for problem in result.problems:
            click.echo(problem, err=True)
    if not result.ok:
        ctx.exit(1)


@click.command("gc")
@click.option("--grace", type=click.FloatRange(min=0), default=3600.0, show_default=True,
              help="Keep unreachable objects younger than this many seconds.")
@click.option("--phase-days", type=click.FloatRange(min=0), default=14.0, show_default=True,
              help="Keep cached bake phases no commit uses for this many days.")
@json_option
def gc_cmd(grace: float, phase_days: float, as_json: bool) -> None:
    """Delete store objects that no branch, tag, HEAD or index reaches, and old unused cached phases.

    Example: bgit gc --grace 0 --phase-days 0
    """
    from bgit.pipeline.phases import gc

    result = gc(_open(), grace_seconds=grace, phase_days=phase_days)
    if as_json:
        _echo_json(result.to_json())
        return
    report = result.store
    click.echo(f"removed {report.removed_objects} objects ({human_size(report.removed_bytes)}), "
               f"kept {report.kept_objects} reachable and {report.kept_recent} recent")
    pinned = f"; kept {result.kept_pinned_phases} in use by a running bake" if result.kept_pinned_phases else ""
    click.echo(f"removed {result.removed_phases} cached phases ({human_size(result.removed_phase_bytes)}) "
               f"older than {phase_days:g} days that no commit uses{pinned}")


COMMANDS = [init_cmd, add_cmd, commit_cmd, status_cmd, log_cmd, show_cmd, branch_cmd, checkout_cmd,
            tag_cmd, fsck_cmd, gc_cmd]
