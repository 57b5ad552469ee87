"""Config commands: validate."""

from __future__ import annotations

import click

from bgit import api
from bgit.cli.render import echo_json
from bgit.config import InputConfig, config_to_dict


def _plural(count: int, word: str, plural: str | None = None) -> str:
    return f"{count} {word if count == 1 else plural or word + 's'}"


def _generator_summary(generator) -> str:
    if generator.type == "hardcoded":
        return f"hardcoded {_plural(len(generator.stims), 'stim')}"
    if generator.type == "from_dataset":
        return f"from_dataset {generator.path or generator.dataset} ({'all rows' if generator.numq == 0 else generator.numq})"
    return f"{generator.type} {generator.numq}"


def summary_lines(config: InputConfig) -> list[str]:
    lines = [f"  model:   {config.model.base}"]
    for target in config.targets:
        generators = ", ".join(_generator_summary(g) for g in target.generators)
        lines.append(f"  target:  {target.name} ({_plural(len(target.generators), 'generator')}: {generators}; "
                     f"{_plural(target.num_traj_per_stimulus, 'trajectory', 'trajectories')} per stim, max_tokens {target.max_tokens})")
    bake = config.bake
    weights = ", ".join(f"{d.target} {d.weight:g}" for d in bake.datasets)
    lines.append(f"  bake:    {bake.name}: {_plural(bake.epochs, 'epoch')}, LoRA r={bake.lora.r} "
                 f"alpha={bake.lora.lora_alpha:g}, lr {bake.optimizer.learning_rate:g}, loss {bake.loss}, "
                 f"parent {bake.parent}, datasets: {weights}")
    return lines


@click.command("validate")
@click.argument("file", default="input.yml", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the result (resolved config or errors) as JSON.")
def validate(file: str, as_json: bool) -> None:
    """Check an input.yml and show what it would bake.

    Prints FILE: ok and a summary, or one line per problem in the form
    FILE:LINE: KEY: message, and exits 1.

    Example: bgit validate examples/yoda.yml
    """
    result = api.validate(file)
    if as_json:
        issues = [{"file": i.file, "line": i.line, "key": i.key, "message": i.message} for i in result.errors]
        notices = [{"file": i.file, "line": i.line, "key": i.key, "message": i.message} for i in result.notices]
        echo_json({"file": file, "ok": result.ok, "errors": issues, "notices": notices,
                   **({"config": config_to_dict(result.config)} if result.ok else {})})
    else:
        for issue in result.errors:
            click.echo(f"Error: {issue}", err=True)
        for notice in result.notices:
            click.echo(f"Notice: {notice}", err=True)
        if result.ok:
            click.echo(f"{file}: ok")
            for line in summary_lines(result.config):
                click.echo(line)
    if not result.ok:
        click.get_current_context().exit(1)


COMMANDS = [validate]
