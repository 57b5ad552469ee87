"""Pipeline commands: stim, rollout, bake."""

from __future__ import annotations

import click

from bgit import api
from bgit.cli.render import RichReporter, echo_json, fmt, json_option, libraries_print_to_stderr

BACKENDS = click.Choice(["hf", "vllm"])

config_option = click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
                             help="input.yml to use (default: the repository's).")
target_option = click.option("--target", "-t", "target_name", help="Only this target.")
limit_option = click.option("--limit", type=click.IntRange(min=0), default=10, show_default=True,
                            help="Rows to show (0 = all).")
count_option = click.option("--count", is_flag=True, help="Print only the number of rows.")
backend_option = click.option("--backend", type=BACKENDS, help="Rollout backend (default: vllm with CUDA, else hf).")


def _announce(outcome) -> None:
    """Whether the phase ran or came from the cache (stderr, so --json stays clean)."""
    state = "cached, nothing generated" if outcome.cached else f"ran in {outcome.seconds:.1f}s"
    click.echo(f"{outcome.label} {state} (key {outcome.key[:12]})", err=True)


def _render_rows(phases, limit: int, count: bool, as_json: bool, slim, line) -> None:
    report = []
    for phase in phases:
        rows = [slim(row) for row in phase.rows]
        shown = rows if limit == 0 else rows[:limit]
        if as_json:
            report.append({"target": phase.target, "count": len(rows), "rows": [] if count else shown})
            continue
        _announce(phase.outcome)
        click.echo(f"{phase.target}: {len(rows)} rows")
        for row in [] if count else shown:
            click.echo("  " + line(row))
    if as_json:
        echo_json(report)


@click.command()
@config_option
@target_option
@limit_option
@count_option
@json_option
def stim(config_path, target_name, limit, count, as_json):
    """Generate the stims (user messages) of each target, or show the cached ones.

    Example: bgit stim --target default --limit 5
    """
    with libraries_print_to_stderr(as_json):
        phases = api.stim(".", config_path, target_name, reporter=RichReporter(quiet=as_json))
    _render_rows(phases, limit, count, as_json, slim=lambda r: r, line=lambda r: r["text"])


@click.command()
@config_option
@target_option
@limit_option
@count_option
@json_option
@backend_option
def rollout(config_path, target_name, limit, count, as_json, backend):
    """Sample the teacher-prompted model's answers to the stims, or show the cached ones.

    Example: bgit rollout --limit 3
    """
    with libraries_print_to_stderr(as_json):
        phases = api.rollout(".", config_path, target_name, backend, reporter=RichReporter(quiet=as_json))

    def slim(r):
        return {"stim": r["stim"], "traj": r["traj"], "response": r["response"], "tokens": len(r["response_ids"])}

    _render_rows(phases, limit, count, as_json, slim,
                 line=lambda r: f"{r['stim']!r} -> {r['response'][:120]!r} ({r['tokens']} tok)")


@click.command()
@click.option("-m", "--message", help="Commit message (default: BAKE.name).")
@click.option("--dry-run", is_flag=True, help="Show which phases would run and which are cached.")
@backend_option
@click.option("--force", is_flag=True, help="Bake even if this config is already baked at HEAD.")
@config_option
@json_option
def bake(message, dry_run, backend, force, config_path, as_json):
    """Bake input.yml: stim -> rollout -> train, then commit the bake.

    Each phase is cached by the hash of its inputs: a rerun with unchanged inputs computes
    nothing, and an interrupted bake resumes from the last finished phase and checkpoint.

    Example: bgit bake -m "Yoda, r=16"
    """
    if dry_run:
        plan = api.bake_plan(".", config_path)
        if as_json:
            echo_json([vars(entry) for entry in plan])
            return
        for entry in plan:
            label = f"{entry.phase}[{entry.target}]" if entry.target else entry.phase
            state = "cached" if entry.cached else "would run"
            click.echo(f"{label:<24} {state:<10} {entry.key[:12] if entry.key else '(after upstream phases)'}")
        return
    with libraries_print_to_stderr(as_json):
        result = api.bake(".", config_path, message, force, backend, reporter=RichReporter(quiet=as_json))
    if result.commit is None:  # a rank > 0 of a multi-process bake: rank 0 commits
        return
    if as_json:
        echo_json(result)
        return
    for outcome in result.outcomes:
        state = "cached" if outcome.cached else f"ran {outcome.seconds:7.1f}s"
        tokens = f"{outcome.tokens:>8} tok" if outcome.tokens else ""
        click.echo(f"{outcome.label:<24} {state:<12} {tokens}")
    record = result.record
    if record.train_resumed_from_epoch:
        click.echo(f"training resumed from the epoch {record.train_resumed_from_epoch} checkpoint")
    m = record.metrics
    click.echo(f"final KL: train {fmt(m.final_train_kl)}, eval {fmt(m.final_eval_kl)}"
               + (f"; eval closure {fmt(m.eval_closure, 3)}" if m.eval_closure is not None else ""))
    click.echo(f"[{result.commit[:12]}] {message or api.show('.', result.commit).entry.summary}")


COMMANDS = [stim, rollout, bake]
