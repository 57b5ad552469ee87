"""Commands that use bakes: diff, eval, chat, generate, export, metrics, hooks."""

from __future__ import annotations

import sys

import click

from bgit import api
from bgit.cli.render import RichReporter, echo_json, fmt, json_option, libraries_print_to_stderr
from bgit.evaluate.datasets import dumps_value
from bgit.repo.errors import UnknownRevisionError
from bgit.evaluate.chat import run_repl
from bgit.evaluate.metrics import render_chart


# -- diff ---------------------------------------------------------------------------------

def _render_diff(result, top: int) -> None:
    a, b = result.a, result.b
    click.echo(f"diff {_side(a)} .. {_side(b)}")
    click.secho("\ninput.yml", bold=True)
    if not result.config:
        click.echo("  (unchanged)")
    for change in result.config:
        marker = {"added": "+", "removed": "-", "modified": "~"}[change.change]
        click.echo(f"  {marker} {change.key}: {dumps_value(change.old)} -> {dumps_value(change.new)}")
    click.secho("\ndatasets", bold=True)
    if not result.datasets:
        click.echo("  (no targets)")
    for entry in result.datasets:
        rows, tokens = entry.rollout_rows, entry.rollout_tokens
        click.echo(f"  {entry.target}: stims {entry.stims_a} -> {entry.stims_b} "
                   f"(+{len(entry.stims_added)} -{len(entry.stims_removed)}), rollout rows "
                   f"{rows['a']} -> {rows['b']}, tokens {tokens['a']} -> {tokens['b']}")
        for stim in entry.stims_added[:top]:
            click.echo(f"    + {stim['id']} {stim['text'][:70]!r}")
        for stim in entry.stims_removed[:top]:
            click.echo(f"    - {stim['id']} {stim['text'][:70]!r}")
    if result.metrics:
        click.secho("\nmetrics", bold=True)
        for key, pair in result.metrics.items():
            click.echo(f"  {key}: {fmt(pair['a'])} -> {fmt(pair['b'])}")
    _render_weights(result.weights)
    if result.behaviour is not None:
        behaviour = result.behaviour
        click.secho("\nbehaviour", bold=True)
        click.echo(f"  KL(A‖B) per response token: {fmt(behaviour.kl_a_b)} "
                   f"({behaviour.stims} stims, {behaviour.tokens} tokens, {behaviour.source})")
        for note in behaviour.notes:
            click.echo(f"  note: {note}")


def _side(point) -> str:
    return f"{point.ref} ({_short(point.commit)})" if point.commit else point.ref


def _short(commit: str | None) -> str:
    return commit[:8] if commit else "none"


_base_option = click.option("--base", "base", metavar="MODEL",
                            help="Base model of an adapter committed without bake.yml (default: its "
                                 "adapter_config.json's base_model_name_or_path).")


def _render_weights(weights) -> None:
    click.secho("\nadapter ΔW = scale·B·A", bold=True)
    total = weights.total
    if total is None:
        click.echo("  (neither commit has adapter weights)")
        return
    click.echo(f"  total: ‖ΔW_A‖ {fmt(total.norm_a)}  ‖ΔW_B‖ {fmt(total.norm_b)}  "
               f"relative change {fmt(total.relative)}  cosine {fmt(total.cosine)}  "
               f"modules changed {total.changed}/{total.modules}")
    click.echo(f"  {'layer':>6} {'‖ΔW_A‖':>10} {'‖ΔW_B‖':>10} {'rel.change':>10} {'cosine':>8} changed")
    for layer in weights.layers:
        click.echo(f"  {layer.layer:>6} {fmt(layer.norm_a):>10} {fmt(layer.norm_b):>10} "
                   f"{fmt(layer.relative):>10} {fmt(layer.cosine):>8} {layer.changed}/{layer.modules}")


@click.command()
@click.argument("ref_a", required=False)
@click.argument("ref_b", required=False)
@json_option
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a per-layer heatmap PNG.")
@click.option("--behaviour", "--behavior", is_flag=True, help="Also compute KL between the two baked models.")
@click.option("--top", default=10, show_default=True, help="Stims listed per target.")
@_base_option
def diff(ref_a, ref_b, as_json, plot_path, behaviour, top, base):
    """Show what changed between two bakes: config, datasets, adapter weights.

    As git diff: with no REF, HEAD against the work tree when tracked files (input.yml, the
    adapter) changed, else HEAD~1 against HEAD (what the last bake changed); one REF: REF
    against the work tree; two: REF_A against REF_B. The first commit is compared with
    nothing (every file added).

    Example: bgit diff HEAD~2 HEAD --plot layers.png
    """
    result = api.diff(".", ref_a, ref_b, behaviour=behaviour, plot=plot_path, base=base)
    if as_json:
        echo_json(result)
        return
    _render_diff(result, top)
    if plot_path:
        click.echo(f"\nwrote {plot_path}")


# -- eval ---------------------------------------------------------------------------------

def render_eval(results) -> None:
    click.echo(f"eval of {_short(results.commit)} on {results.stims} stims, {results.tokens} response "
               f"tokens ({results.source}; teacher: {results.teacher} + prompt)")
    click.echo(f"  KL(prompted‖parent)     {fmt(results.kl_prompted_base)}")
    click.echo(f"  KL(prompted‖baked)      {fmt(results.kl_prompted_baked)}")
    click.echo(f"  KL closure              {fmt(results.closure)}")
    click.echo(f"  KL(prompted‖reprompted) {fmt(results.kl_prompted_reprompted)}")
    if results.past_trained_length:
        click.echo(f"  closure past the trained length (TARGET.max_tokens) {_past(results)}")
    if len(results.targets) > 1:
        for name, target in results.targets.items():
            past = f"; past the trained length {_past(target)}" if target.past_trained_length else ""
            click.echo(f"  [{name}] closure {fmt(target.closure)}  KL(prompted‖baked) "
                       f"{fmt(target.kl_prompted_baked)}  ({target.stims} stims{past})")
    for note in results.notes:
        click.echo(f"  note: {note}")


def _past(sums) -> str:
    """'0.688 on 869 of 1,842 tokens (KL 0.067 -> 0.0209), 0.906 before them'."""
    past = sums.past_trained_length
    return (f"{fmt(past.closure)} on {past.tokens:,} of {sums.tokens:,} tokens (KL {fmt(past.kl_prompted_base)} "
            f"-> {fmt(past.kl_prompted_baked)}), {fmt(sums.closure_within_trained_length())} before them")


@click.command("eval")
@click.argument("ref", default="HEAD")
@click.option("--stims", "stims_path", type=click.Path(dir_okay=False), help="JSONL/text file of user messages.")
@click.option("--max-stims", default=64, show_default=True, help="Held-out stims evaluated per target.")
@click.option("--max-tokens", type=int, help="Response tokens sampled per --stims message (default: TARGET.max_tokens, the "
              "length the bake trained on; past it the closure of the extra tokens is shown apart).")
@click.option("--seed", default=0, show_default=True, help="Seed for sampled responses.")
@click.option("--no-save", is_flag=True, help="Do not store the results as a git note.")
@click.option("-c", "--config", "config_path", type=click.Path(dir_okay=False),
              help="input.yml with the teacher prompt (default: the commit's).")
@_base_option
@json_option
def eval_(ref, stims_path, max_stims, max_tokens, seed, no_save, config_path, base, as_json):
    """Measure a bake's KL closure on held-out stims; store it as a git note.

    Results go to refs/notes/bgit-eval (see: git log --notes=bgit-eval).

    Example: bgit eval HEAD --stims questions.jsonl
    """
    with libraries_print_to_stderr(as_json):
        results = api.eval(".", ref, stims_path, max_stims=max_stims, max_tokens=max_tokens, seed=seed,
                           save=not no_save, base=base, config=config_path, reporter=RichReporter(quiet=as_json))
    if as_json:
        echo_json(results)
    else:
        render_eval(results)


# -- generate and chat ----------------------------------------------------------------------

_scale_option = click.option("--scale", default=1.0, show_default=True, type=float,
                             help="Adapter scale: 0 = base model, 1 = the bake, between = half-baked.")
_system_option = click.option("--system", "system", help="System text (default: none, as the baked model is used).")


@click.command()
@click.argument("prompts", nargs=-1, required=True)
@click.option("--ref", "ref", default=None, help="The bake (default HEAD; or give it as the first argument).")
@json_option
@click.option("--max-tokens", default=128, show_default=True, help="New tokens per answer at most.")
@_scale_option
@_system_option
@click.option("--seed", type=int, help="Sample with this seed (temperature 1) instead of greedy decoding.")
@_base_option
def generate(prompts, ref, as_json, max_tokens, scale, system, seed, base):
    """Answer prompts with a baked model, one answer per PROMPT (greedy by default).

    bgit generate [REF] PROMPT...: the first argument is taken as REF when there are
    several and it names a commit.

    Example: bgit generate HEAD "What is the capital of France?" "How do I boil an egg?"
    """

    prompts = list(prompts)
    if ref is None and len(prompts) > 1:
        try:
            api.show(".", prompts[0])
            ref = prompts.pop(0)
        except UnknownRevisionError:
            pass
    result = api.generate(".", prompts, ref or "HEAD", max_tokens=max_tokens, scale=scale, system=system, seed=seed,
                          base=base)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    if as_json:
        echo_json(result)
    elif len(result.answers) == 1:
        click.echo(result.answers[0]["response"])
    else:
        for item in result.answers:
            click.secho(f"> {item['prompt']}", bold=True)
            click.echo(item["response"] + "\n")


@click.command()
@click.argument("ref", default="HEAD")
@_scale_option
@_system_option
@click.option("--max-tokens", default=256, show_default=True, help="New tokens per answer at most.")
@_base_option
def chat(ref, scale, system, max_tokens, base):
    """Talk to a baked model; /help lists the commands (reads stdin when it is not a terminal).

    Example: bgit chat HEAD --scale 0.5
    """

    session, notes = api.chat_session(".", ref, scale=scale, system=system, max_tokens=max_tokens, base=base)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    interactive = sys.stdin.isatty()
    if interactive:
        click.echo(f"chatting with {session.status()}; /help for commands, /quit to leave")

    def write(text: str) -> None:
        click.echo(text, nl=False)
        sys.stdout.flush()

    prompt = (lambda: write("> ")) if interactive else None
    run_repl(session, sys.stdin, write, prompt=prompt, stream=True)


# -- export, metrics ----------------------------------------------------------------------

@click.command()
@click.argument("ref")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--format", "export_format", type=click.Choice(["peft", "merged"]), default="peft", show_default=True,
              help="peft: the adapter directory; merged: base + adapter merged into one model.")
@_base_option
@json_option
def export(ref, out, export_format, base, as_json):
    """Write a bake out as a PEFT adapter or a merged model directory.

    Example: bgit export HEAD yoda-merged --format merged
    """
    path = api.export(".", ref, out, export_format, base=base)
    if as_json:
        echo_json({"ref": ref, "format": export_format, "path": str(path)})
    else:
        click.echo(f"exported {ref} ({export_format}) to {path}")


@click.command()
@click.argument("ref", default="HEAD")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write the KL curve as a PNG.")
@json_option
@click.option("--width", default=60, show_default=True, help="Chart width in characters.")
def metrics(ref, plot_path, as_json, width):
    """Show a bake's KL curve (train KL per step, eval KL per epoch).

    Example: bgit metrics HEAD --plot kl.png
    """

    result = api.metrics(".", ref, plot=plot_path)
    if as_json:
        echo_json(result)
        return
    click.echo(f"metrics of {result.commit[:8]} ({result.rows} rows)")
    click.echo(render_chart(result.as_dict(), width))
    if plot_path:
        click.echo(f"wrote {plot_path}")


# -- hooks --------------------------------------------------------------------------------

@click.group()
def hooks():
    """List, enable and disable hooks (pre-bake, post-bake, pre-push).

    Example: bgit hooks enable post-bake
    """


@hooks.command("list")
@json_option
def hooks_list(as_json):
    """Show each hook and whether it is enabled.

    Example: bgit hooks list
    """
    infos = api.hooks_list(".")
    if as_json:
        echo_json([{"name": i.name, "enabled": i.enabled, "path": str(i.path) if i.path else None} for i in infos])
        return
    for info in infos:
        state = "enabled" if info.enabled else ("disabled" if info.path else "not installed")
        click.echo(f"{info.name:<12} {state}")


@hooks.command("enable")
@click.argument("name")
@json_option
def hooks_enable(name, as_json):
    """Enable hook NAME (from its .disabled copy).

    Example: bgit hooks enable pre-push
    """
    path = api.hook_enable(".", name)
    echo_json({"name": name, "enabled": True, "path": str(path)}) if as_json else click.echo(f"enabled {name}")


@hooks.command("disable")
@click.argument("name")
@json_option
def hooks_disable(name, as_json):
    """Disable hook NAME (kept as NAME.disabled).

    Example: bgit hooks disable pre-push
    """
    path = api.hook_disable(".", name)
    echo_json({"name": name, "enabled": False, "path": str(path)}) if as_json else click.echo(f"disabled {name}")


COMMANDS = [diff, eval_, chat, generate, export, metrics, hooks]
