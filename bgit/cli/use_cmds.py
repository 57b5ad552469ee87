"""Commands that use bakes: diff, eval, chat, generate, export, metrics, hooks."""

from __future__ import annotations

import sys

import click

from bgit.cli.render import echo_json


def _repo():
    from bgit.repo import Repository

    return Repository.open(".")


def _fmt(value, digits: int = 4) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}g}"
    return str(value)


def _reporter(quiet: bool = False):
    from bgit.cli.render import RichReporter

    return RichReporter(quiet=quiet)


# -- diff ---------------------------------------------------------------------------------

def _render_diff(result: dict, top: int) -> None:
    from bgit.evaluate.datasets import dumps_value

    a, b = result["a"], result["b"]
    click.echo(f"diff {a['ref']} ({a['commit'][:8]}) .. {b['ref']} ({b['commit'][:8]})")
    click.secho("\ninput.yml", bold=True)
    if not result["config"]:
        click.echo("  (unchanged)")
    for change in result["config"]:
        marker = {"added": "+", "removed": "-", "modified": "~"}[change["change"]]
        click.echo(f"  {marker} {change['key']}: {dumps_value(change['old'])} -> {dumps_value(change['new'])}")
    click.secho("\ndatasets", bold=True)
    if not result["datasets"]:
        click.echo("  (no targets)")
    for entry in result["datasets"]:
        rows, tokens = entry["rollout_rows"], entry["rollout_tokens"]
        click.echo(f"  {entry['target']}: stims {entry['stims_a']} -> {entry['stims_b']} "
                   f"(+{len(entry['stims_added'])} -{len(entry['stims_removed'])}), rollout rows "
                   f"{rows['a']} -> {rows['b']}, tokens {tokens['a']} -> {tokens['b']}")
        for stim in entry["stims_added"][:top]:
            click.echo(f"    + {stim['id']} {stim['text'][:70]!r}")
        for stim in entry["stims_removed"][:top]:
            click.echo(f"    - {stim['id']} {stim['text'][:70]!r}")
    if result["metrics"]:
        click.secho("\nmetrics", bold=True)
        for key, pair in result["metrics"].items():
            click.echo(f"  {key}: {_fmt(pair['a'])} -> {_fmt(pair['b'])}")
    weights = result["weights"]
    click.secho("\nadapter ΔW = scale·B·A", bold=True)
    total = weights["total"]
    if total is None:
        click.echo("  (neither commit has adapter weights)")
    else:
        click.echo(f"  total: ‖ΔW_A‖ {_fmt(total['norm_a'])}  ‖ΔW_B‖ {_fmt(total['norm_b'])}  "
                   f"relative change {_fmt(total['relative'])}  cosine {_fmt(total['cosine'])}  "
                   f"modules changed {total['changed']}/{total['modules']}")
        click.echo(f"  {'layer':>6} {'‖ΔW_A‖':>10} {'‖ΔW_B‖':>10} {'rel.change':>10} {'cosine':>8} changed")
        for layer in weights["layers"]:
            click.echo(f"  {layer['layer']:>6} {_fmt(layer['norm_a']):>10} {_fmt(layer['norm_b']):>10} "
                       f"{_fmt(layer['relative']):>10} {_fmt(layer['cosine']):>8} {layer['changed']}/{layer['modules']}")
    if "behaviour" in result:
        behaviour = result["behaviour"]
        click.secho("\nbehaviour", bold=True)
        click.echo(f"  KL(A‖B) per response token: {_fmt(behaviour['kl_a_b'])} "
                   f"({behaviour['stims']} stims, {behaviour['tokens']} tokens, {behaviour['source']})")
        for note in behaviour["notes"]:
            click.echo(f"  note: {note}")


@click.command()
@click.argument("ref_a", required=False)
@click.argument("ref_b", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the diff as JSON.")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write a per-layer heatmap PNG.")
@click.option("--behaviour", "--behavior", is_flag=True, help="Also compute KL between the two baked models.")
@click.option("--top", default=10, show_default=True, help="Stims listed per target.")
def diff(ref_a, ref_b, as_json, plot_path, behaviour, top):
    """Show what changed between two bakes: config, datasets, adapter weights.

    With no REF: HEAD~1..HEAD; one REF: REF..HEAD.

    Example: bgit diff HEAD~2 --plot layers.png
    """
    from bgit.evaluate import diff_bakes

    ref_a = ref_a or "HEAD~1"
    ref_b = ref_b or "HEAD"
    result = diff_bakes(_repo(), ref_a, ref_b, behaviour=behaviour)
    if plot_path:
        from bgit.evaluate.plots import plot_weight_heatmap

        plot_weight_heatmap(result["weights"]["modules"], plot_path, title=f"{ref_a} .. {ref_b}: relative change")
        result["plot"] = plot_path
    if as_json:
        echo_json(result)
        return
    _render_diff(result, top)
    if plot_path:
        click.echo(f"\nwrote {plot_path}")


# -- eval ---------------------------------------------------------------------------------

def render_eval(results: dict) -> None:
    click.echo(f"eval of {results['commit'][:8]} on {results['stims']} stims, {results['tokens']} response "
               f"tokens ({results['source']})")
    click.echo(f"  KL(prompted‖base)       {_fmt(results['kl_prompted_base'])}")
    click.echo(f"  KL(prompted‖baked)      {_fmt(results['kl_prompted_baked'])}")
    click.echo(f"  KL closure              {_fmt(results['closure'])}")
    click.echo(f"  KL(prompted‖reprompted) {_fmt(results['kl_prompted_reprompted'])}")
    if len(results.get("targets") or {}) > 1:
        for name, target in results["targets"].items():
            click.echo(f"  [{name}] closure {_fmt(target['closure'])}  KL(prompted‖baked) "
                       f"{_fmt(target['kl_prompted_baked'])}  ({target['stims']} stims)")
    for note in results.get("notes") or []:
        click.echo(f"  note: {note}")


@click.command("eval")
@click.argument("ref", default="HEAD")
@click.option("--stims", "stims_path", type=click.Path(dir_okay=False), help="JSONL/text file of user messages.")
@click.option("--max-stims", default=64, show_default=True, help="Held-out stims evaluated per target.")
@click.option("--max-tokens", type=int, help="Response tokens sampled per --stims message (default: TARGET.max_tokens).")
@click.option("--seed", default=0, show_default=True, help="Seed for sampled responses.")
@click.option("--no-save", is_flag=True, help="Do not store the results as a git note.")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
def eval_(ref, stims_path, max_stims, max_tokens, seed, no_save, as_json):
    """Measure a bake's KL closure on held-out stims; store it as a git note.

    Results go to refs/notes/bgit-eval (see: git log --notes=bgit-eval).

    Example: bgit eval HEAD --stims questions.jsonl
    """
    from bgit.evaluate import evaluate_bake, open_bake, read_stims_file, write_eval

    repo = _repo()
    bake = open_bake(repo, ref)
    stims = read_stims_file(stims_path) if stims_path else None
    results = evaluate_bake(bake, stims, max_stims=max_stims, max_tokens=max_tokens, seed=seed,
                            reporter=_reporter(quiet=as_json))
    if not no_save:
        write_eval(repo, bake.commit, results)
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
@click.option("--json", "as_json", is_flag=True, help="Print the answers as JSON.")
@click.option("--max-tokens", default=128, show_default=True, help="New tokens per answer at most.")
@_scale_option
@_system_option
@click.option("--seed", type=int, help="Sample with this seed (temperature 1) instead of greedy decoding.")
def generate(prompts, ref, as_json, max_tokens, scale, system, seed):
    """Answer prompts with a baked model, one answer per PROMPT (greedy by default).

    bgit generate [REF] PROMPT...: the first argument is taken as REF when there are
    several and it names a commit.

    Example: bgit generate HEAD "What is the capital of France?" "How do I boil an egg?"
    """
    from bgit.evaluate import open_bake
    from bgit.evaluate.chat import answer
    from bgit.evaluate.models import load_baked
    from bgit.repo.errors import UnknownRevisionError

    repo = _repo()
    prompts = list(prompts)
    if ref is None and len(prompts) > 1:
        try:
            repo.resolve(prompts[0])
            ref = prompts.pop(0)
        except UnknownRevisionError:
            pass
    bake = open_bake(repo, ref or "HEAD")
    model, tokenizer, notes = load_baked(bake, scale=scale)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    answers = [answer(model, tokenizer, prompt, system=system, max_tokens=max_tokens, seed=seed,
                      temperature=1.0 if seed is not None else 0.0) for prompt in prompts]
    if as_json:
        echo_json({"commit": bake.sha, "scale": scale, "system": system, "seed": seed, "answers": answers})
    elif len(answers) == 1:
        click.echo(answers[0]["response"])
    else:
        for item in answers:
            click.secho(f"> {item['prompt']}", bold=True)
            click.echo(item["response"] + "\n")


@click.command()
@click.argument("ref", default="HEAD")
@_scale_option
@_system_option
@click.option("--max-tokens", default=256, show_default=True, help="New tokens per answer at most.")
def chat(ref, scale, system, max_tokens):
    """Talk to a baked model; /help lists the commands (reads stdin when it is not a terminal).

    Example: bgit chat HEAD --scale 0.5
    """
    from bgit.evaluate import open_bake
    from bgit.evaluate.chat import ChatSession, run_repl
    from bgit.evaluate.models import load_baked

    bake = open_bake(_repo(), ref)
    model, tokenizer, notes = load_baked(bake, scale=scale)
    for note in notes:
        click.echo(f"note: {note}", err=True)
    session = ChatSession(model, tokenizer, label=f"{bake.short} ({bake.base_model_name})", scale=scale,
                          system=system, max_tokens=max_tokens)
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
@click.option("--format", "fmt", type=click.Choice(["peft", "merged"]), default="peft", show_default=True,
              help="peft: the adapter directory; merged: base + adapter merged into one model.")
def export(ref, out, fmt):
    """Write a bake out as a PEFT adapter or a merged model directory.

    Example: bgit export HEAD yoda-merged --format merged
    """
    from bgit.evaluate import export_bake, open_bake

    path = export_bake(open_bake(_repo(), ref), out, fmt)
    click.echo(f"exported {ref} ({fmt}) to {path}")


@click.command()
@click.argument("ref", default="HEAD")
@click.option("--plot", "plot_path", type=click.Path(dir_okay=False), help="Write the KL curve as a PNG.")
@click.option("--json", "as_json", is_flag=True, help="Print the curve as JSON.")
@click.option("--width", default=60, show_default=True, help="Chart width in characters.")
def metrics(ref, plot_path, as_json, width):
    """Show a bake's KL curve (train KL per step, eval KL per epoch).

    Example: bgit metrics HEAD --plot kl.png
    """
    from bgit.evaluate import open_bake
    from bgit.evaluate.metrics import plot_metrics, read_metrics, render_chart

    bake = open_bake(_repo(), ref, require_adapter=False)
    data = read_metrics(bake)
    if plot_path:
        plot_metrics(data, plot_path, title=f"{bake.short}: {bake.commit.message.splitlines()[0] if bake.commit.message.strip() else ''}")
    if as_json:
        echo_json({"commit": bake.sha, "train": [{"step": s, "train_kl": k} for s, k in data["train"]],
                   "eval": [{"step": s, "epoch": e, "eval_kl": k} for s, e, k in data["eval"]],
                   "final": data["final"], "plot": plot_path})
        return
    click.echo(f"metrics of {bake.short} ({data['rows']} rows)")
    click.echo(render_chart(data, width))
    if plot_path:
        click.echo(f"wrote {plot_path}")


# -- hooks --------------------------------------------------------------------------------

@click.group()
def hooks():
    """List, enable and disable hooks (pre-bake, post-bake, pre-push).

    Example: bgit hooks enable post-bake
    """


@hooks.command("list")
def hooks_list():
    """Show each hook and whether it is enabled.

    Example: bgit hooks list
    """
    from bgit.repo.hooks import list_hooks

    for info in list_hooks(_repo()):
        state = "enabled" if info.enabled else ("disabled" if info.path else "not installed")
        click.echo(f"{info.name:<12} {state}")


@hooks.command("enable")
@click.argument("name")
def hooks_enable(name):
    """Enable hook NAME (from its .disabled copy).

    Example: bgit hooks enable pre-push
    """
    from bgit.repo.hooks import enable_hook

    enable_hook(_repo(), name)
    click.echo(f"enabled {name}")


@hooks.command("disable")
@click.argument("name")
def hooks_disable(name):
    """Disable hook NAME (kept as NAME.disabled).

    Example: bgit hooks disable pre-push
    """
    from bgit.repo.hooks import disable_hook

    disable_hook(_repo(), name)
    click.echo(f"disabled {name}")


COMMANDS = [diff, eval_, chat, generate, export, metrics, hooks]
