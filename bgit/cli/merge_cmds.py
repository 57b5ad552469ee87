"""git's verbs for bakes: merge, revert, reset, rm.

Each command parses its options, calls :mod:`bgit.api` and renders the typed result.
"""

from __future__ import annotations

from pathlib import Path

import click

from bgit import api
from bgit.cli.render import RichReporter, echo_json, json_option, say
from bgit.cli.use_cmds import render_eval

COMBINATIONS = ("linear", "cat", "ties", "dare_ties")


def _weights(text: str) -> tuple[float, float]:
    try:
        values = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise click.BadParameter(f"'{text}' is not two numbers such as 0.5,0.5", param_hint="--weights") from None
    if len(values) != 2:
        raise click.BadParameter(f"'{text}' is not two numbers such as 0.5,0.5", param_hint="--weights")
    return values


def render_merge(outcome) -> None:
    """What a merge did, as git says it (and the bake's phases and eval)."""

    if outcome.kind == "up-to-date":
        click.echo("Already up to date.")
        return
    if outcome.kind == "fast-forward":
        click.echo(f"Fast-forward to {outcome.commit[:8]}")
        return
    if outcome.kind == "conflict":
        for path in outcome.conflicts:
            keys = f" (keys: {', '.join(outcome.config_conflicts)})" if path == "input.yml" else ""
            say(f"CONFLICT (content): Merge conflict in {path}{keys}", "red")
        click.echo("Automatic merge failed; fix conflicts and then run 'bgit merge --continue' "
                   "(or 'bgit merge --abort').")
        return
    for o in outcome.outcomes:
        state = "cached" if o.cached else f"ran {o.seconds:7.1f}s"
        click.echo(f"{o.label:<24} {state:<12} {f'{o.tokens:>8} tok' if o.tokens else ''}".rstrip())
    click.echo(f"Merge made by the '{outcome.strategy}' strategy: [{outcome.commit[:12]}]")
    if outcome.eval is not None:
        render_eval(outcome.eval)


@click.command("merge")
@click.argument("ref", required=False)
@click.option("-m", "--message", help="Merge commit message (default: Merge branch 'REF').")
@click.option("--no-bake", is_flag=True, help="Commit the merged input.yml and datasets alone, no adapter "
                                              "(bgit bake trains the union later).")
@click.option("--strategy", type=click.Choice(["train", "weights"]), default="train", show_default=True,
              help="train: bake the union of both sides' targets (only training runs); weights: combine "
                   "the two adapters without training.")
@click.option("--combination", type=click.Choice(COMBINATIONS), default="linear", show_default=True,
              help="How --strategy weights combines (PEFT add_weighted_adapter).")
@click.option("--weights", "weights_text", default="0.5,0.5", show_default=True,
              help="--strategy weights: the weight of ours,theirs.")
@click.option("--density", type=float, help="ties / dare_ties: fraction of values kept (default 0.5).")
@click.option("--seed", default=0, show_default=True, help="Seed of dare_ties' random drop.")
@click.option("--continue", "continue_", is_flag=True, help="Finish a merge after resolving its conflicts.")
@click.option("--abort", is_flag=True, help="Undo the merge in progress (index and work tree back to HEAD).")
@json_option
@click.pass_context
def merge_cmd(ctx, ref, message, no_bake, strategy, combination, weights_text, density, seed, continue_, abort,
              as_json) -> None:
    """Merge a branch's bake into HEAD: input.yml key by key, both sides' targets kept.

    By default the union is baked; stim and rollout phases come from the cache, so only
    training runs. A conflicting input.yml key gets git's conflict markers: edit the file,
    then bgit merge --continue (or --abort). MERGE_HEAD is git's, so git status sees it.

    Example: bgit merge french --strategy weights --combination ties --weights 0.6,0.4
    """
    if sum([bool(ref), continue_, abort]) != 1:
        raise click.UsageError("give a REF to merge, --continue or --abort")
    reporter = RichReporter(quiet=as_json)
    if abort:
        result = api.merge_abort(".", reporter=reporter)
        echo_json(result) if as_json else click.echo(f"Merge aborted; HEAD is at {result.new[:8]}")
        return
    if continue_:
        outcome = api.merge_continue(".", reporter=reporter)
    else:
        outcome = api.merge(".", ref, message, bake=not no_bake, strategy=strategy, combination=combination,
                            weights=_weights(weights_text), density=density, seed=seed, reporter=reporter)
    echo_json(outcome) if as_json else render_merge(outcome)
    if outcome.kind == "conflict":
        ctx.exit(1)


@click.command("revert")
@click.argument("ref")
@click.option("-m", "--message", help="Commit message (default: Revert \"SUMMARY\").")
@click.option("--mainline", type=click.IntRange(min=1), help="For a merge commit: the parent to go back to.")
@json_option
def revert_cmd(ref, message, mainline, as_json) -> None:
    """Make a new commit that undoes REF (its files return to their version before it).

    Reverting a bake brings back the previous bake's adapter, targets and bake.yml.

    Example: bgit revert HEAD
    """
    result = api.revert(".", ref, message, mainline)
    if as_json:
        echo_json(result)
        return
    click.echo(f"[{result.branch or 'detached HEAD'} {result.commit[:7]}] {result.summary}")


@click.command("reset")
@click.argument("ref", default="HEAD")
@click.option("--soft", "mode", flag_value="soft", help="Move the branch only.")
@click.option("--mixed", "mode", flag_value="mixed", default=True, help="Also reset the index (default).")
@click.option("--hard", "mode", flag_value="hard", help="Also rewrite the work tree (payloads included).")
@json_option
def reset_cmd(ref, mode, as_json) -> None:
    """Move the current branch to REF, as git reset does (a reflog entry records it).

    --mixed refuses to lose staged versions that exist nowhere else; --hard discards
    uncommitted changes and materialises REF's payloads.

    Example: bgit reset --hard HEAD~1
    """
    result = api.reset(".", ref, mode, reporter=RichReporter(quiet=as_json))
    if as_json:
        echo_json(result)
        return
    summary = api.show(".", result.new).entry.summary
    click.echo(f"HEAD is now at {result.new[:7]} {summary}")


@click.command("rm")
@click.argument("paths", nargs=-1, required=True, type=click.Path())
@click.option("--cached", is_flag=True, help="Only stop tracking; keep the files in the work tree.")
@click.option("-r", "--recursive", is_flag=True, help="Allow removing a directory's files.")
@click.option("-f", "--force", is_flag=True, help="Remove even with uncommitted changes.")
@json_option
def rm_cmd(paths, cached, recursive, force, as_json) -> None:
    """Remove files from the index and the work tree (payloads stay in the store).

    Example: bgit rm -r targets/old
    """
    removed = api.rm(".", [Path.cwd() / p for p in paths], cached=cached, recursive=recursive, force=force)
    if as_json:
        echo_json({"removed": removed, "cached": cached})
        return
    for path in removed:
        click.echo(f"rm '{path}'")


COMMANDS = [merge_cmd, revert_cmd, reset_cmd, rm_cmd]
