"""Remote commands: remote, push, fetch, pull, clone.

Each command parses its options, calls :mod:`bgit.api` and renders the typed result;
transfers draw a progress bar on stderr.
"""

from __future__ import annotations

import click

from bgit import api
from bgit.cli.render import RichReporter, echo_json, human_size, json_option

quiet_option = click.option("-q", "--quiet", is_flag=True, help="No progress bar.")


def _short(ref: str) -> str:
    return ref.removeprefix("refs/heads/").removeprefix("refs/tags/").removeprefix("refs/remotes/")


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
    remotes = api.remote_list(".")
    if as_json:
        echo_json(remotes)
        return
    for r in remotes:
        if verbose:
            click.echo(f"{r.name}\t{r.url} (graph)")
            click.echo(f"{r.name}\t{api.store_url(r) or '-'} (payloads)")
        else:
            click.echo(r.name)


@remote_cmd.command("add")
@click.argument("name")
@click.argument("url")
@click.option("--store", "store_url", metavar="STORE_URL",
              help="Payload store: a directory or s3://BUCKET/PREFIX (default for a local path "
                   "URL: PATH/bgit-objects).")
@json_option
def remote_add_cmd(name: str, url: str, store_url: str | None, as_json: bool) -> None:
    """Add a remote: the commit graph goes to URL (path, file://, git://, ssh, https),
    payloads to the store.

    Example: bgit remote add origin git@host:team/bakes.git --store s3://bakes/team
    """
    remote = api.remote_add(".", name, url, store_url)
    if as_json:
        echo_json({**remote.to_json(), "store": api.store_url(remote)})
        return
    click.echo(f"Added remote '{name}': {remote.url} (payloads: {api.store_url(remote) or 'none'})")


@remote_cmd.command("remove")
@click.argument("name")
@json_option
def remote_remove_cmd(name: str, as_json: bool) -> None:
    """Remove a remote, its remote-tracking branches and what bgit knew of its store.

    Example: bgit remote remove origin
    """
    api.remote_remove(".", name)
    echo_json({"removed": name}) if as_json else click.echo(f"Removed remote '{name}'")


# -- push, fetch, pull --------------------------------------------------------------------------

@click.command("push")
@click.argument("remote", required=False)
@click.argument("branch", required=False)
@click.option("--all", "all_branches", is_flag=True, help="Push every local branch.")
@click.option("--tags", is_flag=True, help="Also push every tag.")
@quiet_option
@json_option
def push_cmd(remote, branch, all_branches, tags, quiet, as_json) -> None:
    """Upload missing payloads, then update the remote's refs (fast-forward only).

    Pushes the current branch by default. A local path that does not exist yet is created
    as a bare repository with its payloads in PATH/bgit-objects. An interrupted push
    resumes without re-sending what arrived.

    Example: bgit push origin main
    """
    if branch and all_branches:
        raise click.UsageError("give a BRANCH or --all, not both")
    result = api.push(".", remote, [branch] if branch else (), all_branches, tags,
                      reporter=RichReporter(quiet or as_json))
    if as_json:
        echo_json(result)
        return
    if result.created_remote:
        click.echo(f"Created a bare repository for '{result.remote}'")
    t = result.transfer
    if t.objects:
        click.echo(f"Sent {t.objects} objects ({human_size(t.wire_bytes, binary=False)}) to '{result.remote}'")
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
@quiet_option
@json_option
def fetch_cmd(remote, payloads, quiet, as_json) -> None:
    """Download commits and manifests from a remote into refs/remotes/REMOTE/*.

    Example: bgit fetch origin && bgit log origin/main
    """
    result = api.fetch(".", remote, payloads=payloads, reporter=RichReporter(quiet or as_json))
    if as_json:
        echo_json(result)
        return
    for ref, old, new in result.updated:
        if new is None:
            click.echo(f"  - [deleted]  {_short(ref)}")
        else:
            click.echo(f"  {old[:8] + '..' if old else '* [new] '}{new[:8]}  {_short(ref)}")
    if result.transfer.objects:
        click.echo(f"Received {result.transfer.objects} objects "
                   f"({human_size(result.transfer.wire_bytes, binary=False)})")


@click.command("pull")
@click.argument("remote", required=False)
@click.option("--merge", "merge", is_flag=True,
              help="When the branch has diverged, merge the upstream as 'bgit merge REMOTE/BRANCH' does.")
@quiet_option
@json_option
@click.pass_context
def pull_cmd(ctx, remote, merge, quiet, as_json) -> None:
    """Fetch and fast-forward the current branch to its upstream.

    A branch that has diverged is reported with the merge to run (bgit merge
    origin/BRANCH); --merge runs it: the merged bake trains on both sides' targets.

    Example: bgit pull --merge origin
    """
    result = api.pull(".", remote, merge=merge, reporter=RichReporter(quiet or as_json))
    if not hasattr(result, "fast_forwarded"):  # diverged and merged: a MergeOutcome
        from bgit.cli.merge_cmds import render_merge

        echo_json(result) if as_json else render_merge(result)
        if result.kind == "conflict":
            ctx.exit(1)
        return
    if as_json:
        echo_json(result)
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
@quiet_option
@json_option
def clone_cmd(url, directory, store_url, no_checkout, quiet, as_json) -> None:
    """Clone a bgit repository: the whole commit graph, and only the payloads the default
    branch needs. Later checkouts fetch payloads as they need them.

    Example: bgit clone git://host/bakes.git --store s3://bakes/team
    """
    repo = api.clone(url, directory, store_url, checkout=not no_checkout, reporter=RichReporter(quiet or as_json))
    head = repo.head_commit()
    branch = repo.current_branch() if head is not None else None
    if as_json:
        echo_json({"root": str(repo.root), "branch": branch, "head": str(head.id) if head else None})
        return
    click.echo(f"Cloned into '{repo.root}'" + (f" (branch {branch})" if branch else " (nothing checked out)"))


COMMANDS = [remote_cmd, push_cmd, fetch_cmd, pull_cmd, clone_cmd]
