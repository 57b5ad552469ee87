"""Repository commands: init, add, commit, status, log, show, branch, checkout, tag, fsck, gc.

Each command parses its options, calls :mod:`bgit.api` and renders the typed result.
"""

from __future__ import annotations

from collections import Counter

import click

from bgit import api
from bgit.cli.render import RichReporter, echo_json, human_size, json_option, say, table
from bgit.repo.history import graph_lines

# -- init / add / commit --------------------------------------------------------------------


@click.command("init")
@click.argument("directory", default=".", type=click.Path(file_okay=False))
@json_option
def init_cmd(directory: str, as_json: bool) -> None:
    """Create a bgit repository (git + payload store) with an example input.yml.

    Example: bgit init demo && cd demo && bgit bake -m "first bake"
    """
    result = api.init(directory)
    if as_json:
        echo_json(result)
        return
    click.echo(f"Initialized empty bgit repository in {result.git_dir}")
    if result.example:
        click.echo(f"Edit {result.root / 'input.yml'} and run: bgit bake")


@click.command("add")
@click.argument("paths", nargs=-1, type=click.Path(readable=False))  # the library names unreadable files
@click.option("-A", "--all", "add_all", is_flag=True, help="Stage every change in the work tree.")
@json_option
def add_cmd(paths: tuple[str, ...], add_all: bool, as_json: bool) -> None:
    """Stage files; safetensors, JSONL and big files go to the payload store.

    Example: bgit add adapter/ input.yml
    """
    from pathlib import Path

    if not paths and not add_all:
        raise click.UsageError("nothing specified, nothing added (give PATH... or -A)")
    staged = api.add(".", [Path.cwd() / p for p in paths], all=add_all)
    if as_json:
        echo_json({"staged": staged})


@click.command("commit")
@click.option("-m", "--message", required=True, help="Commit message.")
@json_option
def commit_cmd(message: str, as_json: bool) -> None:
    """Record the staged changes as a new commit.

    Example: bgit commit -m "Tune the Yoda prompt"
    """
    result = api.commit(".", message)
    if as_json:
        echo_json(result)
        return
    click.echo(f"[{result.branch or 'detached HEAD'} {result.commit[:7]}] {result.summary}")


# -- status ---------------------------------------------------------------------------------


@click.command("status")
@json_option
def status_cmd(as_json: bool) -> None:
    """Show staged, modified and untracked files.

    Example: bgit status --json
    """
    status = api.status(".")
    if as_json:
        echo_json(status)
        return
    click.echo(f"On branch {status.branch}" if status.branch else f"HEAD detached at {status.head[:7]}")
    if status.head is None:
        click.echo("No commits yet")
    sections = [("Changes to be committed:", status.staged, "green"),
                ("Changes not staged for commit:", status.modified, "red")]
    for title, changes, style in sections:
        if changes:
            click.echo(title)
            for change in changes:
                say(f"  {change.kind + ':':<10} {change.path}", style)
    if status.untracked:
        click.echo("Untracked files:")
        for path in status.untracked:
            say(f"  {path}", "red")
    if status.clean:
        click.echo("nothing to commit, working tree clean")


# -- log / show -----------------------------------------------------------------------------


@click.command("log")
@click.argument("ref", default="HEAD")
@click.option("--oneline", is_flag=True, help="One line per commit.")
@click.option("--graph", is_flag=True, help="Draw the commit graph on the left.")
@click.option("-n", "--max-count", "n", type=click.IntRange(min=1), help="Show at most N commits.")
@click.option("--all", "all_refs", is_flag=True,
              help="Every branch, tag and remote-tracking branch, not only REF: the lineage of all bakes.")
@json_option
def log_cmd(ref: str, oneline: bool, graph: bool, n: int | None, all_refs: bool, as_json: bool) -> None:
    """Show the commit history, with a one-line summary of each bake.

    Example: bgit log --oneline --graph --all -n 10
    """

    items = api.log(".", ref, n, all_refs=all_refs)
    if as_json:
        echo_json(items)
        return
    if not items:
        click.echo("No commits yet.", err=True)
    by_id = {item.entry.id: item for item in items}
    rows = graph_lines([i.entry for i in items]) if graph else [("", i.entry) for i in items]
    for prefix, entry in rows:
        if entry is None:
            click.echo(prefix)
            continue
        lines = _format_item(by_id[entry.id], oneline)
        rest = prefix.replace("*", "|" if entry.parents else " ") if graph else ""
        for i, (text, style) in enumerate(lines):
            lead = (prefix if i == 0 else rest) + (" " if graph else "")
            say((lead + text).rstrip(), style)


def _format_item(item, oneline: bool) -> list[tuple[str, str | None]]:
    entry = item.entry
    refs = f" ({', '.join(entry.refs)})" if entry.refs else ""
    notes = [part for part in (item.bake.text() if item.bake else "", item.eval.summary() if item.eval else "") if part]
    bake = "; ".join(notes)
    if oneline:
        return [(f"{entry.id[:7]}{refs} {entry.summary}" + (f"  [{bake}]" if bake else ""), None)]
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
    item = api.show(".", ref)
    if as_json:
        echo_json(item)
        return
    for text, style in _format_item(item, False):
        say(text, style)
    rows = [(f.path, human_size(f.size), f.kind, "" if f.tensors is None else str(f.tensors)) for f in item.files]
    table(("path", "size", "kind", "tensors"), rows, right=(1, 3))


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
    if delete:
        api.branch_delete(".", delete)
        echo_json({"deleted": delete}) if as_json else click.echo(f"Deleted branch {delete}")
        return
    if name:
        info = api.branch_create(".", name, start)
        if as_json:  # silent otherwise, as git is
            echo_json(info)
        return
    branches = api.branch_list(".")
    if as_json:
        echo_json(branches)
        return
    for b in branches:
        say(f"{'*' if b.current else ' '} {b.name}  {b.commit[:7]} {b.summary}", "green" if b.current else None)


@click.command("checkout")
@click.argument("ref", required=False)
@click.option("-b", "new_branch", metavar="NAME", help="Create branch NAME at REF and switch to it.")
@click.option("-f", "--force", is_flag=True, help="Overwrite uncommitted changes.")
@json_option
def checkout_cmd(ref: str | None, new_branch: str | None, force: bool, as_json: bool) -> None:
    """Switch to a branch, tag or commit and materialise its payload files.

    Payloads missing here are fetched from the remote's store, verified.

    Example: bgit checkout -b retry HEAD~1
    """
    if ref is None and new_branch is None:
        raise click.UsageError("missing REF (a branch, tag or commit)")
    result = api.checkout(".", ref or "HEAD", force=force, new_branch=new_branch,
                          reporter=RichReporter(quiet=as_json))
    if result.left_behind_count:
        _warn_left_behind(result)
    if as_json:
        echo_json(result)
    elif result.tracking:
        click.echo(f"branch '{result.branch}' set up to track '{result.tracking}'.", err=True)
        click.echo(f"Switched to a new branch '{result.branch}'", err=True)
    elif new_branch:
        click.echo(f"Switched to a new branch '{new_branch}'", err=True)
    elif result.branch:
        click.echo(f"Switched to branch '{result.branch}'", err=True)
    else:
        summary = api.show(".", result.commit).entry.summary
        click.echo(f"HEAD is now at {result.commit[:7]} {summary}", err=True)


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
    if delete:
        api.tag_delete(".", delete)
        echo_json({"deleted": delete}) if as_json else click.echo(f"Deleted tag {delete}")
        return
    if name:
        info = api.tag_create(".", name, ref, message)
        if as_json:  # silent otherwise, as git is
            echo_json(info)
        return
    tags = api.tag_list(".")
    if as_json:
        echo_json(tags)
        return
    for t in tags:
        click.echo(f"{t.name}  {t.commit[:7]} {t.summary}")


# -- maintenance ----------------------------------------------------------------------------


@click.command("fsck")
@click.option("--all", "all_objects", is_flag=True, help="Also verify objects nothing references.")
@click.option("--remote", "remote", is_flag=False, flag_value="", default=None, metavar="[NAME]",
              help="Ask remote NAME's payload store (default: the branch's remote) about the "
                   "objects not here; those it lacks too are missing.")
@json_option
@click.pass_context
def fsck_cmd(ctx: click.Context, all_objects: bool, remote: str | None, as_json: bool) -> None:
    """Verify every store object that a reachable commit needs; exit 1 on any problem.

    Objects not fetched yet from a remote (a lazy clone) are listed, not problems.

    Example: bgit fsck --remote origin --json
    """
    result = api.fsck(".", all_objects=all_objects, remote=remote or None, ask_remote=remote is not None)
    if as_json:
        echo_json(result)
    else:
        for name, count in sorted(Counter(n.remote for n in result.not_fetched).items()):
            click.echo(f"{count} objects not fetched yet (on remote '{name}')")
        if result.ok:
            verified = result.objects_checked - len(result.not_fetched)
            click.echo(f"ok: {result.manifests} manifests, {verified} objects verified")
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
    result = api.gc(".", grace, phase_days)
    if as_json:
        echo_json(result)
        return
    report = result.store
    click.echo(f"removed {report.removed_objects} objects ({human_size(report.removed_bytes)}), "
               f"kept {report.kept_objects} reachable and {report.kept_recent} recent")
    pinned = f"; kept {result.kept_pinned_phases} in use by a running bake" if result.kept_pinned_phases else ""
    click.echo(f"removed {result.removed_phases} cached phases ({human_size(result.removed_phase_bytes)}) "
               f"older than {phase_days:g} days that no commit uses{pinned}")


COMMANDS = [init_cmd, add_cmd, commit_cmd, status_cmd, log_cmd, show_cmd, branch_cmd, checkout_cmd,
            tag_cmd, fsck_cmd, gc_cmd]
