"""Remote commands: remote, push, fetch, pull, clone.

Thin wrappers over :mod:`bgit.remote`. Transfers draw a rich progress bar (objects,
bytes, bytes/s) on a terminal; ``--json`` prints machine-readable results.
"""

from __future__ import annotations

import json
import sys
import time

import click

json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _open():
    from bgit.repo import Repository

    return Repository.open(".")


def _echo_json(data) -> None:
    click.echo(json.dumps(data, indent=2, sort_keys=True, default=str))


def _human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} GB"


class TransferBar:
    """bgit.remote's Progress drawn with rich on stderr: objects done, bytes, bytes/s."""

    def __init__(self, quiet: bool = False) -> None:
        self.enabled = not quiet and sys.stderr.isatty()
        self.bar = None

    def start(self, label, total_objects):
        if not self.enabled or not total_objects:
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bytes, self.started = 0, time.monotonic()
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                            TextColumn("objects  {task.fields[volume]}  {task.fields[rate]}"),
                            TimeElapsedColumn(), console=Console(stderr=True), transient=False)
        self.bar.start()
        self.task = self.bar.add_task(label, total=total_objects, volume="", rate="")

    def advance(self, nbytes):
        if self.bar is None:
            return
        self.bytes += nbytes
        rate = self.bytes / max(time.monotonic() - self.started, 1e-9)
        self.bar.update(self.task, advance=1, volume=_human(self.bytes), rate=f"{_human(rate)}/s")

    def finish(self):
        if self.bar is not None:
            self.bar.stop()
            self.bar = None


# -- remote -----------------------------------------------------------------------------------

@click.group("remote", invoke_without_command=True)
@click.option("-v", "--verbose", is_flag=True, help="Show URLs and payload stores.")
@json_option
@click.pass_context
def remote_cmd(ctx: click.Context, verbose: bool, as_json: bool) -> None:
    """List remotes; 'remote add' and 'remote remove' manage them.

    A remote is kept in .git/config (remote.NAME.url, plus remote.NAME.bgitstore for the
    payload store), so plain git sees it too.

    Example: bgit remote -v
    """
    if ctx.invoked_subcommand is not None:
        return
    from bgit.remote import list_remotes, store_url_of

    remotes = list_remotes(_open().git)
    if as_json:
        _echo_json([r.to_json() for r in remotes])
        return
    for r in remotes:
        if verbose:
            click.echo(f"{r.name}\t{r.url} (graph)")
            click.echo(f"{r.name}\t{store_url_of(r) or '-'} (payloads)")
        else:
            click.echo(r.name)


@remote_cmd.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--store", "store_url", metavar="STORE_URL",
              help="Payload store: a directory or s3://BUCKET/PREFIX (default for a local path "
                   "URL: PATH/bgit-objects).")
def remote_add_cmd(name: str, url: str, store_url: str | None) -> None:
    """Add a remote: the commit graph goes to URL (path, file://, git://, ssh, https),
    payloads to the store.

    Example: bgit remote add origin git@host:team/bakes.git --store s3://bakes/team
    """
    from bgit.remote import add_remote, store_url_of

    remote = add_remote(_open().git, name, url, store_url)
    click.echo(f"Added remote '{name}': {remote.url} (payloads: {store_url_of(remote) or 'none'})")


@remote_cmd.command("remove")
@click.argument("name")
def remote_remove_cmd(name: str) -> None:
    """Remove a remote, its remote-tracking branches and what bgit knew of its store.

    Example: bgit remote remove origin
    """
    from bgit.remote import remove_remote
    from bgit.remote.known import forget_remote

    repo = _open()
    remove_remote(repo.git, name)
    forget_remote(repo.bgit_dir, name)
    click.echo(f"Removed remote '{name}'")


# -- push, fetch, pull --------------------------------------------------------------------------

def _short(ref: str) -> str:
    return ref.removeprefix("refs/heads/").removeprefix("refs/tags/").removeprefix("refs/remotes/")


@click.command("push")
@click.argument("remote", required=False)
@click.argument("branch", required=False)
@click.option("--all", "all_branches", is_flag=True, help="Push every local branch.")
@click.option("--tags", is_flag=True, help="Also push every tag.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@json_option
def push_cmd(remote, branch, all_branches, tags, quiet, as_json) -> None:
    """Upload missing payloads, then update the remote's refs (fast-forward only).

    Pushes the current branch by default. A local path that does not exist yet is created
    as a bare repository with its payloads in PATH/bgit-objects. An interrupted push
    resumes without re-sending what arrived.

    Example: bgit push origin main
    """
    from bgit.remote import push

    if branch and all_branches:
        raise click.UsageError("give a BRANCH or --all, not both")
    repo = _open()
    result = push(repo, remote, [branch] if branch else (), all_branches, tags,
                  progress=TransferBar(quiet or as_json))
    if as_json:
        _echo_json(result.to_json())
        return
    if result.created_remote:
        click.echo(f"Created a bare repository for '{result.remote}'")
    t = result.transfer
    if t.objects:
        click.echo(f"Sent {t.objects} objects ({_human(t.wire_bytes)}) to '{result.remote}'")
    for ref, old, new in result.updated:
        arrow = f"{old[:8]}..{new[:8]}" if old else f"* [new] {new[:8]}"
        click.echo(f"  {arrow}  {_short(ref)} -> {_short(ref)}")
    if not result.updated:
        click.echo("Everything up-to-date")


@click.command("fetch")
@click.argument("remote", required=False)
@click.option("--payloads", is_flag=True,
              help="Also download the payloads the fetched branch tips need (checkout otherwise "
                   "fetches them when needed).")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@json_option
def fetch_cmd(remote, payloads, quiet, as_json) -> None:
    """Download commits and manifests from a remote into refs/remotes/REMOTE/*.

    Example: bgit fetch origin && bgit log origin/main
    """
    from bgit.remote import fetch

    result = fetch(_open(), remote, payloads=payloads, progress=TransferBar(quiet or as_json))
    if as_json:
        _echo_json(result.to_json())
        return
    for ref, old, new in result.updated:
        if new is None:
            click.echo(f"  - [deleted]  {_short(ref)}")
        else:
            click.echo(f"  {old[:8] + '..' if old else '* [new] '}{new[:8]}  {_short(ref)}")
    if result.transfer.objects:
        click.echo(f"Received {result.transfer.objects} objects ({_human(result.transfer.wire_bytes)})")


@click.command("pull")
@click.argument("remote", required=False)
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
@json_option
def pull_cmd(remote, quiet, as_json) -> None:
    """Fetch and fast-forward the current branch to its upstream (never merges).

    A branch that has diverged is reported; rebase or merge it with git.

    Example: bgit pull origin
    """
    from bgit.remote import pull

    result = pull(_open(), remote, progress=TransferBar(quiet or as_json))
    if as_json:
        _echo_json(result.to_json())
    elif result.fast_forwarded:
        old = result.old[:8] if result.old else "(none)"
        click.echo(f"Fast-forward {result.branch}: {old}..{result.new[:8]} ({result.upstream})")
    else:
        click.echo("Already up to date.")


@click.command("clone")
@click.argument("url")
@click.argument("directory", required=False)
@click.option("--store", "store_url", metavar="STORE_URL",
              help="Payload store of the remote: a directory or s3://BUCKET/PREFIX.")
@click.option("--no-checkout", is_flag=True, help="Fetch the graph only; check nothing out.")
@click.option("-q", "--quiet", is_flag=True, help="No progress bar.")
def clone_cmd(url, directory, store_url, no_checkout, quiet) -> None:
    """Clone a bgit repository: the whole commit graph, and only the payloads the default
    branch needs. Later checkouts fetch payloads as they need them.

    Example: bgit clone git://host/bakes.git --store s3://bakes/team
    """
    from bgit.remote import clone

    repo = clone(url, directory, store_url, checkout=not no_checkout, progress=TransferBar(quiet))
    branch = repo.current_branch() if repo.head_commit() is not None else None
    click.echo(f"Cloned into '{repo.root}'" + (f" (branch {branch})" if branch else " (nothing checked out)"))


COMMANDS = [remote_cmd, push_cmd, fetch_cmd, pull_cmd, clone_cmd]
