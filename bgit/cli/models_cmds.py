"""Model commands: models (what can serve as MODEL.base)."""

from __future__ import annotations

import click

from bgit import api
from bgit.cli.render import echo_json, json_option, table
from bgit.util.progress import human_size


def _status(entry) -> str:
    if not entry.loadable:
        return f"no: {entry.note}"
    return f"yes ({entry.note})" if entry.note else "yes"


def _revision(entry) -> str:
    if not entry.revision:
        return "-"
    return entry.revision[:12] + (f" ({', '.join(entry.refs)})" if entry.refs else "")


@click.command("models")
@click.option("--path", "paths", multiple=True, type=click.Path(),
              help="Also list the model directory or .gguf file at PATH, or those directly inside it "
                   "(repeatable).")
@json_option
def models_cmd(paths: tuple[str, ...], as_json: bool) -> None:
    """List what can serve as a base model (MODEL.base).

    The embedded model, every model snapshot in the Hugging Face cache ($HF_HUB_CACHE, else
    $HF_HOME/hub) and the models at --path. NAME is what to write as MODEL.base: org/name for
    the snapshot refs/main points to, org/name@COMMIT for the others. Reads no weights and never
    asks the hub; LOADABLE says whether every file loading needs is there.

    Example: bgit models --path ~/models
    """
    listing = api.models(list(paths))
    if as_json:
        echo_json(listing)
        return
    mode = ", offline" if listing.offline else ""
    click.echo(f"Hugging Face cache: {listing.hub_cache}{mode}")
    rows = [(m.name, m.source, _revision(m), human_size(m.size) if m.size is not None else "-", _status(m))
            for m in listing.models]
    table(("NAME", "SOURCE", "REVISION", "SIZE", "LOADABLE"), rows, right=(3,))


COMMANDS = [models_cmd]
