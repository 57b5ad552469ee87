"""Pipeline commands: stim, rollout, bake."""

from __future__ import annotations

from pathlib import Path

import click

from bgit.cli.render import RichReporter, echo_json

BACKENDS = click.Choice(["hf", "vllm"])


def _open_baker(config_path: str | None, backend: str | None, quiet: bool = False):
    from bgit.config import load_config
    from bgit.pipeline.bake import Baker
    from bgit.repo import Repository

    repo = Repository.open(".")
    path = Path(config_path) if config_path else repo.root / "input.yml"
    config = load_config(path)
    return Baker(repo, config, backend=backend, reporter=RichReporter(quiet=quiet), config_dir=path.parent)


def _targets(baker, name: str | None):
    from bgit.pipeline.bake import BakeError

    if name is None:
        return baker.config.targets
    try:
        return [baker.config.target(name)]
    except KeyError:
        known = ", ".join(t.name for t in baker.config.targets)
        raise BakeError(f"unknown target '{name}' (targets: {known})") from None


config_option = click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
                             help="input.yml to use (default: the repository's).")
target_option = click.option("--target", "-t", "target_name", help="Only this target.")
limit_option = click.option("--limit", "-n", type=int, default=10, show_default=True, help="Rows to show (0 = all).")
count_option = click.option("--count", is_flag=True, help="Print only the number of rows.")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


def _announce(outcome, as_json: bool) -> None:
    """Whether the phase ran or came from the cache (stderr, so --json stays clean)."""
    if not as_json:
        state = "cached, nothing generated" if outcome.cached else f"ran in {outcome.seconds:.1f}s"
        click.echo(f"{outcome.label} {state} (key {outcome.key[:12]})", err=True)


def _show_rows(name: str, rows: list[dict], limit: int, count: bool, as_json: bool, fields) -> dict:
    shown = rows if limit == 0 else rows[:limit]
    if as_json:
        return {"target": name, "count": len(rows), "rows": [] if count else shown}
    click.echo(f"{name}: {len(rows)} rows")
    if not count:
        for row in shown:
            click.echo("  " + fields(row))
    return {}


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
    from bgit.pipeline.records import read_jsonl

    baker = _open_baker(config_path, None, quiet=as_json)
    report = []
    for target in _targets(baker, target_name):
        stim_dir, outcome = baker.run_stim(target)
        _announce(outcome, as_json)
        rows = read_jsonl(stim_dir / "stim.jsonl")
        report.append(_show_rows(target.name, rows, limit, count, as_json, lambda r: r["text"]))
    if as_json:
        echo_json(report)


@click.command()
@config_option
@target_option
@limit_option
@count_option
@json_option
@click.option("--backend", type=BACKENDS, help="Generation backend (default: vllm with CUDA, else hf).")
def rollout(config_path, target_name, limit, count, as_json, backend):
    """Sample the teacher-prompted model's answers to the stims, or show the cached ones.

    Example: bgit rollout --limit 3
    """
    from bgit.pipeline.records import read_jsonl

    baker = _open_baker(config_path, backend, quiet=as_json)
    report = []
    try:
        for target in _targets(baker, target_name):
            stim_dir, _ = baker.run_stim(target)
            rollout_dir, outcome = baker.run_rollout(target, stim_dir)
            _announce(outcome, as_json)
            rows = read_jsonl(rollout_dir / "rollout.jsonl")
            slim = [{"stim": r["stim"], "traj": r["traj"], "response": r["response"],
                     "tokens": len(r["response_ids"])} for r in rows]
            report.append(_show_rows(target.name, slim, limit, count, as_json,
                                     lambda r: f"{r['stim']!r} -> {r['response'][:120]!r} ({r['tokens']} tok)"))
    finally:
        baker.close_rollout_backend()  # vLLM's engine processes
    if as_json:
        echo_json(report)


@click.command()
@click.option("-m", "--message", help="Commit message (default: BAKE.name).")
@click.option("--dry-run", is_flag=True, help="Show which phases would run and which are cached.")
@click.option("--backend", type=BACKENDS, help="Rollout backend (default: vllm with CUDA, else hf).")
@click.option("--force", is_flag=True, help="Bake even if this config is already baked at HEAD.")
@config_option
@json_option
def bake(message, dry_run, backend, force, config_path, as_json):
    """Bake input.yml: stim -> rollout -> train, then commit the bake.

    Each phase is cached by the hash of its inputs: a rerun with unchanged inputs computes
    nothing, and an interrupted bake resumes from the last finished phase and checkpoint.

    Example: bgit bake -m "Yoda, r=16"
    """
    baker = _open_baker(config_path, backend, quiet=as_json)
    if dry_run:
        plan = baker.plan()
        if as_json:
            echo_json([vars(entry) for entry in plan])
            return
        for entry in plan:
            label = f"{entry.phase}[{entry.target}]" if entry.target else entry.phase
            state = "cached" if entry.cached else "would run"
            key = entry.key[:12] if entry.key else "(after upstream phases)"
            click.echo(f"{label:<24} {state:<10} {key}")
        return
    result = baker.bake(message=message, force=force)
    if result.commit is None:  # a rank > 0 of a multi-GPU bake: rank 0 commits
        return
    if as_json:
        echo_json({"commit": result.commit, "phases": [vars(o) for o in result.outcomes],
                   "final_train_kl": result.final_train_kl, "final_eval_kl": result.final_eval_kl})
        return
    for outcome in result.outcomes:
        state = "cached" if outcome.cached else f"ran {outcome.seconds:7.1f}s"
        tokens = f"{outcome.tokens:>8} tok" if outcome.tokens else ""
        click.echo(f"{outcome.label:<24} {state:<12} {tokens}")
    if result.record.get("train_resumed_from_epoch"):
        click.echo(f"training resumed from the epoch {result.record['train_resumed_from_epoch']} checkpoint")
    kl = result.record.get("metrics", {})
    click.echo(f"final KL: train {_fmt(kl.get('final_train_kl'))}, eval {_fmt(kl.get('final_eval_kl'))}")
    click.echo(f"[{result.commit[:12]}] {message or baker.config.bake.name}")


def _fmt(value) -> str:
    return "n/a" if value is None else f"{value:.4f}"


COMMANDS = [stim, rollout, bake]
